"""Label Studio import files: tasks with the model's prediction as a pre-annotation, and the labelling interface.

The task format is Label Studio's "basic JSON format" for import with
pre-annotations: a list of tasks, each ``{"data": {...}, "predictions":
[{"model_version", "score", "result": [...]}]}``; an image-classification
result is ``{"id", "type": "choices", "from_name": <Choices name>,
"to_name": <Image name>, "value": {"choices": [<class name>]}}``. The
interface is one ``<Image name="image" value="$image"/>`` and a single-choice
``<Choices name="class" toName="image" choice="single">`` over the class names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

__all__ = ["CHOICES_NAME", "IMAGE_NAME", "labeling_config", "task"]

IMAGE_NAME = "image"
CHOICES_NAME = "class"


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
    choices = "\n".join(f"    <Choice value={quoteattr(str(name))}/>" for name in class_names)
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
                        "value": {"choices": [str(row["prediction"])]},
                    }
                ],
            }
        ],
    }
