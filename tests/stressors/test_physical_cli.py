"""universal / patch through the real CLI: bad input is one line, exit 2, before any image is decoded; a run
cross-fits them, records the fit and the fooling rate, gates them with policy rules, writes the fitted
perturbations beside the report, and gives the same predictions whatever the batch size."""

from __future__ import annotations

import csv
import json

import jsonschema
import pytest
from click.testing import CliRunner

from audit.cli import main
from audit.contract.schema import shipped_schema
from tests.cvaudit_fixtures import save_model, workspace, write_config  # noqa: F401

pytestmark = pytest.mark.usefixtures("workspace")

STRESSORS = (
    "  - {name: universal, epsilons: [0.05, 0.4], epochs: 2, fit_batch_size: 4}\n"
    "  - {name: patch, shares: [0.05, 0.2], epochs: 2, fit_batch_size: 4}\n"
)
RULES = """\
  - id: universal-large
    condition: universal@0.4
    metric: accuracy
    min: 0.9
    blocking: true
  - id: patch-small
    condition: patch@0.05
    metric: accuracy
    min: 0.9
    blocking: true
"""


def _spoil_images(root):
    """Every PNG becomes garbage: an error about an image means images were read first."""
    for png in (root / "img").glob("*.png"):
        png.write_bytes(b"not a png")


@pytest.mark.parametrize(
    "entry, words",
    [
        ("{name: patch, shares: [0.05, 1.0]}", "patch: option 'shares': patch share 1.0 must be a number in (0, 1)"),
        ("{name: patch, shares: [0]}", "patch: option 'shares': patch share 0 must be a number in (0, 1)"),
        ("{name: patch, eot_samples: 0}", "patch: option 'eot_samples' must be an integer >= 1, got 0"),
        ("{name: patch, scale_range: [0, 1]}", "patch: option 'scale_range' must be [min, max]"),
        ("{name: patch, shares: [0.05, 0.5]}", "'patch': patch: share 0.5 gives a 11 px patch, which at scale 1.2"),
        ("{name: universal, epsilons: [1.5]}", "universal: option 'epsilons': epsilon 1.5 outside [0, 1]"),
        ("{name: universal, epsilons: [-0.01]}", "universal: option 'epsilons': epsilon -0.01 outside [0, 1]"),
        ("{name: universal, epochs: 0}", "universal: option 'epochs' must be an integer >= 1, got 0"),
        ("{name: universal, fit_samples: 0}", "universal: option 'fit_samples' must be an integer >= 1, got 0"),
        ("{name: universal, restarts: 2}", "universal: unknown option 'restarts'"),
    ],
)
def test_bad_options_exit_2_in_one_line_before_any_image(workspace, entry, words):  # noqa: F811
    _spoil_images(workspace)
    cfg = write_config(workspace, stressors=f"  - {entry}\n")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(workspace / "out"), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], result.output
    assert "png" not in result.output.lower()


def test_fitted_attack_on_a_model_without_gradients_exit_2(workspace):  # noqa: F811
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import torch

    from tests.cvaudit_fixtures import ColourNet

    torch.onnx.export(ColourNet().eval(), (torch.rand(2, 3, 16, 16),), str(workspace / "model.onnx"), dynamo=True)
    _spoil_images(workspace)
    cfg = write_config(workspace, model="model.onnx", stressors="  - {name: patch}\n")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(workspace / "out"), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "'patch' needs gradients" in lines[0]


def _physical_rows(path):
    with open(path, newline="") as fh:
        return sorted(
            (r["sample_id"], r["condition"], r["prediction"], r["p_true"])
            for r in csv.DictReader(fh)
            if r["condition"] != "clean"
        )


