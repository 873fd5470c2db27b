"""APGD / autoattack through the real CLI: bad input is one line, exit 2, before any image is decoded;
a run records the ensemble's members, their robust accuracy and time, and AutoAttack's flags."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from audit.cli import main
from tests.cvaudit_fixtures import save_model, workspace, write_config  # noqa: F401

pytestmark = pytest.mark.usefixtures("workspace")


def _run(root, stressors: str):
    cfg = write_config(root, stressors=stressors)
    return CliRunner().invoke(main, ["run", str(cfg), "--out", str(root / "out"), "--quiet"])


def _spoil_images(root):
    """Every PNG becomes garbage: an error about an image means images were read first."""
    for png in (root / "img").glob("*.png"):
        png.write_bytes(b"not a png")


@pytest.mark.parametrize(
    "entry, words",
    [
        ("{name: apgd, epsilons: [0.5, 1.5]}", "apgd: option 'epsilons': epsilon 1.5 outside [0, 1]"),
        ("{name: apgd_l2, epsilons: [-1.0]}", "apgd_l2: option 'epsilons': epsilon -1.0 outside [0, inf)"),
        ("{name: autoattack, epsilons: [2.0]}", "autoattack: option 'epsilons': epsilon 2.0 outside [0, 1]"),
        ("{name: autoattack, eot_samples: 0}", "autoattack: option 'eot_samples' must be an integer >= 1, got 0"),
        ("{name: apgd_t, eot_samples: 0}", "apgd_t: option 'eot_samples' must be an integer >= 1, got 0"),
        ("{name: autoattack, members: [apgd-ce, fab]}", "autoattack: unknown member 'fab'"),
        ("{name: fab_t, epsilons: [0.5, 1.5]}", "fab_t: option 'epsilons': epsilon 1.5 outside [0, 1]"),
        ("{name: fab_t_l2, epsilons: [-1.0]}", "fab_t_l2: option 'epsilons': epsilon -1.0 outside [0, inf)"),
        ("{name: fab_t, eta: 0.5}", "fab_t: option 'eta' must be a number >= 1, got 0.5"),
        ("{name: fab_t_l2, alpha_max: 0}", "fab_t_l2: option 'alpha_max' must be a number (0, 1], got 0"),
        ("{name: fab_t, n_target_classes: 0}", "fab_t: option 'n_target_classes' must be an integer >= 1, got 0"),
        ("{name: fab_t, steps: 10}", "fab_t: unknown option 'steps'"),
        ("{name: autoattack, members: [apgd-ce, fab-t], n_iter: 0}", "autoattack: option 'n_iter' must be"),
        ("{name: autoattack_l2, members: [fab-t], restarts: 0}", "autoattack_l2: option 'restarts' must be"),
        ("{name: autoattack_l2, members: [square], p_init: 0}", "autoattack_l2: option 'p_init' must be a number"),
        ("{name: autoattack, members: [square], n_queries: 0}", "autoattack: option 'n_queries' must be"),
    ],
)
def test_bad_attack_options_exit_2_in_one_line_before_any_image(workspace, entry, words):  # noqa: F811
    _spoil_images(workspace)
    result = _run(workspace, f"  - {entry}\n")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], result.output
    assert "png" not in result.output.lower()


def test_gradient_attack_on_a_model_without_gradients_exit_2(workspace):  # noqa: F811
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import torch

    from tests.cvaudit_fixtures import ColourNet

    torch.onnx.export(ColourNet().eval(), (torch.rand(2, 3, 16, 16),), str(workspace / "model.onnx"), dynamo=True)
    _spoil_images(workspace)
    cfg = write_config(workspace, model="model.onnx", stressors="  - {name: autoattack, members: [apgd-ce]}\n")
    result = CliRunner().invoke(main, ["run", str(cfg), "--out", str(workspace / "out"), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "'autoattack' needs gradients" in lines[0] and "hopskipjump" in lines[0]


def test_a_run_records_members_time_and_flags(workspace):  # noqa: F811
    result = _run(
        workspace,
        "  - {name: autoattack, members: [apgd-ce, apgd-dlr], n_iter: 5, epsilons: [0.0, 0.05]}\n"
        "  - {name: apgd, n_iter: 5, epsilons: [0.0, 0.05]}\n",
    )
    assert result.exit_code in (0, 1), result.output
    res = json.loads((workspace / "out" / "results.json").read_text())
    cond = next(c for c in res["conditions"] if c["id"] == "autoattack@0.05")
    details = cond["attack_details"]
    assert [m["member"] for m in details["members"]] == ["apgd-ce", "apgd-dlr"]
    assert details["n"] == cond["metrics"]["n"] == 24 and details["eot_samples"] == 1
    assert details["members"][-1]["robust_accuracy"] == pytest.approx(cond["metrics"]["accuracy"])
    assert all(m["seconds"] >= 0 for m in details["members"])
    checks = {(f["check"], f["attack"]): f["status"] for f in res["adversarial_checks"]}
    assert checks[("adversarial.ensemble_at_least_as_strong", "autoattack")] == "pass"
    assert checks[("adversarial.randomised_model", "autoattack")] == "pass"
    assert ("adversarial.zero_gradients", "apgd") in checks
    html = next((workspace / "out").glob("*.html")).read_text(encoding="utf-8")
    assert "Attack members" in html and "autoattack@0.05" in html
    assert "autoattack did not run apgd-t, fab-t, square" in html
    # the headline is the ensemble's robust accuracy, with apgd beside it; the flags are listed with their meaning
    assert "Headline: robust accuracy under the ensemble autoattack (apgd-ce, apgd-dlr)" in html
    assert "when raised</th>" in html
    assert "the ensemble is not the worst case" in html


def test_fab_t_runs_record_their_details_and_run_in_the_ensemble(workspace):  # noqa: F811
    # the workspace model has 3 classes: APGD-T (>= 4) cannot run, FAB-T can
    result = _run(
        workspace,
        "  - {name: fab_t, n_iter: 5, n_target_classes: 2, epsilons: [0.0, 0.05]}\n"
        "  - {name: autoattack, label: aa_std, members: [apgd-ce, fab-t, square], n_iter: 3,\n"
        "     n_target_classes: 2, n_queries: 10, epsilons: [0.0, 0.05]}\n",
    )
    assert result.exit_code in (0, 1), result.output
    res = json.loads((workspace / "out" / "results.json").read_text())
    fab = next(c for c in res["conditions"] if c["id"] == "fab_t@0.05")
    assert [m["member"] for m in fab["attack_details"]["members"]] == ["fab-t"]
    assert fab["attack_details"]["members"][0]["robust_accuracy"] == pytest.approx(fab["metrics"]["accuracy"])
    std = next(c for c in res["conditions"] if c["id"] == "aa_std@0.05")
    assert [m["member"] for m in std["attack_details"]["members"]] == ["apgd-ce", "fab-t", "square"]
    assert std["attack_details"]["members"][-1]["robust_accuracy"] == pytest.approx(std["metrics"]["accuracy"])
    html = next((workspace / "out").glob("*.html")).read_text(encoding="utf-8")
    assert "aa_std did not run apgd-t</strong>" in html, "fab-t and square ran: only apgd-t is missing"
    assert "left out of its <code>members</code>" in html
