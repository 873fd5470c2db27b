"""The ImageNet-C benchmark on the demo: a deployed model's run as the baseline, a candidate gated by mCE.

Run it (CPU; a few minutes for the 19 corruptions x 5 severities on the 600 demo images)::

    python examples/imagenet_c/run_example.py --work imagenet-c-demo

1. builds the demo workspace (``cvaudit demo``'s digits CNN and its 600 audit images);
2. the *candidate* is the deployed CNN with its weights quantized to 4 bits per tensor (a real
   deployment step whose robustness a CI gate must check);
3. audits the *deployed* model with the suite (``baseline.yaml``: ``benchmark.baseline: alexnet``);
   its ``results.json`` becomes the baseline;
4. audits the candidate with ``benchmark.baseline: deployed/results.json`` (``config.yaml``) under
   ``policy.yaml``: mCE <= 1 blocks, relative mCE <= 1 warns. The report shows the heat map, the CE
   bars against the deployed model and a preview of every corruption at every severity.

``--corruptions`` runs a subset (comma-separated; default: all 19), ``--samples`` the first N images.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
from pathlib import Path

import torch

from audit.demo import load_demo_weights, prepare_demo
from audit.runner import run

HERE = Path(__file__).resolve().parent


def quantized_candidate(path: Path, bits: int = 4) -> Path:
    """The deployed CNN with every weight tensor rounded to ``bits``-bit symmetric levels (per tensor)."""
    model = load_demo_weights()
    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight"):
                scale = param.abs().max() / levels
                param.copy_(torch.round(param / scale) * scale)
    torch.jit.save(torch.jit.script(model.eval()), str(path))
    return path


def _first_rows(manifest: Path, n: int) -> None:
    rows = list(csv.reader(io.StringIO(manifest.read_text(encoding="utf-8"), newline="")))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows[: n + 1])
    manifest.write_text(out.getvalue(), encoding="utf-8")


def _config(template: str, corruptions: list[str] | None) -> str:
    text = (HERE / template).read_text(encoding="utf-8")
    if corruptions:
        text = text.replace(
            "  suite: imagenet-c\n", f"  suite: imagenet-c\n  corruptions: [{', '.join(corruptions)}]\n"
        )
    return text


def run_example(work: Path, *, corruptions: list[str] | None = None, samples: int | None = None) -> dict[str, Path]:
    """Build the workspace, run the deployed model's suite, then the candidate's against it.

    Returns:
        The output folders: ``{"deployed": ..., "candidate": ...}``.
    """
    workspace = work / "workspace"
    prepare_demo(workspace, sign=False, log=lambda line: None)
    if samples is not None:
        _first_rows(workspace / "manifest.csv", samples)
    quantized_candidate(workspace / "candidate.pt")
    shutil.copy(HERE / "policy.yaml", workspace / "policy.yaml")
    for name in ("baseline.yaml", "config.yaml"):
        (workspace / name).write_text(_config(name, corruptions), encoding="utf-8")
    deployed, candidate = work / "deployed", work / "candidate"
    (workspace / "deployed").mkdir(exist_ok=True)
    run(workspace / "baseline.yaml", out_dir=deployed, force=True)
    shutil.copy(deployed / "results.json", workspace / "deployed" / "results.json")
    run(workspace / "config.yaml", out_dir=candidate, force=True)
    return {"deployed": deployed, "candidate": candidate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("imagenet-c-demo"))
    parser.add_argument("--corruptions", type=lambda s: [c.strip() for c in s.split(",") if c.strip()])
    parser.add_argument("--samples", type=int)
    args = parser.parse_args(argv)
    outs = run_example(args.work, corruptions=args.corruptions, samples=args.samples)
    for name, what in (("deployed", "the deployed model against AlexNet"), ("candidate", "the candidate against it")):
        results = json.loads((outs[name] / "results.json").read_text(encoding="utf-8"))
        mce = results["imagenet_c"]["mce"]
        shown = "-" if mce is None else f"{mce:.3f}"
        print(f"{what}: mCE {shown}, verdict {results['policy']['verdict']}; {outs[name] / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
