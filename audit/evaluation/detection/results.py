"""A detection audit's whole results (:class:`~audit.contract.results.Results` with ``task: detection``) and
the example images the report draws.

The identity keys (tool, model, dataset, evaluation settings, stressors, provenance) are built as for a
classifier; the measurements are :func:`~audit.evaluation.detection.summary.summarize_detection`'s
``detection`` section. Examples (:func:`detection_examples`) are the images with the most errors at the
operating point under clean and under the condition of lowest recall, shown as the detector saw them (the
stressed input, letterbox padding cropped away) with their ground truth and kept detections.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from audit.contract.config import AuditConfig
from audit.contract.digest import sha256_file
from audit.contract.intervals import CONFIDENCE_LEVEL
from audit.contract.results import (
    SCHEMA_VERSION,
    DatasetInfo,
    DetectionBox,
    DetectionExample,
    DetectionResults,
    EvaluationSettings,
    Governance,
    ModelInfo,
    Provenance,
    ReportSettings,
    Results,
    StressorInfo,
    Tool,
)
from audit.contract.version import tool_version
from audit.evaluation.conditions import Condition, stressor_descriptions
from audit.evaluation.data import open_image
from audit.evaluation.detection.coco_metrics import ImageDetections
from audit.evaluation.detection.evaluate import (
    ConditionObjects,
    DetectionData,
    DetectionPass,
    check_box_support,
    condition_truth,
    stress_detection_batch,
)
from audit.evaluation.detection.letterbox import apply_resize, plan_resize
from audit.evaluation.detection.operating_point import match_image
from audit.evaluation.evaluate import png_data_uri
from audit.evaluation.results import package_versions

__all__ = ["DetectionRunInfo", "detection_examples", "detection_results"]

#: The longer side of an example image in the report, in pixels.
EXAMPLE_SIZE = 320
#: Examples per condition, and conditions with examples (clean and the lowest recall).
EXAMPLES_PER_CONDITION = 3


@dataclass(frozen=True)
class DetectionRunInfo:
    """What the runner knows of a detection run besides its measurements."""

    config_path: Path | None
    model_info: dict[str, Any]
    governance: Governance
    started: dt.datetime
    device: str
    threads: int
    num_workers: int
    allocator: str
    world_size: int = 1


def detection_results(
    *,
    cfg: AuditConfig,
    data: DetectionData,
    conditions: Sequence[Condition],
    passed: DetectionPass,
    section: DetectionResults,
    info: DetectionRunInfo,
) -> Results:
    """The run's :class:`Results` (``task: detection``), without the policy's verdict.

    Raises:
        pydantic.ValidationError: a part does not match the contract (a bug, not bad input).
    """
    n_total = len(data)
    skipped = passed.skipped
    evaluated = sorted(passed.evaluated)
    attributes: dict[str, dict[str, int]] = {}
    for attribute in data.attributes:
        values = data.image_values(attribute)
        counts: dict[str, int] = {}
        for r in evaluated:
            counts[values[r]] = counts.get(values[r], 0) + 1
        attributes[attribute] = dict(sorted(counts.items()))
    model_info, config_path = info.model_info, info.config_path
    return Results(
        schema_version=SCHEMA_VERSION,
        tool=Tool(name="cvaudit", version=tool_version()),
        seed=cfg.seed,
        task="detection",
        model=ModelInfo.model_validate(
            {
                "path": model_info["path"],
                "sha256": model_info["sha256"],
                "format": model_info["format"],
                "num_classes": len(section.class_names),
                "class_names": section.class_names,
                **({"files": model_info["files"]} if model_info.get("files") else {}),
                "code_executed": model_info.get("code_executed"),
            }
        ),
        dataset=DatasetInfo(
            path=str(data.manifest),
            sha256=sha256_file(data.manifest),
            num_samples=len(evaluated),
            num_skipped=len(skipped),
            skipped_share=len(skipped) / n_total if n_total else 0.0,
            skipped=[{"sample": s["sample"], "reason": s["reason"]} for s in skipped],  # type: ignore[misc]
            attributes=attributes,
            intersections=[],
        ),
        evaluation=EvaluationSettings(
            min_group_size=cfg.evaluation.min_group_size,
            n_bootstrap=cfg.evaluation.n_bootstrap,
            confidence_level=CONFIDENCE_LEVEL,
            ece_bins=cfg.detection.calibration_bins if cfg.detection else 10,
            attack_samples=None,
            top_k=None,
        ),
        stressors=[StressorInfo.model_validate(s) for s in stressor_descriptions(list(conditions))],
        detection=section,
        governance=info.governance,
        provenance=Provenance.model_validate(
            {
                "seed": cfg.seed,
                "config": str(config_path) if config_path else None,
                "config_sha256": sha256_file(config_path) if config_path and Path(config_path).is_file() else None,
                "started": info.started.isoformat(timespec="seconds"),
                "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "device": info.device,
                "world_size": info.world_size,
                "versions": package_versions(("faster-coco-eval",)),
                "threads": info.threads,
                "num_workers": info.num_workers,
                "allocator": info.allocator,
                "exif": cfg.data.exif,
                "alpha": cfg.data.alpha,
            }
        ),
        report=ReportSettings(language=cfg.report.language),
    )


def _worst_images(
    dets_of_images: list[ImageDetections],
    data: DetectionData,
    cfg: AuditConfig,
    k: int,
    objects: dict[int, ConditionObjects] | None = None,
) -> list[tuple[int, ImageDetections]]:
    """The ``k`` images with the most errors (missed + false positives) at the operating point, ties by sample id
    (against the condition's own truth: ``objects``, :meth:`DetectionPass.condition_objects`)."""
    det = cfg.detection
    assert det is not None
    row_of = {image.image_id: r for r, image in enumerate(data.truth.images)}
    scored = []
    for dets in dets_of_images:
        r = row_of[int(dets.image_id)]
        truth = condition_truth(data.truths[r], objects.get(int(dets.image_id)) if objects else None)
        m = match_image(truth, dets, score_threshold=det.score_threshold, iou_threshold=det.iou_threshold)
        errors = int(m.missed.sum()) + int((m.detection_outcome == 0).sum())
        if errors:
            scored.append((-errors, data.sample_ids[r], r, dets))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [(r, dets) for _, _, r, dets in scored[:k]]


def detection_examples(
    *,
    data: DetectionData,
    conditions: Sequence[Condition],
    passed: DetectionPass,
    section: DetectionResults,
    cfg: AuditConfig,
    device: torch.device,
    mode: str,
    decoding: dict[str, Any],
) -> list[DetectionExample]:
    """The report's example images (see the module docstring); none when ``mode`` is ``none``.

    Each image is decoded, resized and stressed as in the pass (stressor randomness is keyed by sample id),
    and the boxes drawn are the pass's own spilled detections (not a second forward pass): what is shown
    is what was scored.
    """
    det = cfg.detection
    if mode == "none" or det is None:
        return []
    by_id = {c.id: c for c in conditions}
    # the worst image-stressor condition: an attack's images would need the attack rerun (not drawn here)
    recalls = [
        (c.metrics.recall if c.metrics.recall is not None else 2.0, c.id)
        for c in section.conditions[1:]
        if not by_id[c.id].model_aware
    ]
    chosen = ["clean"] + ([min(recalls)[1]] if recalls else [])
    names = dict(zip(data.truth.category_ids, data.truth.class_names))
    out: list[DetectionExample] = []
    modes = check_box_support(conditions)
    for cid in chosen:
        cond = by_id[cid]
        objects = passed.condition_objects(cid)
        worst = _worst_images(passed.detections(cid, data), data, cfg, EXAMPLES_PER_CONDITION, objects)
        for r, dets in worst:
            image = data.truth.images[r]
            arr = open_image(image.path, **_open_args(decoding, cfg))
            t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float()
            if t.shape[0] == 1 and cfg.model.channels == 3:
                t = t.expand(3, -1, -1)
            params = plan_resize([(image.height, image.width)], input_size=tuple(cfg.model.input_size), mode=det.resize)
            x = apply_resize([t], params).to(device)
            keys = torch.tensor([int(data.keys[r])], dtype=torch.int64, device=device)
            x, _ = stress_detection_batch(
                cond,
                modes[cid],
                x,
                keys,
                data=data,
                rows=[r],
                params=params,
                seed=cfg.seed,
                min_visibility=det.min_visibility,
            )
            p = params[0]
            top, left = int(p.pad_top), int(p.pad_left)
            content = x[0, :, top : top + int(p.content_height), left : left + int(p.content_width)]
            scale = EXAMPLE_SIZE / max(image.width, image.height)
            size = (max(1, round(image.height * scale)), max(1, round(image.width * scale)))
            shown = F.interpolate(content[None].float().cpu(), size=size, mode="bilinear", antialias=True)[0]
            sx, sy = size[1] / image.width, size[0] / image.height
            own = condition_truth(data.truths[r], objects.get(image.image_id) if objects else None)
            match = match_image(own, dets, score_threshold=det.score_threshold, iou_threshold=det.iou_threshold)
            if own is data.truths[r]:  # the annotated boxes, as written
                drawn = [(list(o.box), o.category_id, o.iscrowd) for o in image.objects]
            else:
                drawn = [
                    ([x0, y0, x0 + w, y0 + h], int(cat), bool(crowd))
                    for (x0, y0, w, h), cat, crowd in zip(
                        own.boxes.tolist(), own.category_ids.tolist(), own.iscrowd.tolist()
                    )
                ]
            truth = [
                DetectionBox(
                    box=_scaled(box, sx, sy),
                    label=names[cat],
                    outcome="crowd" if crowd else ("matched" if match.matched_detection[k] >= 0 else "missed"),
                )
                for k, (box, cat, crowd) in enumerate(drawn)
            ]
            shown_dets = [
                DetectionBox(
                    box=_scaled(dets.boxes[k].tolist(), sx, sy),
                    label=names[int(dets.category_ids[k])],
                    score=round(float(dets.scores[k]), 4),
                    outcome="tp" if match.detection_outcome[k] == 1 else "fp",
                )
                for k in range(len(dets.scores))
                if match.detection_outcome[k] in (0, 1)
            ]
            out.append(
                DetectionExample(
                    condition=cid,
                    sample_id=data.sample_ids[r],
                    reason=f"most errors at the operating point under {cid}",
                    image=png_data_uri(shown, mode),
                    width=size[1],
                    height=size[0],
                    truth=truth,
                    detections=shown_dets,
                )
            )
    return out


def _scaled(box: Sequence[float], sx: float, sy: float) -> list[float]:
    """A box in original pixels -> the example image's pixels (rounded to 0.01 px)."""
    return [round(box[0] * sx, 2), round(box[1] * sy, 2), round(box[2] * sx, 2), round(box[3] * sy, 2)]


def _open_args(decoding: dict[str, Any], cfg: AuditConfig) -> dict[str, Any]:
    return {
        "max_pixels": int(decoding.get("max_pixels", cfg.data.max_image_pixels)),
        "exif": decoding.get("exif") or "ignore",
        "alpha": decoding.get("alpha") or "composite_white",
        "formats": tuple(decoding.get("formats") or cfg.data.image_formats),
    }
