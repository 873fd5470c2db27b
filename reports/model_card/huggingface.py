"""The Hugging Face model card: ``README.md`` with YAML front matter and a ``model-index``.

The front matter follows the Hub's model card metadata
(https://github.com/huggingface/hub-docs/blob/main/modelcard.md): ``pipeline_tag``,
``tags``, ``library_name`` (``transformers`` for a Hugging Face folder) and a
``model-index`` with one ``image-classification`` result per evaluated condition
(clean and every stressed one; attack sanity probes are left out). A result's
``dataset.config`` is the condition id, so the results stay distinct; each
metric's ``args`` carries its 95 % interval and ``n``. The body is the Markdown
card (:func:`reports.model_card.markdown.render_body`).
"""

from __future__ import annotations

from typing import Any

import yaml

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


def model_index(f: CardFacts) -> list[dict[str, Any]]:
    """The ``model-index``: one result per non-probe condition that has metrics."""
    results = [_result(f, c) for c in f.conditions if not c.probe]
    return [{"name": f.model_name, "results": [r for r in results if r["metrics"]]}]


def render_huggingface(f: CardFacts) -> str:
    """README.md text: ``---`` YAML front matter ``---`` then the Markdown card."""
    meta: dict[str, Any] = {}
    if f.model.format == "huggingface":
        meta["library_name"] = "transformers"
    meta["pipeline_tag"] = "image-classification"
    meta["tags"] = ["image-classification", "cvaudit", "model-audit"]
    meta["model-index"] = model_index(f)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{render_body(f)}"
