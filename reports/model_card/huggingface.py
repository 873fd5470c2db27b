"""The Hugging Face model card: ``README.md`` with YAML front matter and a ``model-index``.

The front matter follows the Hub's model card metadata
(https://github.com/huggingface/hub-docs/blob/main/modelcard.md): ``pipeline_tag``,
``tags``, ``library_name`` (``transformers`` for a Hugging Face folder) and a
``model-index`` with one ``image-classification`` result per evaluated condition
(clean and every stressed one; attack sanity probes are left out). A result's
``dataset.config`` is the condition id, so the results stay distinct; each
metric's ``args`` carries its 95 % interval and ``n``. The body is the Markdown
card (:func:`reports.model_card.markdown.render_body`).

An object detector's card (``task: detection``) has ``pipeline_tag: object-detection`` and one
``object-detection`` result per condition with the COCO metrics (``map``: AP@[.5:.95], ``map_50``,
``map_75``, AP per size and ``ar_100`` where defined) and the operating point's ``precision``,
``recall``, ``f1``, ``fp_per_image`` and ``missed_per_image``, whose names state the score and IoU
thresholds (also in ``args``), and ``d_ece`` with its IoU and bins; ``dataset.args`` holds the
images, objects and the annotations' digest.
"""

from __future__ import annotations

from typing import Any

import yaml

from audit.contract.text import neutralise
from reports.model_card.detection_facts import DetectionConditionFacts, DetectionFacts
from reports.model_card.facts import CardFacts, ConditionFacts
from reports.model_card.markdown import render_body

__all__ = ["model_index", "render_huggingface"]


def _metric(kind: str, name: str, value: float, **args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "value": value, "name": name}
    kept = {k: v for k, v in args.items() if v is not None}
    if kept:
        out["args"] = kept
    return out


def _ci_args(ci: tuple[float, float] | None, level: float) -> dict[str, Any]:
    if ci is None:
        return {}
    return {"confidence_interval": [ci[0], ci[1]], "confidence_level": level}


def _result(f: CardFacts, c: ConditionFacts) -> dict[str, Any]:
    m = c.overall
    level = f.evaluation.confidence_level
    metrics = []
    if m.accuracy is not None:
        metrics.append(_metric("accuracy", f"Accuracy ({c.id})", m.accuracy, n=m.n, **_ci_args(m.accuracy_ci, level)))
    if m.balanced_accuracy is not None:
        metrics.append(_metric("balanced_accuracy", f"Balanced accuracy ({c.id})", m.balanced_accuracy, n=m.n))
    if m.macro_f1 is not None:
        metrics.append(_metric("f1", f"Macro F1 ({c.id})", m.macro_f1, average="macro", n=m.n))
    if m.ece is not None:
        metrics.append(
            _metric(
                "expected_calibration_error",
                f"ECE ({c.id})",
                m.ece,
                bins=15,
                n=m.n,
                **_ci_args(m.ece_ci, level),
            )
        )
    dataset_file = str(f.dataset.path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    args: dict[str, Any] = {"num_samples": f.dataset.num_samples}
    if f.dataset.sha256:
        args["sha256"] = f.dataset.sha256
    if c.stressor is not None:
        args.update({"stressor": c.stressor, "severity": c.severity})
        if c.meaning:
            args["severity_meaning"] = c.meaning
    return {
        "task": {"type": "image-classification", "name": "Image Classification"},
        "dataset": {"type": dataset_file, "name": f"{dataset_file} (cvaudit audit set)", "config": c.id, "args": args},
        "metrics": metrics,
    }


#: A detection condition's COCO metrics: results.json key -> the name's words.
_COCO = {
    "map": "mAP@[.5:.95]",
    "map_50": "AP@0.5",
    "map_75": "AP@0.75",
    "map_small": "AP small",
    "map_medium": "AP medium",
    "map_large": "AP large",
    "ar_100": "AR@100",
}
#: The operating point's metrics: results.json key -> the name's words.
_OPERATING = {
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "fp_per_image": "False positives per image",
    "missed_per_image": "Missed objects per image",
}


def _detection_result(f: CardFacts, d: DetectionFacts, c: DetectionConditionFacts) -> dict[str, Any]:
    m = c.metrics
    level = f.evaluation.confidence_level
    counts = {"n_images": m.n_images, "n_objects": m.n_objects}
    metrics = []
    for key, words in _COCO.items():
        value = getattr(m, key)
        if value is not None:
            ci = getattr(m, f"{key}_ci", None)
            metrics.append(_metric(key, f"{words} ({c.id})", value, **counts, **_ci_args(ci, level)))
    point = {"score_threshold": d.settings.score_threshold, "iou_threshold": d.settings.iou_threshold}
    for key, words in _OPERATING.items():
        value = getattr(m, key)
        if value is not None:
            ci = getattr(m, f"{key}_ci", None)
            name = f"{words} at {d.operating_point} ({c.id})"
            metrics.append(
                _metric(key, name, value, **point, tp=m.tp, fp=m.fp, fn=m.fn, **counts, **_ci_args(ci, level))
            )
    cal = c.calibration
    if cal is not None and cal.dece is not None:
        metrics.append(
            _metric(
                "d_ece",
                f"D-ECE at IoU ≥ {cal.iou_threshold:g} ({c.id})",
                cal.dece,
                iou_threshold=cal.iou_threshold,
                bins=cal.bins,
                detections=cal.detections,
            )
        )
    dataset_file = _file(f.dataset.path)
    args: dict[str, Any] = {"num_images": f.dataset.num_samples, "num_objects": d.ground_truth.num_objects}
    if f.dataset.sha256:
        args["sha256"] = f.dataset.sha256
    args["annotations"] = f"{_file(d.ground_truth.path)} ({d.ground_truth.format})"
    if d.ground_truth.sha256:
        args["annotations_sha256"] = d.ground_truth.sha256
    if c.stressor is not None:
        args.update({"stressor": c.stressor, "severity": c.severity})
        if c.meaning:
            args["severity_meaning"] = c.meaning
    return {
        "task": {"type": "object-detection", "name": "Object Detection"},
        "dataset": {"type": dataset_file, "name": f"{dataset_file} (cvaudit audit set)", "config": c.id, "args": args},
        "metrics": metrics,
    }


def _file(path: str) -> str:
    return str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def model_index(f: CardFacts) -> list[dict[str, Any]]:
    """The ``model-index``: one result per non-probe condition that has metrics."""
    if f.detection is not None:
        d = f.detection
        results = [_detection_result(f, d, c) for c in d.conditions]
    else:
        results = [_result(f, c) for c in f.conditions if not c.probe]
    return [{"name": f.model_name, "results": [r for r in results if r["metrics"]]}]


def _inert(value: Any) -> Any:
    """``value`` with every string's control and bidi characters as visible escapes (YAML would keep a bidi
    override raw)."""
    if isinstance(value, str):
        return neutralise(value, keep_newlines=True)
    if isinstance(value, dict):
        return {_inert(k): _inert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inert(v) for v in value]
    return value


def render_huggingface(f: CardFacts) -> str:
    """README.md text: ``---`` YAML front matter ``---`` then the Markdown card."""
    meta: dict[str, Any] = {}
    if f.model.format == "huggingface":
        meta["library_name"] = "transformers"
    task = "object-detection" if f.task == "detection" else "image-classification"
    meta["pipeline_tag"] = task
    meta["tags"] = [task, "cvaudit", "model-audit"]
    meta["model-index"] = model_index(f)
    front = yaml.safe_dump(_inert(meta), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{render_body(f)}"
