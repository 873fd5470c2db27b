"""`cvaudit demo` end to end, and the monotone difficulty of every built-in stressor on the demo model."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
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


def test_demo_policy_judges_the_ensemble(demo):
    """The demo runs the AutoAttack ensemble; its policy judges its robust accuracy and its flags, and the
    report's adversarial headline is the ensemble's number."""
    results = json.loads((demo / "results.json").read_text())
    acc = {c["id"]: c["metrics"]["accuracy"] for c in results["conditions"]}
    rules = {r["id"]: r for r in results["policy"]["rules"]}
    judged = rules["autoattack-accuracy"]
    assert judged["condition"] == min(("autoattack@0.01", "autoattack@0.03"), key=acc.__getitem__)
    assert judged["observed"] == acc[judged["condition"]] and judged["blocking"] is False
    assert judged["status"] == ("warn" if judged["observed"] < 0.55 else "pass")
    checks = {(c["check"], c["attack"]): c for c in results["adversarial_checks"]}
    ensemble = [c for (check, _), c in checks.items() if check == "adversarial.ensemble_at_least_as_strong"]
    assert ensemble and all(c["status"] == "pass" for c in ensemble)  # against pgd and fgsm at 0.01, 0.03
    assert rules["autoattack-strongest"]["status"] == "pass"
    for check in ("large_epsilon_zero_accuracy", "zero_epsilon_matches_clean", "zero_gradients", "randomised_model"):
        assert checks[(f"adversarial.{check}", "autoattack")]["status"] == "pass", check
    for eps in ("0.01", "0.03"):  # the ensemble is at least as strong as PGD on the same samples
        assert acc[f"autoattack@{eps}"] <= acc[f"pgd@{eps}"]
    html = (demo / "report.html").read_text(encoding="utf-8")
    assert "Headline: robust accuracy under the ensemble autoattack (apgd-ce, apgd-t)" in html


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


# The demo's audit set, built on any CPU: the names, modes, sizes and decoded pixels of its PNG files, in
# name order (audit.demo builds them with exact or float64 arithmetic). Pixels, not file bytes: the PNG
# encoding depends on the zlib that Pillow ships with.
DEMO_IMAGES_SHA256 = "ee8ec744df2fbd9afbb4ebba86764588e3a23bd5569eba203f37b1c3e7d9491f"
PORTABLE_KERNELS = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
}


def _images_digest(folder: Path) -> str:
    from PIL import Image

    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            digest.update(f"{path.name}|{image.mode}|{image.size}|".encode())
            digest.update(image.tobytes())
    return digest.hexdigest()


def test_demo_images_are_the_same_bytes_on_every_cpu(demo):
    assert _images_digest(demo / "workspace" / "images") == DEMO_IMAGES_SHA256


def test_demo_uses_the_shipped_weights(demo):
    from audit.demo import load_demo_weights

    shipped = load_demo_weights()
    scripted = torch.jit.load(str(demo / "workspace" / "model.pt"))
    for name, value in shipped.state_dict().items():
        assert torch.equal(scripted.state_dict()[name], value), name


def test_changed_demo_weights_are_refused(tmp_path, monkeypatch):
    import audit.demo as demo_module
    from audit.contract.errors import CvauditError

    changed = tmp_path / "digits_cnn_seed0.pt"
    blob = bytearray(demo_module.DEMO_WEIGHTS.read_bytes())
    blob[-100] ^= 1
    changed.write_bytes(bytes(blob))
    monkeypatch.setattr(demo_module, "DEMO_WEIGHTS", changed)
    with pytest.raises(CvauditError, match="do not match their recorded SHA-256"):
        demo_module.load_demo_weights()


def test_demo_on_the_portable_cpu_kernels_matches_the_reference(tmp_path):
    """`cvaudit demo` with torch's portable kernels (a stand-in for another CPU) writes the recorded outputs.

    A fresh process: the kernels are chosen when torch is imported. Compared with the tolerances of
    ``scripts/make_output_reference.py`` (the same as ``tests/test_outputs_unchanged.py``).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        from make_output_reference import REFERENCE, attacked_conditions, compare_csv, compare_json, normalise
    finally:
        sys.path.pop(0)
    out = tmp_path / "demo"
    env = {**os.environ, **PORTABLE_KERNELS}
    probe = [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"]
    assert subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip() == "DEFAULT"
    done = subprocess.run(
        [sys.executable, "-m", "audit", "demo", "--out", str(out), "--quiet", "--no-sign"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _images_digest(out / "workspace" / "images") == DEMO_IMAGES_SHA256
    reference = json.loads(gzip.decompress(REFERENCE.read_bytes()))
    attacked = attacked_conditions(reference["results"])
    for name, text in reference["csv"].items():
        assert compare_csv(name, text, (out / name).read_bytes().decode("utf-8"), attacked) == [], name
    new = normalise(json.loads((out / "results.json").read_text(encoding="utf-8")))
    for section in ("conditions", "fairness", "robustness", "breaking_points"):
        assert compare_json(reference["results"][section], new[section], f"$.{section}", attacked) == [], section


def test_demo_training_still_trains_a_usable_model():
    """`cvaudit demo --train` (the training code is the example): a model that learns, worse on camera B."""
    from audit.demo import build_demo_data, train_demo_model

    data = build_demo_data(0)
    model = train_demo_model(data, seed=0, epochs=4)
    x = (torch.from_numpy(data["audit_x"]).permute(0, 3, 1, 2) - 0.5) / 0.25
    with torch.no_grad():
        correct = model(x).argmax(1).numpy() == data["audit_y"]
    on_b = data["audit_camera"] == "B"
    assert correct.mean() > 0.7 and correct[~on_b].mean() > correct[on_b].mean()
