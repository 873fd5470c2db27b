"""Hostile file NAMES given to every reader that takes a user's path.

A path comes from the command line (``run CONFIG``, ``--policy``, ``--key``, ``--trust``,
``verify``/``report`` arguments), from ``CVAUDIT_TRUST`` or from a config file. Whatever the
name (a non-UTF-8 byte, which Python decodes to a lone surrogate; a NUL, which a YAML config can
hold; a component or a whole path past the kernel's limits; the empty string; a folder; a
character device), the reader loads or raises one well-formed :class:`CvauditError`; an
``OSError`` or ``ValueError`` escaping a reader is a bug (the CLI turns an ``OSError`` into one
line, but a library caller or another command path gets a raw exception).

Each crash found here that is not fixed on this branch is listed in :data:`KNOWN` and its case is
marked ``xfail(strict=True)``: it turns red (XPASS) the day the reader's fix merges; then delete
its entry.
"""

from __future__ import annotations

import pytest
from fuzz_kit import check

from audit.contract.config import load_config
from audit.contract.load import load_results
from audit.contract.manifest import read_manifest_rows
from audit.evaluation.detection.annotations import read_coco, read_yolo
from policies.loader import load_policy
from reports.keys import load_attestation_public_key, load_signing_keys
from reports.trust import load_anchors

READERS = {
    "load_config": load_config,
    "load_policy": load_policy,
    "read_manifest_rows": lambda name: read_manifest_rows(name.replace(".yaml", ".csv")),
    "load_results": load_results,
    "read_coco": lambda name: read_coco(name, root="."),
    "read_yolo": read_yolo,
    "load_signing_keys": load_signing_keys,
    "load_attestation_public_key": load_attestation_public_key,
    "load_anchors-key": lambda name: load_anchors(key_dirs=[name]),
    "load_anchors-trust": lambda name: load_anchors(trust_files=[name]),
    "load_anchors-env": lambda name: load_anchors(env=name),
}
NAMES = {
    "non-utf8": "\udcff.yaml",  # what Python makes of the argv byte 0xFF
    "lone-surrogate": "\ud800.yaml",  # from a JSON / YAML escape in a file that names another file
    "nul": "a\x00b.yaml",
    "long-component": "1" * 5000 + ".yaml",  # ENAMETOOLONG (> NAME_MAX)
    "long-path": "d/" * 3000 + "x.yaml",  # ENAMETOOLONG (> PATH_MAX)
    "empty": "",
    "folder": ".",
    "device": "/dev/null",
    "home-of-nobody": "~nobody-here/x.yaml",
}
KNOWN: dict[tuple[str, str], str] = {}  # names too long for the system: fixed (check_path_name)


def _cases():
    for reader in READERS:
        for name in NAMES:
            marks = ()
            if (reader, name) in KNOWN:
                marks = pytest.mark.xfail(strict=True, raises=(OSError, ValueError), reason=KNOWN[reader, name])
            yield pytest.param(reader, name, id=f"{reader}-{name}", marks=marks)


@pytest.mark.parametrize(("reader", "name"), list(_cases()))
def test_hostile_file_names(tmp_path, monkeypatch, reader, name):
    monkeypatch.chdir(tmp_path)
    check(lambda: READERS[reader](NAMES[name]))


@pytest.mark.parametrize("key", ["policy", "manifest"])
def test_a_config_naming_a_lone_surrogate_file_is_one_line_through_the_cli(tmp_path, key):
    """Found by test_hostile_file_names: a config whose ``policy:`` or ``data.manifest:`` holds a JSON-style
    escape of a lone surrogate ended in ``internal error: UnicodeEncodeError``. The YAML loader now makes the
    escape visible text (``\\ud800``, audit.contract.text.valid_text), so the name is one line, exit 2, naming
    the file as written, before any image (read_bounded also refuses a name with a real surrogate)."""
    import subprocess
    import sys

    manifest = '"\\ud800.csv"' if key == "manifest" else "m.csv"
    policy = '\npolicy: "\\ud800.yaml"' if key == "policy" else ""
    (tmp_path / "m.csv").write_text("path,label\na.png,0\n")
    (tmp_path / "c.yaml").write_text(f"model: {{path: m.pt}}\ndata: {{manifest: {manifest}}}{policy}\n")
    done = subprocess.run(
        [sys.executable, "-m", "audit", "run", "c.yaml", "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=300,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "\\ud800" in lines[0] and "internal error" not in lines[0], lines
    assert " not found" in lines[0], lines
