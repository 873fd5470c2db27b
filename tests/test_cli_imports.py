"""The optional extras (transformers, MLflow, huggingface_hub) are imported only when used."""

from __future__ import annotations

import json
import subprocess
import sys

EXTRAS = ("transformers", "mlflow", "huggingface_hub", "safetensors")

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


def test_help_and_modules_import_no_extra():
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, timeout=120)
    loaded = set(json.loads(out.stdout))
    assert not loaded & set(EXTRAS), sorted(loaded & set(EXTRAS))
