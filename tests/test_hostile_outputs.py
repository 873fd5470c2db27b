"""Every output cvaudit writes, fed the hostile string set, parses with its real consumer (issue 31, point 6).

The hostile strings (formula starts ``= + - @``, tab and carriage-return starts, ESC, BEL, RLO, lone
surrogates, ``</script>``, ``|``) go into class names, attribute values and sample ids of a real run
(``cvaudit run``, ``cvaudit queue``, ``cvaudit model-card``, ``cvaudit policy check --markdown``); then

- every CSV is read with the csv module: no cell starts with a formula character unguarded (a plain number
  excepted), no cell holds a raw control, bidi or unencodable character, and cvaudit's own reader
  (:mod:`audit.contract.csvfile`) gives the values back;
- every XML file parses strictly (ElementTree's expat and ``xmllint --noout``), and ``labeling_config.xml``
  with Label Studio's own config parser (its virtual environment, as ``.ci/run`` installs it);
- every Markdown file renders with markdown-it-py (CommonMark and tables) to HTML without raw control
  characters, without a ``<script>`` element, and with the same number of cells in every table row.

Lone surrogates cannot be stored in the manifest (it is UTF-8 on disk); they are fed to the writers directly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from cvaudit_fixtures import make_dataset, save_model, write_config
from markdown_it import MarkdownIt
from torch import nn

from audit.cli import main
from audit.contract import csvfile
from audit.contract.text import markdown_text, spreadsheet_safe, xml_text
from audit.loop.labelstudio import labeling_config, rectangle_labeling_config

#: The hostile string set of issue 31 (lone surrogates only where no file stands between them and the writer).
HOSTILE = [
    '=HYPERLINK("http://x.invalid","y")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(A1:A9)",
    "\tab",
    "\rcr",
    "esc\x1b[31mred",
    "bel\x07",
    "rlo\u202etxt.exe",
    "</script><script>alert(1)</script>",
    "pi|pe",
]
SURROGATE = "lone\ud800"
#: The attribute values of the hostile run (8 samples each).
CAMERAS = [HOSTILE[6], HOSTILE[8] + HOSTILE[10], HOSTILE[0]]

#: Characters no output cell or text may carry raw: C0 (but tab, newline), C1, bidi controls, surrogates.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
FORMULA = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def check_csv_text(text: str, name: str) -> list[list[str]]:
    """The rows of ``text`` (csv module); fails on an unguarded formula start or a raw control character."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    for line, row in enumerate(rows, start=1):
        for cell in row:
            assert not RAW.search(cell), f"{name}: row {line}: raw control character in {cell!r}"
            assert not cell.startswith(FORMULA) or PLAIN_NUMBER.fullmatch(cell), f"{name}: row {line}: {cell!r}"
    return rows


