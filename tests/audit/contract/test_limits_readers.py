"""Limits before reading, reader by reader: key files, key folders, PDFs to sign, detections JSON.

Each reader gets ``/dev/zero``, a FIFO with no writer and a file over its limit; each must refuse
with its one-line error before reading (never by running out of memory, never by waiting). The
calls run in a subprocess with a timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 120

# argv[1]: the reader, argv[2]: the path, argv[3]: a key folder (for sign_pdf)
_DRIVER = """
import sys
from pathlib import Path
from audit.contract.errors import CvauditError
reader, path = sys.argv[1], Path(sys.argv[2])
try:
    if reader == "attestation public key":
        from reports.keys import load_attestation_public_key
        load_attestation_public_key(path)
    elif reader == "key folder":
        from reports.keys import load_signing_keys
        load_signing_keys(path)
    elif reader == "trust key folder":
        from reports.trust import load_anchors
        load_anchors(key_dirs=[path])
    elif reader == "pdf to sign":
        from reports.signing import sign_pdf
        sign_pdf(path, sys.argv[3])
    elif reader == "coco detections":
        from audit.evaluation.detection.coco_metrics import CocoEvaluator
        CocoEvaluator.__new__(CocoEvaluator).load(path)  # the file is read before anything of the evaluator
    elif reader == "queue detections":
        from audit.loop.detection_queue import _detections_by_condition
        _detections_by_condition(path, set())
    else:
        raise SystemExit(f"unknown reader {reader}")
except CvauditError as exc:
    print(f"{type(exc).__name__}: {exc}")
    raise SystemExit(2)
raise SystemExit(0)
"""

READERS = {
    # reader -> (limit in the message for an oversized file, or None when a folder is expected)
    "attestation public key": "1.0 MiB",
    "key folder": None,
    "trust key folder": None,
    "pdf to sign": "1024.0 MiB",
    "coco detections": "1024.0 MiB",
    "queue detections": "1024.0 MiB",
}


@pytest.fixture(scope="module")
def key_folder(tmp_path_factory) -> Path:
    from reports.keys import keygen

    folder = tmp_path_factory.mktemp("keys") / "k"
    keygen(folder)
    return folder


def _call(reader: str, path: Path, key_folder: Path) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, reader, str(path), str(key_folder)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_devices_and_fifos_are_refused(reader, special, tmp_path, key_folder):
    if special == "fifo":
        target = tmp_path / "pipe.pem"
        os.mkfifo(target)
    else:
        if not os.path.exists(special):
            pytest.skip(f"{special} not on this system")
        target = Path(special)
    code, out = _call(reader, target, key_folder)
    assert code == 2, out
    assert len(out.splitlines()) == 1 and str(target) in out, out
    expected = "is not a folder" if READERS[reader] is None else ("is a FIFO" if special == "fifo" else "character")
    assert expected in out, out


@pytest.mark.parametrize("reader", sorted(r for r, limit in READERS.items() if limit))
def test_a_file_over_the_limit_is_refused_before_reading(reader, tmp_path, key_folder):
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate((1 << 30) + 1)  # sparse: no disk, and reading it would cost a GiB
    code, out = _call(reader, big, key_folder)
    assert code == 2, out
    assert "big.bin" in out and f"at most {READERS[reader]}" in out, out


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_coco_annotations_refuse_devices_and_fifos(special, tmp_path):
    """A FIFO passed the old stat-then-open check (size 0) and then waited forever in open()."""
    target = tmp_path / "pipe.json"
    if special == "fifo":
        os.mkfifo(target)
    elif os.path.exists(special):
        target = Path(special)
    else:
        pytest.skip(f"{special} not on this system")
    snippet = (
        "import sys\nfrom pathlib import Path\nfrom audit.contract.errors import AuditError\n"
        "from audit.evaluation.detection.annotations import read_coco\n"
        "try:\n    read_coco(Path(sys.argv[1]), root=Path(sys.argv[2]))\n"
        "except AuditError as exc:\n    print(exc)\n    raise SystemExit(2)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", snippet, str(target), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2 and len(out.splitlines()) == 1 and str(target) in out, out
    assert ("is a FIFO" if special == "fifo" else "is a character device") in out, out