@pytest.mark.slow
def test_a_run_cross_fits_records_gates_and_shows_them(workspace):  # noqa: F811
    cfg = write_config(workspace, stressors=STRESSORS, extra="  images: raw\n")
    with open(workspace / "policy.yaml", "a") as fh:
        fh.write(RULES)
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output  # universal@0.4 fails its rule
    res = json.loads((out / "results.json").read_text())
    jsonschema.validate(res, shipped_schema())
    rules = {r["id"]: r["status"] for r in res["policy"]["rules"]}
    assert rules["universal-large"] == "fail" and rules["patch-small"] == "pass"
    conds = {c["id"]: c for c in res["conditions"]}
    clean_n = conds["clean"]["metrics"]["n"]
    for cid, threat in (
        ("universal@0.05", "universal_linf"),
        ("universal@0.4", "universal_linf"),
        ("patch@0.05", "adversarial_patch"),
        ("patch@0.2", "adversarial_patch"),
    ):
        c, p = conds[cid], conds[cid]["physical"]
        assert c["metrics"]["n"] == p["n"] == clean_n == 24  # cross-fitting: every sample is evaluated
        assert sum(p["fold_sizes"]) == 24 and min(p["fold_sizes"]) > 0 and p["threat_model"] == threat
        assert p["fooling_rate"] == pytest.approx(p["changed"] / p["n"])
        assert {g["attribute"] for g in c["groups"]} == {"camera"}  # per subgroup, like any condition
        assert len(p["images"]) == 2 and all(u.startswith("data:image/png;base64,") for u in p["images"])
        assert all((out / f"physical-{cid}-fold{k}.png").is_file() for k in (0, 1))
    assert conds["universal@0.4"]["physical"]["fooling_rate"] > 0
    assert conds["patch@0.2"]["physical"]["patch_side"] == 7  # round(sqrt(0.2 * 16 * 16))
    assert conds["patch@0.2"]["physical"]["area_share"] == pytest.approx(49 / 256)  # the actual area, not 0.2
    assert "0.1914 of the 16 x 16 image area" in conds["patch@0.2"]["physical"]["budget_meaning"]
    assert conds["universal@0.4"]["physical"]["fit"]["step_size"] == pytest.approx(0.05)
    html = (out / "report.html").read_text()
    assert "Physical threats" in html and "universal@0.4, fold 1" in html
    # the evaluation does not depend on the batch size
    again = workspace / "again"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(again), "--quiet", "--batch-size", "7"])
    assert result.exit_code == 1, result.output
    assert _physical_rows(out / "predictions.csv") == _physical_rows(again / "predictions.csv")


@pytest.mark.slow
def test_with_an_attack_subset_the_fit_and_the_evaluation_use_it(workspace):  # noqa: F811
    cfg = write_config(workspace, stressors="  - {name: universal, epsilons: [0.2], epochs: 1, fit_batch_size: 4}\n")
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet", "--attack-samples", "12"])
    assert result.exit_code in (0, 1), result.output
    cond = next(c for c in json.loads((out / "results.json").read_text())["conditions"] if c["id"] == "universal@0.2")
    assert cond["metrics"]["n"] == cond["physical"]["n"] == sum(cond["physical"]["fold_sizes"]) == 12
    assert "images" not in cond["physical"] and not list(out.glob("physical-*.png"))  # report.images: none