def check_xml_text(text: str, name: str, tmp_path: Path) -> ET.Element:
    """``text`` parsed strictly by expat and (when installed, always in CI) by xmllint."""
    root = ET.fromstring(text.encode("utf-8"))
    xmllint = shutil.which("xmllint")
    if xmllint is None and os.environ.get("CVAUDIT_CI"):
        pytest.fail("xmllint is not installed (libxml2-utils); .ci/run installs it")
    if xmllint is not None:
        path = tmp_path / f"check-{name}"
        path.write_text(text, encoding="utf-8")
        done = subprocess.run([xmllint, "--noout", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{name}: xmllint: {done.stderr}"
    return root


def label_studio_python() -> str | None:
    """The Python of Label Studio's own virtual environment (``CVAUDIT_LABEL_STUDIO`` as .ci/run sets it)."""
    exe = os.environ.get("CVAUDIT_LABEL_STUDIO") or shutil.which("label-studio")
    if exe and (Path(exe).parent / "python").exists():
        return str(Path(exe).parent / "python")
    if os.environ.get("CVAUDIT_CI"):
        pytest.fail("Label Studio is not installed; .ci/run installs it and sets CVAUDIT_LABEL_STUDIO")
    return None


_PARSE = """
import json, sys
from label_studio_sdk._extensions.label_studio_tools.core.label_config import parse_config
config = parse_config(open(sys.argv[1], encoding="utf-8").read())
print(json.dumps({name: tag.get("labels", []) for name, tag in config.items()}))
"""


def label_studio_labels(path: Path) -> dict[str, list[str]] | None:
    """Label Studio's own parse of a labelling config: control name -> its labels (None: not installed here)."""
    python = label_studio_python()
    if python is None:
        return None
    done = subprocess.run([python, "-c", _PARSE, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"Label Studio refuses {path.name}: {done.stderr.strip().splitlines()[-1:]}"
    return json.loads(done.stdout)


def check_markdown(text: str, name: str) -> str:
    """``text`` rendered (CommonMark with tables): no raw control character, no script element, and every
    table row with its header's number of cells (a ``|`` in user text splits no cell)."""
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert not RAW.search(html), f"{name}: raw control character in the rendered HTML: {RAW.search(html)!r}"
    assert "<script" not in html.lower(), f"{name}: a script element survives rendering"
    for table in re.findall(r"<table>.*?</table>", html, flags=re.S):
        widths = {len(re.findall(r"<t[hd][ >]", row)) for row in re.findall(r"<tr>.*?</tr>", table, flags=re.S)}
        assert len(widths) == 1, f"{name}: table rows of different widths {widths}"
    return html


# --- the writers, fed directly (lone surrogates included) -------------------------------------------


def test_the_csv_writer_guards_every_text_cell_and_its_reader_gives_the_values_back():
    values = [*HOSTILE, SURROGATE, "'=already", "''@twice", "plain", "-0.5", "1e-05", ""]
    numbers = [0.1 + 0.2, -1e-300, 1 / 3, float("inf"), 7, -3]
    buf = io.StringIO(newline="")
    csvfile.writer(buf).writerows([values, numbers])
    text = buf.getvalue()
    rows = check_csv_text(text, "csv")
    assert rows[0][0] == "'" + HOSTILE[0] and rows[0][4] == "'\tab" and rows[0][5] == "\\x0dcr"
    back = list(csvfile.reader(io.StringIO(text, newline="")))
    assert back[0] == [csvfile.read_back(v) for v in values]  # the guard undone exactly
    assert back[0][:4] == HOSTILE[:4] and back[0][-6:-3] == ["'=already", "''@twice", "plain"]
    assert [float(x) for x in back[1]] == numbers  # repr reads back as the same float
    assert "\r" not in text and text.endswith("\n")


def test_the_dict_writer_and_reader_round_trip():
    buf = io.StringIO(newline="")
    writer = csvfile.DictWriter(buf, ["id", "=x", "n"])
    writer.writeheader()
    writer.writerow({"id": "@a", "=x": "\x07", "n": -2})
    check_csv_text(buf.getvalue(), "dict csv")
    reader = csvfile.DictReader(io.StringIO(buf.getvalue(), newline=""))
    assert reader.fieldnames == ["id", "=x", "n"]
    assert list(reader) == [{"id": "@a", "=x": "\\x07", "n": "-2"}]
    with pytest.raises(ValueError, match="'extra'"):
        writer.writerow({"extra": 1})


@pytest.mark.parametrize("make", [labeling_config, rectangle_labeling_config])
def test_labeling_configs_are_well_formed_for_label_studio(make, tmp_path):
    names = [*HOSTILE, SURROGATE]
    text = make(names)
    root = check_xml_text(text, "labeling_config.xml", tmp_path)
    values = [e.get("value") for e in root.iter() if e.tag in ("Choice", "Label")]
    assert values == [xml_text(n) for n in names]
    assert not any(RAW.search(v) for v in values)
    path = tmp_path / "labeling_config.xml"
    path.write_text(text, encoding="utf-8")
    labels = label_studio_labels(path)
    if labels is not None:
        assert sorted(next(iter(labels.values()))) == sorted(values)


def test_markdown_text_is_inert_in_a_table_cell():
    rows = ["| a | b |", "|---|---|", *(f"| {markdown_text(h)} | x |" for h in [*HOSTILE, SURROGATE])]
    html = check_markdown("\n".join(rows) + "\n", "table")
    assert "pi|pe" in html and "&lt;/script&gt;" in html and "\\x1b[31m" in html


def test_spreadsheet_safe_and_xml_text_escape_lone_surrogates():
    assert spreadsheet_safe(SURROGATE) == "lone\\ud800" == xml_text(SURROGATE)
    assert markdown_text(SURROGATE) == "lone\\\\ud800"


# --- the real pipeline --------------------------------------------------------------------------------


class Confused(nn.Module):
    """Sure of the wrong class (the next colour channel): every sample is a queue candidate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * x.mean(dim=(2, 3)).roll(1, dims=1)


def _hostile_workspace(root: Path) -> Path:
    """make_dataset's 24 images with hostile sample ids, cameras and class names; returns the config."""
    manifest = make_dataset(root)
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows):
        row["sample_id"] = f"{HOSTILE[i % len(HOSTILE)]}#{i}"
        row["camera"] = CAMERAS[(i // 2) % 3]
    rows[6]["consent"] = "withdrawn"  # "esc\x1b[31mred#6": the queue must hold it back
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    save_model(root / "model.pt", Confused())
    cfg = write_config(root, threshold=0.99)  # fails: junit.xml and the Markdown summary have failed rules
    classes = json.dumps([HOSTILE[0], HOSTILE[6], HOSTILE[8] + HOSTILE[9] + HOSTILE[10]])
    text = cfg.read_text().replace("class_names: [red, green, blue]", f"class_names: {classes}")
    cfg.write_text(text)
    policy = root / "policy.yaml"
    policy.write_text(policy.read_text() + "governance:\n  consent: {blocking: false}\n")
    return cfg


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    cfg = _hostile_workspace(root)
    out = root / "run"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code in (0, 1), result.output
    return out


def test_every_csv_of_a_hostile_run_is_guarded_and_reads_back(hostile_run):
    files = sorted(hostile_run.glob("*.csv"))
    assert {"predictions.csv", "breaking_points.csv", "groups.csv"} <= {p.name for p in files}
    for path in files:
        check_csv_text(path.read_text(encoding="utf-8"), path.name)
    text = (hostile_run / "breaking_points.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK(" in text and "'+cmd|" in text and "esc\\x1b[31mred" in text and "\x1b" not in text
    with open(hostile_run / "predictions.csv", newline="", encoding="utf-8") as fh:
        ids = {row["sample_id"] for row in csvfile.DictReader(fh)}
    assert f"{HOSTILE[0]}#0" in ids and f"{HOSTILE[1]}#1" in ids and "rlo\\u202etxt.exe#8" in ids


def test_the_queue_of_a_hostile_run_opens_in_a_spreadsheet_and_in_label_studio(hostile_run, tmp_path):
    out = tmp_path / "queue"
    result = CliRunner().invoke(main, ["queue", str(hostile_run), "--out", str(out), "--budget", "12"])
    assert result.exit_code == 0, result.output
    rows = check_csv_text((out / "queue.csv").read_text(encoding="utf-8"), "queue.csv")
    assert len(rows) > 1 and any(cell.startswith("'") for row in rows for cell in row)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["held_back_by_check"] == {"consent_withdrawn": 1}
    assert not any(row[1].startswith("esc\\x1b[31mred#6") for row in rows)
    config = (out / "labeling_config.xml").read_text(encoding="utf-8")
    root = check_xml_text(config, "labeling_config.xml", tmp_path)
    choices = [e.get("value") for e in root.iter("Choice")]
    assert choices[1] == "esc\\x1b[31mred"
    tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    assert {t["predictions"][0]["result"][0]["value"]["choices"][0] for t in tasks} <= set(choices)
    labels = label_studio_labels(out / "labeling_config.xml")
    if labels is not None:
        assert sorted(labels["class"]) == sorted(choices)


def test_junit_of_a_hostile_run_is_well_formed(hostile_run, tmp_path):
    text = (hostile_run / "junit.xml").read_text(encoding="utf-8")
    check_xml_text(text, "junit.xml", tmp_path)
    assert not RAW.search(text)


@pytest.mark.parametrize("fmt", ["markdown", "huggingface"])
def test_the_model_card_of_a_hostile_run_renders_inert(hostile_run, tmp_path, fmt):
    card = tmp_path / "card.md"
    result = CliRunner().invoke(main, ["model-card", str(hostile_run), "--format", fmt, "--out", str(card)])
    assert result.exit_code == 0, result.output
    text = card.read_text(encoding="utf-8")
    assert not RAW.search(text), RAW.search(text)
    html = check_markdown(text.split("---\n", 2)[-1] if fmt == "huggingface" else text, "model card")
    assert "\\x1b" in html or "x1b" in html  # the hostile camera and class names are in it, escaped


def test_policy_check_markdown_of_a_hostile_run_renders_inert(hostile_run, tmp_path):
    summary = tmp_path / "summary.md"
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(
        main,
        [
            "policy",
            "check",
            str(hostile_run / "results.json"),
            "--policy",
            str(hostile_run.parent / "policy.yaml"),
            "--markdown",
            str(summary),
            "--junit",
            str(junit),
        ],
    )
    assert result.exit_code in (0, 1), result.output
    text = summary.read_text(encoding="utf-8")
    assert not RAW.search(text)
    check_markdown(text, "policy check --markdown")
    check_xml_text(junit.read_text(encoding="utf-8"), "junit.xml", tmp_path)
