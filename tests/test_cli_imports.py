"""What each command imports: optional extras only when used; torch, torchmetrics and foolbox only where needed.

``cvaudit --help``, ``policy check``, ``verify`` and ``report`` judge and render stored results: they
must start without torch (about 1.5 s and 300 MB of imports), torchmetrics (its import pulls in
scipy.signal) or foolbox. ``cvaudit run`` needs them; its DataLoader workers receive only what they
decode (a spawned worker unpickling the dataset imports no metrics code).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

EXTRAS = ("transformers", "mlflow", "huggingface_hub", "safetensors")
HEAVY = ("torch", "torchmetrics", "foolbox")
RESULTS = Path(__file__).parent / "audit" / "contract" / "data" / "results-1.0.json"

PROBE = """
import json, sys
from click.testing import CliRunner
from audit.cli import main
runner = CliRunner()
for args in (["--help"], ["model-card", "--help"], ["run", "--help"]):
    assert runner.invoke(main, args).exit_code == 0, args
import audit.tracking, reports.model_card, audit.evaluation.model  # importable without loading any extra
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""

COMMAND = """
import json, sys
from click.testing import CliRunner
from audit.cli import main
result = CliRunner().invoke(main, json.loads(sys.argv[1]), catch_exceptions=False)
print(json.dumps({"code": result.exit_code, "output": result.output[-2000:],
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_help_and_modules_import_no_extra():
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, timeout=120)
    loaded = set(json.loads(out.stdout))
    assert not loaded & set(EXTRAS), sorted(loaded & set(EXTRAS))


def _command(*args: str) -> dict:
    """Run ``cvaudit ARGS`` in a fresh interpreter: its exit code, output and loaded top-level modules."""
    done = subprocess.run(
        [sys.executable, "-c", COMMAND, json.dumps(list(args))], check=True, capture_output=True, text=True, timeout=180
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def signed_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imports")
    assert _command("keygen", "--out", str(root / "keys"))["code"] == 0
    made = _command(
        "report", str(RESULTS), "--out", str(root / "out"), "--format", "html", "--sign-key", str(root / "keys")
    )
    assert made["code"] == 0, made["output"]
    return root


@pytest.mark.parametrize(
    "command",
    [
        ("--help",),
        ("policy", "check", "{results}", "--policy", "demo"),
        ("report", "{results}", "--out", "{root}/again", "--format", "html"),
        ("verify", "{root}/out", "--key", "{root}/keys"),
    ],
)
def test_commands_on_stored_results_import_no_torch(command, signed_folder):
    args = [a.format(results=RESULTS, root=signed_folder) for a in command]
    ran = _command(*args)
    assert ran["code"] in (0, 1), ran["output"]
    assert not set(ran["modules"]) & set(HEAVY), sorted(set(ran["modules"]) & set(HEAVY))


@pytest.mark.parametrize(
    "config, policy, expected",
    [
        ("model: {path: model.pt}\ndata: {images: val, pth_column: x}\n", None, "data.pth_column: unknown key"),
        ("model: {path: model.pt}\ndata: {images: val}\npolicy: p.yaml\n", "version: 1\nname: p\nrulez: []\n", "rulez"),
        # a gate that could pass on nothing (issue 30): refused before torch, too
        (
            "model: {path: model.pt}\ndata: {images: val}\npolicy: p.yaml\n",
            "version: 1\nname: p\nrules: []\n",
            "no rules",
        ),
    ],
)
def test_run_reports_a_bad_config_or_policy_before_importing_torch(tmp_path, config, policy, expected):
    (tmp_path / "bad.yaml").write_text(config)
    if policy is not None:
        (tmp_path / "p.yaml").write_text(policy)
    ran = _command("run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out"))
    assert ran["code"] == 2 and expected in ran["output"], ran["output"]
    assert not set(ran["modules"]) & set(HEAVY), sorted(set(ran["modules"]) & set(HEAVY))


def test_a_spawned_worker_receives_only_what_it_decodes(tmp_path):
    from PIL import Image

    from audit.contract.config import DataConfig, ModelConfig
    from audit.evaluation.data import AuditDataset, read_samples

    for i in range(2):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    rows = ["sample_id,path,label,site,capture_date,consent"]
    rows += [f"sample-{i},{i % 2}.png,0,site-{i % 7},2025-01-01,granted" for i in range(200)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    data = DataConfig(manifest=tmp_path / "m.csv", attributes=["site"], allow_duplicate_paths=True)
    table = read_samples(data, class_names=None)
    blob = pickle.dumps(AuditDataset(table, ModelConfig(path="m.pt", input_size=(4, 4)), range(0, 200, 2)))
    assert (
        b"capture_date" not in blob and b"site-3" not in blob and b"sample-17" not in blob
    )  # no manifest row, id, attribute
    probe = (
        "import pickle, sys; ds = pickle.loads(sys.stdin.buffer.read()); item = ds[1];"
        "assert item['index'] == 2 and tuple(item['image'].shape) == (3, 4, 4), item;"
        "print(','.join(m for m in ('torchmetrics', 'foolbox', 'policies', 'reports') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], input=blob, capture_output=True, check=True, timeout=120)
    assert done.stdout.decode().strip() == ""
