"""Close the loop on the demo detector: audit -> queue + recipe -> fine-tune with boxes -> audit again.

Run it (CPU, a few minutes; two fine-tunes of a minute or two each)::

    python examples/detector_loop/detector_loop.py --work detector-loop

1. audits the shipped demo detector (``cvaudit demo --task detection``'s shapes detector and scenes)
   under night, occlusion and defocus blur;
2. ``cvaudit queue``: the images worth labelling next, as Label Studio rectangle tasks;
3. ``cvaudit recipe``: an augmentation mix weighted by where the detector lost mAP;
4. fine-tunes the detector twice from the shipped weights on the demo's training scenes, with the
   demo's own loss and targets (:mod:`audit.demo_detection`), the same epochs, learning rate and
   random draws: once with the demo's flip and jitter only (the control), once with the recipe's
   ``with_boxes`` on top (each image augmented with the recipe's probability, its boxes moved with it);
5. audits both and prints, per condition, mAP and recall at the operating point before and after,
   and the mean gain over the recipe's conditions (the failing ones) of each fine-tune.

The control separates what the recipe buys from what more training buys.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from click.testing import CliRunner

from audit.cli import main as cvaudit
from audit.demo_detection import (
    SIZE,
    Scene,
    ShapesDetector,
    _loss,
    _targets,
    build_scenes,
    load_detection_demo_weights,
    write_detection_demo,
)


def cli(*args: object) -> str:
    """Run one cvaudit command in-process; exit 0 (pass) and 1 (policy failed) are both fine here."""
    result = CliRunner().invoke(cvaudit, [str(a) for a in args])
    if result.exit_code not in (0, 1):
        raise SystemExit(f"cvaudit {args[0]} failed ({result.exit_code}): {result.output}")
    return result.output


def fine_tune(
    recipe_path: Path | None,
    out_path: Path,
    *,
    scenes: list[Scene],
    epochs: int = 2,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
) -> Path:
    """Fine-tune the shipped demo detector on ``scenes`` (the demo's training split); with ``recipe_path``, its
    ``with_boxes`` augments every batch.

    Every random draw comes from one generator seeded with ``seed``: the shuffling, the flip, the
    jitter and (with a recipe) the recipe's draws, which come last in each batch so that both arms
    shuffle, flip and jitter the same way.
    """
    from stressors.recipe import load

    augment = load(recipe_path) if recipe_path is not None else None
    n_train = len(scenes)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).contiguous()
    boxes = [torch.from_numpy(s.boxes).double().reshape(-1, 4) for s in scenes]  # COCO xywh
    boxes = [torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1) for b in boxes]  # xyxy pixels
    model = load_detection_demo_weights()
    c, stride = len(model.head.bias) - 4, ShapesDetector.stride
    g = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(n_train / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n_train, generator=g)
        for start in range(0, n_train, batch_size):
            idx = perm[start : start + batch_size].tolist()
            flip = (torch.rand(len(idx), generator=g) < 0.5).tolist()
            contrast = 0.8 + 0.4 * torch.rand(len(idx), 1, 1, 1, generator=g)
            bright = 0.1 * (torch.rand(len(idx), 1, 1, 1, generator=g) - 0.5)
            x = images[idx].float() / 255.0
            bx = [boxes[i].clone() for i in idx]
            for k, f in enumerate(flip):
                if f:
                    x[k] = x[k].flip(-1)
                    bx[k] = torch.stack([SIZE - bx[k][:, 2], bx[k][:, 1], SIZE - bx[k][:, 0], bx[k][:, 3]], dim=1)
            x = (0.5 + contrast * (x - 0.5) + bright).clamp(0, 1)
            labels = [torch.from_numpy(scenes[i].labels) for i in idx]
            if augment is not None:
                out = augment.with_boxes(x, bx, generator=g)
                x, bx = out.images, out.boxes
                labels = [lab[kept] for lab, kept in zip(labels, out.kept)]
            batch = [
                Scene(
                    scenes[i].image,
                    torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], dim=1).numpy(),
                    lab.numpy(),
                    scenes[i].occluded,
                    scenes[i].camera,
                    scenes[i].lighting,
                )
                for i, b, lab in zip(idx, bx, labels)
            ]
            heat, objects = _targets(batch, c, stride)
            loss = _loss(model.raw(x.float()), heat, objects, c)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, out_path)
    return out_path


def metrics_by_condition(results_path: Path) -> dict[str, dict[str, float]]:
    """condition -> {map, map_50, recall} of a detection run's results.json."""
    results = json.loads(results_path.read_text())
    return {
        c["id"]: {k: c["metrics"][k] for k in ("map", "map_50", "recall")} for c in results["detection"]["conditions"]
    }


def _audit(workspace: Path, weights: Path, out: Path) -> dict[str, dict[str, float]]:
    config = workspace / f"{out.name}.yaml"
    text = (workspace / "config.yaml").read_text()
    start = text.index("  weights: ")
    end = text.index("\n", start)
    config.write_text(text[:start] + f"  weights: {json.dumps(str(weights))}" + text[end:])
    cli("run", config, "--out", out, "--quiet")
    return metrics_by_condition(out / "results.json")


def detector_loop(work: Path, *, epochs: int = 2, n_train: int = 1000, control: bool = True) -> dict[str, object]:
    """The whole loop; returns the metrics per condition before and after each fine-tune and the failing conditions."""
    workspace = work / "workspace"
    write_detection_demo(workspace, log=print)
    config = workspace / "config.yaml"
    # html only (no PDF) and the CPU: the example's audits stay quick and comparable
    config.write_text(config.read_text().replace("formats: [html, pdf]", "formats: [html]").replace("auto", "cpu"))
    cli("run", config, "--out", work / "audit-before", "--quiet")
    print(cli("queue", work / "audit-before", "--out", work / "queue", "--budget", "50").strip().splitlines()[0])
    print(cli("recipe", work / "audit-before", "--out", work / "recipe.yaml").strip())
    before = metrics_by_condition(work / "audit-before" / "results.json")
    recipe = yaml.safe_load((work / "recipe.yaml").read_text())
    failing = [
        cid
        for cid in before
        for s in recipe["stressors"]
        if cid.startswith(f"{s['name']}@") and s["severity"][0] <= float(cid.split("@")[1]) <= s["severity"][1]
    ]
    arms = {"recipe": work / "recipe.yaml"}
    if control:
        arms = {"control": None, **arms}
    after: dict[str, dict[str, dict[str, float]]] = {}
    scenes = build_scenes(0, n_train, split="train")  # the demo's training split (the detector saw these)
    for arm, recipe_path in arms.items():
        weights = fine_tune(recipe_path, workspace / f"detector-{arm}.pt", scenes=scenes, epochs=epochs)
        after[arm] = _audit(workspace, weights, work / f"audit-{arm}")
    head = f"{'condition':<13}" + "".join(f"{'mAP ' + a:>14}{'recall ' + a:>16}" for a in ["before", *after])
    print(head)
    for cid in before:
        cells = [before[cid], *(after[a][cid] for a in after)]
        print(f"{cid:<13}" + "".join(f"{m['map']:>14.3f}{m['recall']:>16.3f}" for m in cells))
    summary: dict[str, object] = {"failing": failing, "before": before, "after": after, "gain": {}}
    for arm in after:
        gain = {
            k: sum(after[arm][c][k] - before[c][k] for c in failing) / len(failing) for k in ("map", "map_50", "recall")
        }
        summary["gain"][arm] = gain  # type: ignore[index]
        print(
            f"fine-tune {arm}: mean gain over the failing conditions ({', '.join(failing)}): "
            f"mAP {gain['map']:+.3f}, AP50 {gain['map_50']:+.3f}, recall {gain['recall']:+.3f}; "
            f"clean mAP {before['clean']['map']:.3f} -> {after[arm]['clean']['map']:.3f}"
        )
    (work / "gain.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("detector-loop"), help="working folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--no-control", action="store_true", help="skip the fine-tune without the recipe")
    args = parser.parse_args()
    detector_loop(args.work, epochs=args.epochs, n_train=args.train_images, control=not args.no_control)
