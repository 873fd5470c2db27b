"""Models are code: a pickled model is one line and exit 2; the code a run executed is named.

Issue 31 point 7: a plain-pickle ``model.path`` printed a 20-line torch traceback, and a factory
or a ``.pt2`` ran code without the run saying which.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import jsonschema
import torch
from click.testing import CliRunner
from cvaudit_fixtures import ColourNet, write_config

from audit.cli import main
from audit.contract.schema import shipped_schema

ROOT = Path(__file__).resolve().parents[1]

FACTORY = (
    "import torch\n"
    "class Net(torch.nn.Module):\n"
    "    def forward(self, x):\n"
    "        return 8.0 * x.mean(dim=(2, 3))\n"
    "def make():\n"
    "    return Net()\n"
)


def run(cfg: Path, out: Path):
    return CliRunner().invoke(main, ["run", str(cfg), "--out", str(out)])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pickled_whole_module_is_one_line_exit_2_through_the_real_cli(workspace):
    model = workspace / "model.pt"
    torch.save(ColourNet(), model)  # the whole nn.Module pickled: weights_only loading refuses it
    cfg = write_config(workspace, stressors="")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "audit", "run", str(cfg), "--out", str(workspace / "out"), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=workspace,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert str(model) in line and "pickle" in line
    assert "model.factory" in line and "TorchScript" in line and ".pt2" in line
    assert not (workspace / "out").exists()


def test_legacy_and_plain_pickles_are_one_line(workspace):
    cfg = write_config(workspace, stressors="")
    for save in (
        lambda p: torch.save(ColourNet(), p, _use_new_zipfile_serialization=False),
        lambda p: p.write_bytes(pickle.dumps({"anything": [1, 2, 3]})),
    ):
        save(workspace / "model.pt")
        result = run(cfg, workspace / "out")
        assert result.exit_code == 2, result.output
        assert "pickle" in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_state_dict_as_model_path_says_to_give_a_factory(workspace):
    torch.save({"w": torch.zeros(2)}, workspace / "model.pt")
    result = run(write_config(workspace, stressors=""), workspace / "out")
    assert result.exit_code == 2 and "model.factory" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_whole_module_as_factory_weights_is_one_line(workspace):
    (workspace / "codenet_weights.py").write_text(FACTORY)  # a module name of its own: imports are cached
    torch.save(ColourNet(), workspace / "weights.pt")
    cfg = write_config(workspace, stressors="")
    cfg.write_text(
        cfg.read_text().replace("  path: model.pt", "  factory: 'codenet_weights:make'\n  weights: weights.pt")
    )
    result = run(cfg, workspace / "out")
    assert result.exit_code == 2, result.output
    assert "weights.pt" in result.output and "state_dict" in result.output and "pickle" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_factory_run_names_module_function_and_the_module_digest(workspace):
    (workspace / "codenet.py").write_text(FACTORY)
    cfg = write_config(workspace, stressors="")
    cfg.write_text(cfg.read_text().replace("  path: model.pt", "  factory: 'codenet:make'"))
    out = workspace / "out"
    result = run(cfg, out)
    assert result.exit_code == 0, result.output
    digest = _sha(workspace / "codenet.py")
    assert f"code executed: codenet:make (codenet.py, sha256 {digest})" in result.output
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, shipped_schema())
    assert results["model"]["code_executed"] == {
        "kind": "factory",
        "name": "codenet:make",
        "path": "codenet.py",
        "sha256": digest,
    }
    html = (out / "report.html").read_text()
    assert "Code executed" in html and digest in html and "codenet:make" in html


def test_torchscript_and_torch_export_runs_name_the_program(workspace):
    cfg = write_config(workspace, stressors="")
    result = run(cfg, workspace / "out")
    assert result.exit_code == 0, result.output
    model = json.loads((workspace / "out" / "results.json").read_text())["model"]
    assert model["code_executed"] == {
        "kind": "torchscript",
        "name": "model.pt",
        "path": str(workspace / "model.pt"),
        "sha256": _sha(workspace / "model.pt"),
    }
    assert "code executed: TorchScript program model.pt" in result.output

    dynamic = ({0: torch.export.Dim("b")},)
    program = torch.export.export(ColourNet().eval(), (torch.rand(2, 3, 16, 16),), dynamic_shapes=dynamic)
    torch.export.save(program, str(workspace / "model.pt2"))
    cfg.write_text(cfg.read_text().replace("path: model.pt", "path: model.pt2"))
    result = run(cfg, workspace / "out2")
    assert result.exit_code == 0, result.output
    code = json.loads((workspace / "out2" / "results.json").read_text())["model"]["code_executed"]
    assert code["kind"] == "torch.export" and code["sha256"] == _sha(workspace / "model.pt2")
    assert f"code executed: torch.export program model.pt2 (sha256 {code['sha256']})" in result.output
