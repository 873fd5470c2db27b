"""Config parsing: the documented keys, unknown keys rejected, paths relative to the file."""

from pathlib import Path

import pytest

from audit.contract.config import load_config
from audit.contract.errors import AuditError, CvauditError

BASE = """
seed: 3
model:
  path: model.pt
  input_size: [32, 32]
data:
  manifest: data/manifest.csv
  attributes: [camera]
stressors:
  - {name: night, severities: [1, 2]}
  - {name: pgd, epsilons: [0.01], steps: 20}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_paths_are_relative_to_the_config_file(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.model.path == tmp_path.resolve() / "model.pt"
    assert cfg.data.manifest == tmp_path.resolve() / "data" / "manifest.csv"
    assert cfg.seed == 3 and cfg.device == "auto" and cfg.batch_size == 64


def test_stressor_options_pass_through(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.stressors[0].options == {"severities": [1, 2]}
    assert cfg.stressors[1].options == {"epsilons": [0.01], "steps": 20}


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            BASE + "colour: red\n",
            "config.yaml: colour: unknown key (valid: task, seed, device, batch_size, threads, allocator, model, data,",
        ),
        (
            BASE.replace("  attributes: [camera]", "  attributes: [camera]\n  pth_column: file"),
            "config.yaml: data.pth_column: unknown key (valid: manifest, images, npz, attributes, intersections,",
        ),
        (
            BASE + "tracking:\n  mlflow: {experiment: e, uri: x}\n",
            "config.yaml: tracking.mlflow.uri: unknown key (valid: experiment, run_name, tracking_uri, timeout_s, max_retries)",
        ),
        (
            BASE + "report: {formts: [html]}\n",
            "config.yaml: report.formts: unknown key (valid: formats, images, sign_key, language)",
        ),
        # a misspelt required section is reported as the unknown key, not as the missing one
        (BASE.replace("model:", "modle:"), "config.yaml: modle: unknown key (valid: "),
    ],
)
def test_unknown_key_lists_the_valid_keys_of_its_level(tmp_path, text, expected):
    with pytest.raises(AuditError) as info:
        load_config(write(tmp_path, text))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_valid_keys_follow_the_models():
    from audit.contract.config import AuditConfig, DataConfig, EvaluationConfig
    from audit.contract.keys import valid_keys

    assert valid_keys(AuditConfig, ["data"]) == list(DataConfig.model_fields)
    assert valid_keys(AuditConfig, ["evaluation"]) == list(EvaluationConfig.model_fields)
    assert valid_keys(AuditConfig, ["stressors", 0]) is None  # a stressor's options are open
    assert valid_keys(AuditConfig, ["nothing"]) is None


def test_overrides_win(tmp_path):
    cfg = load_config(write(tmp_path, BASE), seed=9, batch_size=8, device="cpu")
    assert (cfg.seed, cfg.batch_size, cfg.device) == (9, 8, "cpu")


@pytest.mark.parametrize(
    "text, expected",
    [
        (BASE + "colour: red\n", "colour: unknown key"),
        (BASE.replace("  input_size: [32, 32]", "  input_size: [32, 32]\n  mena: [0.5]"), "model.mena: unknown key"),
        (BASE.replace("data:\n  manifest: data/manifest.csv\n", "data:\n"), "data"),
        ("seed: [1\n", "malformed YAML"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        (BASE.replace("seed: 3", "seed: three"), "seed"),
        (BASE + "device: tpu\n", "device"),
        (BASE + "device: cuda:x\n", "device"),
        (BASE.replace("input_size: [32, 32]", "input_size: [0, 32]"), "model.input_size.0"),
        (BASE.replace("input_size: [32, 32]", "input_size: [32, 32]\n  mean: [.nan, 0, 0]"), "finite"),
        (BASE.replace("input_size: [32, 32]", "input_size: [32, 32]\n  class_names: [a, a]"), "a name twice"),
        (BASE.replace("attributes: [camera]", "attributes: [camera, camera]"), "attribute twice"),
        (BASE.replace("attributes: [camera]", "attributes: [label]"), "predictions.csv column"),
        (
            BASE.replace("attributes: [camera]", "attributes: [camera, ink]\n  intersections: [[camera, camera]]"),
            "names an attribute twice",
        ),
        (
            BASE.replace(
                "attributes: [camera]", "attributes: [camera, ink]\n  intersections: [[camera, ink], [ink, camera]]"
            ),
            "listed twice",
        ),
        (BASE.replace("{name: night, severities: [1, 2]}", "{name: night, label: 'a b@c'}"), "stressors.0.label"),
        (BASE.replace("  input_size: [32, 32]", "  input_size: [32, 32]\n  channels: 1"), "need 1 or 1 values"),
        (
            BASE.replace("attributes: [camera]", "attributes: [camera]\n  intersections: [[camera, ink]]"),
            "not listed in data.attributes",
        ),
        (
            BASE.replace("  path: model.pt", "  factory: pkg.mod:make\n  format: huggingface"),
            "model.format huggingface needs model.path",
        ),
        (BASE.replace("  path: model.pt", "  path: model.pt\n  format: onnx"), "model.format"),
        (
            BASE.replace("  input_size: [32, 32]", "  input_size: [32, 32]\n  interpolation: lanczos"),
            "needs model.resize_backend: pil",
        ),
        (BASE.replace("  input_size: [32, 32]", "  input_size: [32, 32]\n  resize: [0, 40]"), "model.resize"),
        (BASE + "tracking:\n  mlflow:\n    run_name: x\n", "tracking.mlflow.experiment: required key is missing"),
        (BASE + "tracking:\n  mlflow:\n    experiment: ''\n", "tracking.mlflow.experiment"),
        (BASE + "evaluation:\n  interval: wald\n", "evaluation.interval"),
        (BASE + "evaluation:\n  interval: bootstrap\n  n_bootstrap: 0\n", "needs evaluation.n_bootstrap > 0"),
        (BASE + "evaluation:\n  early_stop: sometimes\n", "evaluation.early_stop"),
        (BASE + "evaluation:\n  early_stop_min_samples: 0\n", "evaluation.early_stop_min_samples"),
    ],
)
def test_bad_configs_name_the_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(CvauditError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_missing_config_file(tmp_path):
    with pytest.raises(AuditError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_attack_samples_override_is_validated(tmp_path):
    assert load_config(write(tmp_path, BASE), attack_samples=5).evaluation.attack_samples == 5
    with pytest.raises(AuditError, match="evaluation.attack_samples"):
        load_config(write(tmp_path, BASE), attack_samples=0)


@pytest.mark.parametrize("tag", ["en", "en-GB", "en-US", "en-Latn-IE"])
def test_report_language_takes_english_tags(tmp_path, tag):
    assert load_config(write(tmp_path, BASE)).report.language == "en"
    assert load_config(write(tmp_path, BASE + f"report:\n  language: {tag}\n")).report.language == tag


@pytest.mark.parametrize("tag", ["de", "fr-FR", "en_GB", "english", "", "en-"])
def test_report_language_other_than_english_is_refused(tmp_path, tag):
    path = write(tmp_path, BASE + f"report:\n  language: '{tag}'\n")
    with pytest.raises(AuditError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "report.language" in message and "English only" in message
    assert "\n" not in message


def test_preprocessing_and_tracking_keys(tmp_path):
    text = BASE.replace(
        "  input_size: [32, 32]",
        "  input_size: [32, 32]\n  resize: 36\n  interpolation: lanczos\n  resize_backend: pil",
    )
    text += "tracking:\n  mlflow: {experiment: audits, run_name: nightly, tracking_uri: 'sqlite:///m.db'}\n"
    cfg = load_config(write(tmp_path, text))
    assert (cfg.model.resize, cfg.model.interpolation, cfg.model.resize_backend) == (36, "lanczos", "pil")
    assert cfg.tracking.mlflow.experiment == "audits" and cfg.tracking.mlflow.tracking_uri == "sqlite:///m.db"
    pair = load_config(write(tmp_path, BASE.replace("  input_size: [32, 32]", "  resize: [40, 36]")))
    assert pair.model.resize == (40, 36) and pair.model.format is None and pair.tracking.mlflow is None


def test_statistics_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.evaluation.interval == "wilson" and cfg.evaluation.n_bootstrap == 1000
    assert cfg.evaluation.early_stop is False and cfg.evaluation.early_stop_min_samples == 200
    cfg = load_config(write(tmp_path, BASE + "evaluation:\n  interval: clopper-pearson\n  early_stop: true\n"))
    assert cfg.evaluation.interval == "clopper-pearson" and cfg.evaluation.early_stop is True
