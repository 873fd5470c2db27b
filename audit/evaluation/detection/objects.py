"""Per-object outcomes of a detection audit: was each ground-truth object still there, and was it found?

One row per (condition, ground-truth object), crowd regions left out (they are neither found nor missed):

- ``present``: the object is in the condition's truth (a geometric stressor did not move it out of view:
  its visible share is at least ``detection.min_visibility``; always true for other stressors);
- ``found``: a detection matched it at the operating point (``detection.score_threshold``,
  ``detection.iou_threshold``, the greedy matching of
  :func:`~audit.evaluation.detection.operating_point.match_images`, on the condition's truth); never true
  for an object not present;
- ``visibility``: the share of the object's (moved) box inside the image, 1 when nothing moved;
- ``occluded_fraction``: the share of the object the stressor covers (``object_measures``, e.g. occlusion of
  ``target: objects``), NaN where the stressor reports none.

:class:`ObjectOutcomes` holds rows in memory (columns as numpy arrays); :class:`ObjectsCsvWriter` streams
them into the run's ``objects.csv`` one condition at a time (memory: one condition's objects), and
:func:`read_objects` reads the file back.

``objects.csv`` columns: ``condition, sample_id, image_row, object_index, class, size``, one
``object.<key>`` per ``detection.object_attributes``, then the box geometry ``area_share, center_x,
center_y``, then ``present, found, visibility, occluded_fraction``. Rows in condition order, then dataset order (``image_row``), then file order
(``object_index``); only the images evaluated (a skipped image has no row). ``class``, ``size`` (COCO's
size class of the annotation's area) and ``object.<key>`` are the object's own, as annotated, under every
condition; so is its geometry, from the annotated box ``[x, y, w, h]`` in an image of ``W x H`` pixels:
``area_share = w h / (W H)`` (the box's share of the image; the box, not COCO's ``area``), ``center_x = (x + w/2) / W``
and ``center_y = (y + h/2) / H`` (the box centre as fractions of the width and height, 0 at the left / top edge). Booleans are ``true``/``false``; numbers the shortest text that reads back as the stored float;
NaN an empty cell; written and read back with cvaudit's one CSV writer and reader
(:mod:`audit.contract.csvfile`: formula starts guarded, control characters escaped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from audit.contract import csvfile
from audit.contract.errors import AuditError
from audit.evaluation.detection.evaluate import ConditionObjects, DetectionData
from audit.evaluation.detection.operating_point import ImageMatch

__all__ = [
    "GEOMETRY_COLUMNS",
    "OBJECTS_CSV",
    "OUTCOME_COLUMNS",
    "ObjectOutcomes",
    "ObjectsCsvWriter",
    "box_geometry",
    "condition_outcomes",
    "objects_columns",
    "read_objects",
]

#: The run's per-object outcomes, every condition.
OBJECTS_CSV = "objects.csv"
#: The box geometry columns (the annotated box, as a share of the image), after the ``object.<key>`` columns.
GEOMETRY_COLUMNS = ("area_share", "center_x", "center_y")
#: The outcome columns, last in objects.csv.
OUTCOME_COLUMNS = ("present", "found", "visibility", "occluded_fraction")
_IDENTITY_COLUMNS = ("condition", "sample_id", "image_row", "object_index", "class", "size")


@dataclass(frozen=True)
class ObjectOutcomes:
    """Per-object outcomes, one row per (condition, non-crowd ground-truth object); columns as arrays.

    The contract (what readers, e.g. per-object breaking points, may rely on):

    - rows are in condition order, then dataset order (``image_row``), then the object's position in its
      image (``object_index``); a (``condition``, ``image_row``, ``object_index``) triple appears once;
    - every condition holds the same objects: the non-crowd objects of the images evaluated, so the rows of
      two conditions line up (:meth:`select` of each gives equal ``image_row`` and ``object_index``);
    - ``found`` implies ``present``; ``present`` is false only under a geometric stressor
      (``visibility < detection.min_visibility``, or the box left the image);
    - ``visibility`` in [0, 1]; ``occluded_fraction`` in [0, 1] or NaN.

    Attributes:
        condition: the condition id per row (str, dtype object).
        image_row: the image's row in ``DetectionData.truth.images`` (int64).
        object_index: the object's position among its image's annotations, file order (int64).
        present: the object is in the condition's truth (bool).
        found: a detection matched it at the operating point (bool).
        visibility: its visible share (float64).
        occluded_fraction: the share the stressor covers, NaN where none is reported (float64).

    Shape:
        every column ``(R,)``.

    Raises:
        AuditError: columns of different lengths.
    """

    condition: np.ndarray
    image_row: np.ndarray
    object_index: np.ndarray
    present: np.ndarray
    found: np.ndarray
    visibility: np.ndarray
    occluded_fraction: np.ndarray

    def __post_init__(self) -> None:
        columns = {
            "condition": np.asarray(self.condition, dtype=object).reshape(-1),
            "image_row": np.asarray(self.image_row, dtype=np.int64).reshape(-1),
            "object_index": np.asarray(self.object_index, dtype=np.int64).reshape(-1),
            "present": np.asarray(self.present, dtype=bool).reshape(-1),
            "found": np.asarray(self.found, dtype=bool).reshape(-1),
            "visibility": np.asarray(self.visibility, dtype=np.float64).reshape(-1),
            "occluded_fraction": np.asarray(self.occluded_fraction, dtype=np.float64).reshape(-1),
        }
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise AuditError(f"object outcomes: columns of different lengths {sorted(lengths)}")
        for name, value in columns.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.image_row)

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition ids, in row order (each once)."""
        return tuple(dict.fromkeys(self.condition.tolist()))

    def select(self, condition: str) -> ObjectOutcomes:
        """The rows of one condition."""
        mask = self.condition == condition
        return ObjectOutcomes(**{name: getattr(self, name)[mask] for name in self.__dataclass_fields__})

    @classmethod
    def concat(cls, parts: Iterable[ObjectOutcomes]) -> ObjectOutcomes:
        """The rows of ``parts``, one after the other."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in cls.__dataclass_fields__})

    @classmethod
    def empty(cls) -> ObjectOutcomes:
        """No row."""
        return cls(*(np.zeros(0, dtype=t) for t in (object, np.int64, np.int64, bool, bool, float, float)))


def condition_outcomes(
    condition: str,
    data: DetectionData,
    positions: Sequence[int] | np.ndarray,
    matches: Sequence[ImageMatch],
    objects: Mapping[int, ConditionObjects] | None,
) -> ObjectOutcomes:
    """One condition's rows, from its operating-point matches on its own truth.

    Args:
        condition: the condition id.
        data: the audit's data.
        positions: the image rows evaluated, in dataset order.
        matches: per evaluated image (same order), its :class:`ImageMatch` against the condition's truth
            (the objects ``objects[image_id].kept`` selects, in file order).
        objects: image id -> its :class:`ConditionObjects`; None when every object was kept as annotated.

    Raises:
        AuditError: a match whose objects do not line up with the kept objects (a bug, named by image).
    """
    cols: dict[str, list[Any]] = {name: [] for name in ObjectOutcomes.__dataclass_fields__}
    for r, match in zip(positions, matches):
        r = int(r)
        truth = data.truths[r]
        n = len(truth.category_ids)
        state = objects.get(truth.image_id) if objects is not None else None
        if state is None:
            state = ConditionObjects.unchanged(truth.image_id, n)
        kept_index = np.flatnonzero(state.kept)
        if len(kept_index) != len(match.matched_detection) or int(match.image_id) != int(truth.image_id):
            raise AuditError(
                f"object outcomes of image {truth.image_id} under {condition}: {len(match.matched_detection)} "
                f"matched objects for {len(kept_index)} kept"
            )
        found = np.zeros(n, dtype=bool)
        found[kept_index] = match.matched_detection >= 0
        rows = np.flatnonzero(~truth.iscrowd)
        cols["condition"] += [condition] * len(rows)
        cols["image_row"].append(np.full(len(rows), r, dtype=np.int64))
        cols["object_index"].append(rows)
        cols["present"].append(state.kept[rows])
        cols["found"].append(found[rows])
        cols["visibility"].append(np.asarray(state.visibility, dtype=np.float64)[rows])
        cols["occluded_fraction"].append(np.asarray(state.occluded_fraction, dtype=np.float64)[rows])
    if not cols["image_row"]:
        return ObjectOutcomes.empty()
    return ObjectOutcomes(
        condition=np.asarray(cols["condition"], dtype=object),
        **{name: np.concatenate(cols[name]) for name in ObjectOutcomes.__dataclass_fields__ if name != "condition"},
    )


def objects_columns(data: DetectionData) -> tuple[str, ...]:
    """objects.csv's header for ``data`` (the module docstring)."""
    named = tuple(a for a in data.object_attributes if a not in ("object.size", "object.class"))
    return (*_IDENTITY_COLUMNS, *named, *GEOMETRY_COLUMNS, *OUTCOME_COLUMNS)


