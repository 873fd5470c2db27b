"""`cvaudit demo` end to end, and the monotone difficulty of every built-in stressor on the demo model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import stressors
from audit.cli import main
from audit.contract.config import load_config
from audit.evaluation.data import AuditDataset, read_samples
from audit.evaluation.model import load_model
from stressors.base import sample_keys

pytestmark = pytest.mark.slow

OUTPUTS = ("results.json", "predictions.csv", "report.html", "report.pdf", "junit.xml", "attestation.dsse.json")


@pytest.fixture(scope="module")
def demo(demo_run: Path) -> Path:
    return demo_run


def test_demo_writes_every_output(demo):
    for name in OUTPUTS:
        assert (demo / name).is_file(), name
    images = list((demo / "workspace" / "images").glob("*.png"))
    assert len(images) == 600


def test_demo_groups_genuinely_differ_and_governance_fires(demo):
    results = json.loads((demo / "results.json").read_text())
    assert results["policy"]["verdict"] == "pass"
    statuses = {r["status"] for r in results["policy"]["rules"]}
    assert "warn" in statuses
    clean = results["conditions"][0]
    acc = {(g["attribute"], g["value"]): g["metrics"]["accuracy"] for g in clean["groups"]}
    assert acc[("camera", "B")] < acc[("camera", "A")]
    night3 = next(c for c in results["conditions"] if c["id"] == "night@3")
    acc3 = {(g["attribute"], g["value"]): g["metrics"]["accuracy"] for g in night3["groups"]}
    assert acc3[("camera", "A")] - acc3[("camera", "B")] > 0.2
    # the built-in demo policy still catches the deliberately unfair camera gap, by its test
    gap = next(r for r in results["policy"]["rules"] if r["id"] == "night3-camera-gap")
    assert gap["status"] == "warn" and gap["test"] == "detect" and gap["p_value"] < 1e-6
    assert "shown to break max 0.02" in gap["message"]
    assert results["evaluation"]["interval"] == "wilson" and clean["metrics"]["debiased_l2_ce"] is not None
    findings = {f["check"]: f for f in results["governance"]["findings"]}
    for check in ("retention_expired", "consent_withdrawn", "region_not_allowed", "lawful_basis_missing"):
        assert findings[check]["count"] > 0 and findings[check]["status"] == "warn", check
        assert all(s.startswith("digits-") for s in findings[check]["sample_ids"])
    checks = {(c["check"], c["attack"]): c["status"] for c in results["adversarial_checks"]}
    assert checks[("adversarial.large_epsilon_zero_accuracy", "pgd")] == "pass"
    assert checks[("adversarial.iterative_stronger_than_single_step", "pgd")] == "pass"


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="pdfsig (poppler-utils) is not installed")
def test_demo_pdf_signature_is_valid_for_pdfsig(demo):
    out = subprocess.run(["pdfsig", str(demo / "report.pdf")], capture_output=True, text=True).stdout
    assert "Signature is Valid." in out and "Total document signed" in out


def test_demo_verifies(demo):
    result = CliRunner().invoke(main, ["verify", str(demo), "--key", str(demo / "workspace" / "keys")])
    assert result.exit_code == 0, result.output


BUILTIN = [
    ("night", {}),
    ("glare", {}),
    ("blur", {"kind": "defocus"}),
    ("blur", {"kind": "motion"}),
    ("blur", {"kind": "gaussian"}),
    ("occlusion", {}),
    ("gaussian_noise", {}),
    ("defocus_blur", {}),
    ("motion_blur", {}),
    ("contrast", {}),
    ("brightness", {}),
]


@pytest.fixture(scope="module")
def demo_model_and_data(demo):
    cfg = load_config(demo / "workspace" / "config.yaml", device="cpu")
    model, _ = load_model(cfg.model, torch.device("cpu"))
    table = read_samples(cfg.data, class_names=cfg.model.class_names)
    ds = AuditDataset(table, cfg.model)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    return model, images, torch.tensor(table.labels), sample_keys(table.ids)


@pytest.mark.parametrize("name, options", BUILTIN, ids=[f"{n}-{o.get('kind', '')}" for n, o in BUILTIN])
def test_accuracy_does_not_rise_with_severity(demo_model_and_data, name, options):
    model, images, labels, keys = demo_model_and_data
    stressor = stressors.get(name, **options)

    def accuracy(x):
        with torch.no_grad():
            return float((model(x).argmax(1) == labels).float().mean())

    clean = accuracy(images)
    curve = [accuracy(stressor.apply(images, stressor.sample_params(keys, s, seed=0))) for s in stressor.severities]
    tolerance = 0.02  # sampling noise on 600 images
    for before, after in zip([clean, *curve], curve):
        assert after <= before + tolerance, (name, clean, curve)
    assert curve[-1] > 0.1 + 0.03, f"{name} severity 5 is pure noise: {curve}"  # ten classes: chance is 0.1
