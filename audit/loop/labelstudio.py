"""Label Studio import files: tasks with the model's prediction as a pre-annotation, and the labelling interface.

The task format is Label Studio's "basic JSON format" for import with
pre-annotations: a list of tasks, each ``{"data": {...}, "predictions":
[{"model_version", "score", "result": [...]}]}``; an image-classification
result is ``{"id", "type": "choices", "from_name": <Choices name>,
"to_name": <Image name>, "value": {"choices": [<class name>]}}``. Class names are written as
:func:`label_value` spells them (characters XML forbids escaped) in the interface and the results alike. The
interface is one ``<Image name="image" value="$image"/>`` and a single-choice
``<Choices name="class" toName="image" choice="single">`` over the class names.

Detectors: the interface is the ``Image`` and ``<RectangleLabels name="label" toName="image">``
over the class names; a box is a ``rectanglelabels`` result whose ``value`` holds ``x``, ``y``,
``width``, ``height`` in **percent of the original image's width and height** (top-left corner;
Label Studio's own convention), ``rotation`` 0 and ``rectanglelabels: [<class name>]``, next to
``original_width`` and ``original_height`` in pixels (:func:`percent_box`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from audit.contract.text import xml_text

__all__ = [
    "CHOICES_NAME",
    "IMAGE_NAME",
    "RECTANGLES_NAME",
    "detection_task",
    "label_value",
    "labeling_config",
    "percent_box",
    "rectangle",
    "rectangle_labeling_config",
    "task",
]

IMAGE_NAME = "image"
CHOICES_NAME = "class"
RECTANGLES_NAME = "label"


def label_value(name: object) -> str:
    """A class name as the labelling config and the tasks' results both spell it: characters XML 1.0 forbids
    (and control or bidi characters) as visible escapes (:func:`audit.contract.text.xml_text`), so the config
    is well-formed and a pre-selected answer names a choice of the config.

    >>> label_value("cat\\x07")
    'cat\\\\x07'
    """
    return xml_text(name)


def labeling_config(class_names: Sequence[str]) -> str:
    """The labelling interface (XML) for single-choice classification over ``class_names``.

    >>> print(labeling_config(["cat", 'a "dog"']))  # doctest: +NORMALIZE_WHITESPACE
    <View>
      <Image name="image" value="$image"/>
      <Choices name="class" toName="image" choice="single" showInLine="true">
        <Choice value="cat"/>
        <Choice value='a "dog"'/>
      </Choices>
    </View>
    """
    choices = "\n".join(f"    <Choice value={quoteattr(label_value(name))}/>" for name in class_names)
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}"/>\n'
        f'  <Choices name="{CHOICES_NAME}" toName="{IMAGE_NAME}" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def task(row: dict[str, Any], *, image_url: str, model_version: str, attributes: Sequence[str]) -> dict[str, Any]:
    """One task: the image, what the audit knows about the sample, and the model's answer pre-selected."""
    data = {
        IMAGE_NAME: image_url,
        "sample_id": row["sample_id"],
        "recorded_label": str(row["label"]),
        "model_prediction": str(row["prediction"]),
        "reasons": row["reasons"],
        "rationale": row["rationale"],
        "priority": row["priority"],
        "stratum": row["stratum"],
        **{f"attr_{a}": row.get(a, "") for a in attributes},
    }
    return {
        "data": data,
        "predictions": [
            {
                "model_version": model_version,
                "score": float(row["confidence"]),
                "result": [
                    {
                        "id": f"pred-{row['rank']}",
                        "type": "choices",
                        "from_name": CHOICES_NAME,
                        "to_name": IMAGE_NAME,
                        "value": {"choices": [label_value(row["prediction"])]},
                    }
                ],
            }
        ],
    }


def rectangle_labeling_config(class_names: Sequence[str]) -> str:
    """The labelling interface (XML) for boxes over ``class_names``.

    >>> print(rectangle_labeling_config(["square", "a <disc>"]))  # doctest: +NORMALIZE_WHITESPACE
    <View>
      <Image name="image" value="$image"/>
      <RectangleLabels name="label" toName="image">
        <Label value="square"/>
        <Label value="a &lt;disc&gt;"/>
      </RectangleLabels>
    </View>
    """
    labels = "\n".join(f"    <Label value={quoteattr(label_value(name))}/>" for name in class_names)
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}"/>\n'
        f'  <RectangleLabels name="{RECTANGLES_NAME}" toName="{IMAGE_NAME}">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def percent_box(box: Sequence[float], width: int, height: int) -> dict[str, float]:
    """An xyxy box in pixels of a ``width`` x ``height`` image as Label Studio's percent rectangle.

    >>> percent_box((10.0, 20.0, 50.0, 60.0), 200, 100)
    {'x': 5.0, 'y': 20.0, 'width': 20.0, 'height': 40.0, 'rotation': 0}
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    # keyword form: Label Studio's key ``rotation`` is not the camera stressor of that name
    return dict(
        x=100.0 * x1 / width,
        y=100.0 * y1 / height,
        width=100.0 * (x2 - x1) / width,
        height=100.0 * (y2 - y1) / height,
        rotation=0,
    )


def rectangle(
    result_id: str, box: Sequence[float], label: str, width: int, height: int, score: float | None = None
) -> dict[str, Any]:
    """One ``rectanglelabels`` result (a box in xyxy pixels of the original image; ``score`` for a detection)."""
    out: dict[str, Any] = {
        "id": result_id,
        "type": "rectanglelabels",
        "from_name": RECTANGLES_NAME,
        "to_name": IMAGE_NAME,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {**percent_box(box, width, height), "rectanglelabels": [label_value(label)]},
    }
    if score is not None:
        out["score"] = float(score)
    return out


def detection_task(
    row: dict[str, Any],
    *,
    image_url: str,
    model_version: str,
    truth_version: str,
    attributes: Sequence[str],
    truth: list[dict[str, Any]],
    detections: list[dict[str, Any]],
    score: float,
) -> dict[str, Any]:
    """One detection task: the image, what the audit knows about it, and two pre-annotations:
    the ground truth (``truth_version``) and the model's detections (``model_version``, each box with its score).
    ``truth`` and ``detections`` are :func:`rectangle` results."""
    data = {
        IMAGE_NAME: image_url,
        "sample_id": row["sample_id"],
        "reasons": row["reasons"],
        "rationale": row["rationale"],
        "priority": row["priority"],
        "stratum": row["stratum"],
        "objects": row["objects"],
        "missed_on_clean": row["missed_on_clean"],
        "false_positives_on_clean": row["false_positives_on_clean"],
        **{f"attr_{a}": row.get(a, "") for a in attributes},
    }
    return {
        "data": data,
        "predictions": [
            {"model_version": truth_version, "score": 1.0, "result": truth},
            {"model_version": model_version, "score": float(score), "result": detections},
        ],
    }