def test_several_processes_are_refused_in_one_line_before_any_process_starts(workspace):  # noqa: F811
    _spoil_images(workspace)
    cfg = write_config(workspace, stressors="  - {name: night, severities: [1]}\n  - {name: patch}\n")
    result = CliRunner().invoke(
        main, ["run", str(cfg), "--out", str(workspace / "out"), "--quiet", "--nproc-per-node", "2"]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "stressor 'patch' is a fitted attack" in lines[0] and "(2 processes)" in lines[0]


def test_a_bad_image_stops_the_fit_under_on_bad_image_error(workspace, monkeypatch):  # noqa: F811
    import audit.runner

    def never(**_):
        raise AssertionError("the evaluation pass was reached: the fit skipped the bad image")

    monkeypatch.setattr(audit.runner, "evaluate", never)
    (workspace / "img" / "1.png").write_bytes(b"not a png")
    cfg = write_config(workspace, stressors="  - {name: universal, epsilons: [0.1], epochs: 2, fit_batch_size: 4}\n")
    out = workspace / "out"
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "1.png" in lines[0] and "sample s001" in lines[0], result.output
    assert not out.exists() or not any(out.iterdir())


def _fit_on_workspace(workspace, stressor, *, batch_size, progress=None):  # noqa: F811
    """fit_attacks on the workspace's 24 images as a run reads them: (model, table, keys, images, labels)."""
    import torch

    from audit.contract.config import load_config
    from audit.evaluation.conditions import Condition
    from audit.evaluation.data import AuditDataset, read_samples, sample_keys_of
    from audit.evaluation.fitting import fit_attacks
    from tests.cvaudit_fixtures import ColourNet

    cfg = load_config(write_config(workspace, stressors="  - {name: universal}\n"))
    table = read_samples(cfg.data, class_names=cfg.model.class_names)
    keys = sample_keys_of(table)
    model = ColourNet().eval()
    conditions = [Condition("clean"), Condition(f"{stressor.name}@x", stressor, stressor.severities[0], stressor.name)]
    fit_attacks(
        model=model, table=table, model_cfg=cfg.model, conditions=conditions, keys=keys, indices=None, seed=cfg.seed,
        batch_size=batch_size, num_workers=0, device=torch.device("cpu"), progress=progress,
    )  # fmt: skip
    items = [AuditDataset(table, cfg.model, list(range(len(table))))[i] for i in range(len(table))]
    images = torch.stack([torch.as_tensor(it["image"]) for it in items])
    return model, table, keys, images, torch.as_tensor(table.labels), cfg.seed


def test_the_fit_reads_only_until_both_folds_are_full(workspace):  # noqa: F811
    """Counted on the fit's own progress bar (it advances by the images of every batch of every epoch)."""
    from stressors.adversarial import UniversalPerturbation

    read, totals = [0], []

    def progress(total, label):
        totals.append(total)

        def tick(n, *_):
            read[0] += n

        return tick

    attack = UniversalPerturbation(epsilons=[0.1], epochs=3, fit_batch_size=2, fit_samples=2)
    _, _, keys, *_ = _fit_on_workspace(workspace, attack, batch_size=1, progress=progress)
    per_epoch = attack.fit_reads(keys, 0)
    assert attack.fold_sizes == [2, 2] and per_epoch < 24
    assert read[0] == totals[0] == 3 * per_epoch  # not 3 x 24


def test_the_fit_and_the_evaluation_agree_on_the_folds(workspace):  # noqa: F811
    """perturb(x_i) == clip(x_i + fitted[1 - fold(key_i)]): each sample gets the perturbation of the other fold."""
    import torch

    from stressors.adversarial import UniversalPerturbation
    from stressors.attacks.physical import folds_of

    attack = UniversalPerturbation(epsilons=[0.2], epochs=2, fit_batch_size=4)
    model, _, keys, x, y, seed = _fit_on_workspace(workspace, attack, batch_size=5)
    assert min(attack.fold_sizes) > 0 and not torch.equal(*attack.fitted[0.2])
    out = attack.perturb(model, x, y, severity=0.2, sample_ids=keys, seed=seed)
    other = 1 - folds_of(keys, seed)
    expected = torch.stack([(x[i] + attack.fitted[0.2][int(other[i])]).clamp(0, 1) for i in range(len(x))])
    assert torch.equal(out, expected)


def test_the_evaluating_bar_is_created_after_the_fit(workspace, monkeypatch):  # noqa: F811
    import audit.cli.run

    made = []

    def factory(enabled):
        def make(total, label):
            made.append(label)
            return lambda *a, **k: None

        return make if enabled else None

    monkeypatch.setattr(audit.cli.run, "_progress_factory", factory)
    cfg = write_config(workspace, stressors="  - {name: universal, epsilons: [0.1], epochs: 1, fit_samples: 2}\n")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(workspace / "out")])
    assert result.exit_code in (0, 1), result.output
    fit, evaluating = made.index("fitting universal"), made.index("evaluating")
    assert fit < evaluating, made
