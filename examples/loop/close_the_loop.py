"""Close the loop on the demo model: audit -> queue + recipe -> fine-tune -> audit again with --baseline.

Run it (CPU, a few minutes; about a minute of it is training)::

    python examples/loop/close_the_loop.py --work loop-demo

1. audits the demo CNN (``cvaudit demo``'s model and digits) under night and occlusion;
2. ``cvaudit queue``: the samples worth labelling next, as a Label Studio import;
3. ``cvaudit recipe``: an augmentation mix weighted by where the model lost accuracy;
4. fine-tunes the demo CNN for a few epochs with ``stressors.recipe.load(recipe)``
   applied to half of every batch (random draws from the training generator);
5. audits the fine-tuned model with ``--baseline`` pointing at the first audit and
   prints, per condition, the accuracy before and after.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from click.testing import CliRunner

from audit.cli import main as cvaudit
from audit.demo import DigitsCNN, build_demo_data, prepare_demo

CONFIG = """\
seed: 0
device: cpu
batch_size: 128
model:
  path: {model}
  input_size: [32, 32]
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
  class_names: [zero, one, two, three, four, five, six, seven, eight, nine]
data:
  manifest: manifest.csv
  attributes: [camera, ink]
  num_workers: 0
stressors:
  - {{name: night, severities: [1, 2, 3, 4, 5]}}
  - {{name: occlusion, fill: black, severities: [1, 3, 5]}}
policy: demo
evaluation:
  n_bootstrap: 50
report:
  formats: [html]
"""


def cli(*args: str) -> str:
    """Run one cvaudit command in-process; exit 0 (pass) and 1 (policy failed) are both fine here."""
    result = CliRunner().invoke(cvaudit, [str(a) for a in args])
    if result.exit_code not in (0, 1):
        raise SystemExit(f"cvaudit {args[0]} failed ({result.exit_code}): {result.output}")
    return result.output


def fine_tune(model_path: Path, recipe_path: Path, out_path: Path, *, epochs: int = 4, seed: int = 0) -> Path:
    """Fine-tune the demo CNN with the recipe applied to half of each batch; save it as TorchScript."""
    from stressors.recipe import load

    augment = load(recipe_path)
    data = build_demo_data(seed)
    model = DigitsCNN()
    model.load_state_dict(torch.jit.load(str(model_path)).state_dict())
    x = torch.from_numpy(data["train_x"]).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(data["train_y"])
    g = torch.Generator().manual_seed(seed)  # the pipeline's generator: every random draw comes from it
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), 64):
            idx = perm[start : start + 64]
            xb = x[idx].clone()
            half = len(idx) // 2
            xb[:half] = augment(xb[:half], generator=g)
            loss = F.cross_entropy(model((xb - 0.5) / 0.25), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    torch.jit.save(torch.jit.script(model), str(out_path))
    return out_path


def accuracy_by_condition(results_path: Path) -> dict[str, float]:
    results = json.loads(results_path.read_text())
    return {c["id"]: c["metrics"]["accuracy"] for c in results["conditions"]}


def close_the_loop(work: Path, *, epochs: int = 4) -> dict[str, dict[str, float]]:
    """The whole loop; returns accuracy per condition before and after."""
    workspace = work / "workspace"
    prepare_demo(workspace, sign=False, log=print)
    (workspace / "audit.yaml").write_text(CONFIG.format(model="model.pt"))
    cli("run", workspace / "audit.yaml", "--out", work / "audit-before", "--quiet")
    print(cli("queue", work / "audit-before", "--out", work / "queue", "--budget", "50").strip())
    print(cli("recipe", work / "audit-before", "--out", work / "recipe.yaml").strip())
    fine_tune(workspace / "model.pt", work / "recipe.yaml", workspace / "model-finetuned.pt", epochs=epochs)
    (workspace / "audit-finetuned.yaml").write_text(CONFIG.format(model="model-finetuned.pt"))
    baseline = work / "audit-before" / "results.json"
    cli("run", workspace / "audit-finetuned.yaml", "--out", work / "audit-after", "--baseline", baseline, "--quiet")
    before, after = accuracy_by_condition(baseline), accuracy_by_condition(work / "audit-after" / "results.json")
    print(f"{'condition':<14}{'before':>8}{'after':>8}")
    for cid in before:
        print(f"{cid:<14}{before[cid]:>8.3f}{after[cid]:>8.3f}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("loop-demo"), help="working folder")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    close_the_loop(args.work, epochs=args.epochs)
