"""The Model Card Toolkit JSON document (schema v0.0.2, https://github.com/tensorflow/model-card-toolkit).

Performance metrics are slices: every condition (``clean``, ``night@3``, ...) and
every group under every condition (``clean | camera=A``), each with its
accuracy and its 95 % interval, its sample count, and for conditions the
balanced accuracy, macro F1 and ECE (with its interval). The schema types every
value as a string: numbers are written with ``repr`` (the shortest text that
reads back as the same float). Considerations hold the generated sentences
(:mod:`reports.model_card.prose`), unescaped.

An object detector's document (``task: detection``) has the same slices (``clean``,
``night@3 | camera=A``, ``clean | object.size=small``), each with every detection metric of the
registry it holds (``map``, ``map_50``, ..., ``recall``, ``fp_per_image``, with their intervals),
``d_ece`` per condition; the operating point and the COCO IoU range are stated in the output format.
"""

from __future__ import annotations

import json
from typing import Any

from audit.contract.metric_specs import detection_metric_names
from audit.contract.results.detection import DetectionMetrics
from reports.model_card.detection_facts import DetectionFacts
from reports.model_card.detection_prose import sentences_for
from reports.model_card.facts import CardFacts, SliceFacts

__all__ = ["SCHEMA_VERSION", "mct_document", "render_mct"]

SCHEMA_VERSION = "0.0.2"


def _plain(text: str) -> str:
    return str(text)


def _text(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _metric(kind: str, value: float | int, s: SliceFacts, ci: tuple[float, float] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "value": _text(value), "slice": s.name}
    if ci is not None:
        out["confidence_interval"] = {"lower_bound": _text(ci[0]), "upper_bound": _text(ci[1])}
    return out


def _slice_metrics(s: SliceFacts, *, overall: bool) -> list[dict[str, Any]]:
    out = [_metric("sample_count", s.n, s)]
    if s.accuracy is not None:
        out.append(_metric("accuracy", s.accuracy, s, s.accuracy_ci))
    if overall:
        if s.balanced_accuracy is not None:
            out.append(_metric("balanced_accuracy", s.balanced_accuracy, s))
        if s.macro_f1 is not None:
            out.append(_metric("macro_f1", s.macro_f1, s))
        if s.ece is not None:
            out.append(_metric("expected_calibration_error", s.ece, s, s.ece_ci))
    return out


def _detection_slice(name: str, m: DetectionMetrics) -> list[dict[str, Any]]:
    """Every registry detection metric the slice holds (null values left out), with its interval."""
    out = []
    for key in detection_metric_names():
        value = getattr(m, key)
        if value is None:
            continue
        ci = getattr(m, f"{key}_ci", None)
        metric: dict[str, Any] = {"type": key, "value": _text(value), "slice": name}
        if ci is not None:
            metric["confidence_interval"] = {"lower_bound": _text(ci[0]), "upper_bound": _text(ci[1])}
        out.append(metric)
    return out


def _detection_metrics(d: DetectionFacts) -> list[dict[str, Any]]:
    out = []
    for c in d.conditions:
        out += _detection_slice(c.id, c.metrics)
        cal = c.calibration
        if cal is not None and cal.dece is not None:
            metric: dict[str, Any] = {"type": "d_ece", "value": _text(cal.dece), "slice": c.id}
            out.append(metric)
        for g in c.groups:
            out += _detection_slice(f"{c.id} | {g.attribute}={g.value}", g.metrics)
    return out


def _output_format(f: CardFacts) -> str:
    names = list(f.model.class_names)
    d = f.detection
    if d is None:
        return f"scores over {len(names)} classes, in this order: " + ", ".join(names)
    names = list(d.class_names)
    return (
        "per image: boxes (x1, y1, x2, y2 in the original image's pixels), scores and labels over "
        f"{len(names)} classes, in this order: {', '.join(names)}. Operating point: {d.operating_point}; "
        "map is COCO AP averaged over IoU 0.50:0.05:0.95"
    )


def mct_document(f: CardFacts) -> dict[str, Any]:
    """The Model Card Toolkit document as a dict (valid against schema v0.0.2)."""
    prose = sentences_for(f)
    metrics = []
    for c in f.conditions:
        metrics += _slice_metrics(c.overall, overall=True)
        for g in c.groups:
            metrics += _slice_metrics(g, overall=False)
    if f.detection is not None:
        metrics += _detection_metrics(f.detection)
    attributes = "; ".join(
        f"{a}: " + ", ".join(f"{v} {n}" for v, n in counts.items()) for a, counts in f.dataset.attributes.items()
    )
    description = (
        f"Audit set {f.dataset.path}: {f.dataset.num_samples} images evaluated, "
        f"{f.dataset.num_skipped} skipped"
        + (f"; SHA-256 {f.dataset.sha256}" if f.dataset.sha256 else "")
        + (f". Groups: {attributes}" if attributes else "")
        + "."
    )
    if f.detection is not None:
        truth = f.detection.ground_truth
        description += (
            f" Ground truth: {truth.num_objects} objects ({truth.num_crowd} crowd regions) from the "
            f"{truth.format} annotations {truth.path}" + (f", SHA-256 {truth.sha256}" if truth.sha256 else "") + "."
        )
    names = list(f.detection.class_names if f.detection is not None else f.model.class_names)
    ethical = [{"name": s} for s in prose.bias(f, _plain) + prose.risks(f, _plain)]
    return {
        "schema_version": SCHEMA_VERSION,
        "model_details": {
            "name": f.model_name,
            "overview": prose.overview(f, _plain),
            "documentation": " ".join(prose.intended_use(f, _plain) + prose.verification(f, _plain, _plain)),
            "path": str(f.model.path or ""),
        },
        "model_parameters": {
            "data": [{"name": str(f.dataset.path), "description": description}],
            "output_format": _output_format(f),
            "output_format_map": [{"key": str(i), "value": n} for i, n in enumerate(names)],
        },
        "quantitative_analysis": {"performance_metrics": metrics},
        "considerations": {
            "use_cases": [{"description": s} for s in prose.intended_use(f, _plain)],
            "limitations": [{"description": s} for s in prose.limitations(f, _plain)],
            "ethical_considerations": ethical,
        },
    }


def render_mct(f: CardFacts) -> str:
    """The document as indented JSON text (ends with a newline)."""
    return json.dumps(mct_document(f), indent=2, ensure_ascii=False) + "\n"
