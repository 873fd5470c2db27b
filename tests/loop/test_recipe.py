"""cvaudit recipe and stressors.recipe.load: loss-weighted mix, both conventions, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from loop_helpers import one_line_error

from audit.cli import main
from stressors.base import StressorError
from stressors.recipe import Recipe, load


def recipe(run_dir, out):
    return CliRunner().invoke(main, ["recipe", str(run_dir), "--out", str(out)])


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    from cvaudit_fixtures import ColourNet
    from loop_helpers import finish_run

    stress = "  - {name: night, severities: [1, 3, 5]}\n  - {name: occlusion, severities: [1, 5]}\n"
    return finish_run(tmp_path_factory.mktemp("colour"), stressors=stress, model=ColourNet())


@pytest.fixture(scope="module")
def written(colour_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    result = recipe(colour_run, out)
    assert result.exit_code == 0, result.output
    return out


def test_weights_are_proportional_to_the_loss_where_the_model_lost(written, colour_run):
    run_dir = colour_run
    import json

    data = yaml.safe_load(written.read_text())
    results = json.loads((run_dir / "results.json").read_text())
    drops = {}
    for row in results["robustness"]:
        drops.setdefault(row["stressor"], {})[row["severity"]] = row["drop"]
    losses = {}
    for name, by_level in drops.items():
        span = [lv for lv in sorted(by_level) if lv >= min((lv for lv in by_level if by_level[lv] >= 0.02), default=99)]
        if span:
            losses[name] = sum(max(by_level[lv], 0) for lv in span) / len(span)
    got = {s["name"]: s for s in data["stressors"]}
    assert set(got) == set(losses)
    total = sum(losses.values())
    for name, loss in losses.items():
        assert got[name]["loss"] == pytest.approx(loss, abs=1e-6)
        assert got[name]["weight"] == pytest.approx(loss / total, abs=1e-6)


def test_the_torch_module_draws_from_the_given_generator(written):
    augment = load(written)
    assert isinstance(augment, torch.nn.Module) and isinstance(augment, Recipe)
    x = torch.rand(8, 3, 16, 16)
    a = augment(x, generator=torch.Generator().manual_seed(3))
    b = augment(x, generator=torch.Generator().manual_seed(3))
    c = augment(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype and float(a.min()) >= 0 and float(a.max()) <= 1
    assert augment(x[0]).shape == x[0].shape
    changed = (a - x).flatten(1).abs().amax(dim=1) > 0
    assert 0 < int(changed.sum()) < 8  # probability 0.5: some images are left as they are


def test_the_albumentations_transform_drops_into_compose(written):
    import albumentations as A

    aug = load(written).albumentations()
    assert isinstance(aug, A.ImageOnlyTransform)
    image = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    first = [A.Compose([A.HorizontalFlip(p=0.0), aug], seed=7)(image=image)["image"] for _ in range(1)]
    pipeline = A.Compose([A.HorizontalFlip(p=0.0), aug], seed=7)
    runs = [pipeline(image=image)["image"] for _ in range(6)]
    assert runs[0].dtype == np.uint8 and runs[0].shape == image.shape
    assert np.array_equal(first[0], runs[0])  # the Compose seed decides every draw
    assert any(not np.array_equal(r, image) for r in runs)


def test_attacks_never_enter_a_recipe(tmp_path):
    from cvaudit_fixtures import ColourNet
    from loop_helpers import finish_run

    run_dir = finish_run(
        tmp_path,
        stressors="  - {name: night, severities: [1, 5]}\n  - {name: fgsm, epsilons: [0.0, 0.1, 0.3]}\n",
        model=ColourNet(),
    )
    out = tmp_path / "r.yaml"
    assert recipe(run_dir, out).exit_code == 0
    assert [s["stressor"] for s in yaml.safe_load(out.read_text())["stressors"]] == ["night"]


def test_a_run_without_stressors(tmp_path):
    from loop_helpers import finish_run

    run_dir = finish_run(tmp_path, stressors="")
    one_line_error(recipe(run_dir, tmp_path / "r.yaml"), "has no image stressors")


def test_a_bad_recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nstressors: [{name: x, stressor: night, severity: [3, 1], weight: 1}]\n")
    with pytest.raises(StressorError, match=r"r.yaml: stressors.0: .*low <= high"):
        load(path)
    with pytest.raises(StressorError, match="recipe file not found"):
        load(tmp_path / "missing.yaml")