def _number(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def box_geometry(box: Sequence[float], width: float, height: float) -> tuple[float, float, float]:
    """``(area_share, center_x, center_y)`` of a COCO box ``[x, y, w, h]`` in a ``width x height`` image (module
    docstring)."""
    x, y, w, h = (float(v) for v in box)
    return w * h / (float(width) * float(height)), (x + w / 2.0) / float(width), (y + h / 2.0) / float(height)


class ObjectsCsvWriter:
    """Streams :class:`ObjectOutcomes` into objects.csv, one condition after another (see the module docstring).

    Args:
        out: a text file opened with ``newline=""``; the header is written at once.
        data: the audit's data (sample ids, classes, sizes and object attributes of the rows).
    """

    def __init__(self, out: TextIO, data: DetectionData) -> None:
        self._writer = csvfile.writer(out)
        self._data = data
        self._named = [a for a in data.object_attributes if a not in ("object.size", "object.class")]
        self._writer.writerow(objects_columns(data))

    def write(self, outcomes: ObjectOutcomes) -> None:
        """Append ``outcomes``' rows."""
        data, groups = self._data, self._data.object_groups
        images = data.truth.images
        for cond, r, k, present, found, vis, occ in zip(
            outcomes.condition.tolist(),
            outcomes.image_row.tolist(),
            outcomes.object_index.tolist(),
            outcomes.present.tolist(),
            outcomes.found.tolist(),
            outcomes.visibility.tolist(),
            outcomes.occluded_fraction.tolist(),
        ):
            image_id = images[r].image_id
            truth = data.truths[r]
            geometry = box_geometry(truth.boxes[k], truth.width, truth.height)
            self._writer.writerow(
                [
                    cond,
                    data.sample_ids[r],
                    r,
                    k,
                    groups["object.class"][image_id][k],
                    groups["object.size"][image_id][k],
                    *(groups[a][image_id][k] for a in self._named),
                    *(_number(v) for v in geometry),
                    "true" if present else "false",
                    "true" if found else "false",
                    _number(vis),
                    _number(occ),
                ]
            )


def read_objects(path: Path, *, conditions: Iterable[str] | None = None) -> ObjectOutcomes:
    """objects.csv (as :class:`ObjectsCsvWriter` writes it) back as :class:`ObjectOutcomes`.

    Args:
        path: the file (a run folder's ``objects.csv``).
        conditions: keep only these condition ids (read row by row: memory holds the rows kept).

    Raises:
        AuditError: one line naming the file and the line: a missing column, a bad boolean or number.
    """
    wanted = None if conditions is None else set(conditions)
    cols: dict[str, list[Any]] = {name: [] for name in ObjectOutcomes.__dataclass_fields__}
    booleans = {"true": True, "false": False}
    try:
        reader = csvfile.DictReader(csvfile.lines(path, what="objects.csv", error=AuditError))
        missing = [
            c
            for c in ("condition", "image_row", "object_index", *OUTCOME_COLUMNS)
            if c not in (reader.fieldnames or ())
        ]
        if missing:
            raise AuditError(f"{path}: not an objects.csv (missing column {missing[0]!r})")
        for line, row in enumerate(reader, start=2):
            cond = row["condition"]
            if wanted is not None and cond not in wanted:
                continue
            try:
                cols["condition"].append(cond)
                cols["image_row"].append(int(row["image_row"]))
                cols["object_index"].append(int(row["object_index"]))
                cols["present"].append(booleans[row["present"]])
                cols["found"].append(booleans[row["found"]])
                cols["visibility"].append(float(row["visibility"]))
                occ = row["occluded_fraction"]
                cols["occluded_fraction"].append(float(occ) if occ else math.nan)
            except (KeyError, TypeError, ValueError) as err:
                raise AuditError(f"{path}, line {line}: bad value ({type(err).__name__}: {err})") from None
    except OSError as err:
        raise AuditError(f"{path}: cannot read ({err.strerror or err})") from None
    if not cols["condition"]:
        return ObjectOutcomes.empty()
    return ObjectOutcomes(**{name: np.asarray(v) for name, v in cols.items()})
