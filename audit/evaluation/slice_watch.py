"""Watched slices (config ``slices.watch``): each measured on the clean condition, against the rest of the data.

Reads the run's own per-sample files, never the images: the clean rows of ``predictions.csv`` (label,
prediction, p_true, prob_sq_sum and the ``data.attributes``) joined by sample id with ``image_properties.csv``.
Per sample: correct (prediction == label), Brier (``prob_sq_sum - 2 p_true + 1``), NLL
(``-log max(p_true, eps)``, eps the float64 machine epsilon as scikit-learn's ``log_loss``). A slice's metric is
their mean over its samples; the interval of accuracy is Wilson's, of Brier and NLL the normal interval of the
mean (95 %). ``gap``: rest - slice for accuracy, slice - rest for Brier and NLL (positive: the slice is worse).

A detection run (:func:`measure_watched_detection`): the units are the ground-truth objects present on the clean
images, read by :func:`audit.evaluation.slices.run_folder.read_detection_table` (the table ``cvaudit slices``
searches); the metric is recall, its interval the cluster-robust (by image) interval of the search's slices.csv
(:func:`audit.evaluation.slices.search.cluster_value`); ``gap.recall`` = rest - slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audit.contract import csvfile
from audit.contract.errors import AuditError
from audit.contract.image_properties import PROPERTY_COLUMNS
from audit.contract.intervals import CONFIDENCE_LEVEL, wilson
from audit.contract.slices import SliceError, WatchedSlice, select

__all__ = [
    "SliceTable",
    "measure_watched",
    "measure_watched_detection",
    "read_slice_table",
    "search_table",
    "side_metrics",
]

_EPS = float(np.finfo(np.float64).eps)
_Z = 1.959963984540054  # the two-sided 95 % normal quantile


class SliceTable:
    """The clean condition's per-sample values and every column a slice can name (attributes and properties)."""

    def __init__(self, ids: list[str], correct: np.ndarray, brier: np.ndarray, nll: np.ndarray, columns: dict):
        self.ids, self.correct, self.brier, self.nll, self.columns = ids, correct, brier, nll, columns

    def __len__(self) -> int:
        return len(self.ids)


def read_slice_table(
    predictions: Path, properties: Path | None, *, attributes: Sequence[str], condition: str = "clean"
) -> SliceTable:
    """The rows of ``condition`` (default ``clean``) of ``predictions`` with their attributes and (when given) image properties, by sample id.

    Raises:
        AuditError: a file is not the run's (a missing column), or a property row names an unknown sample.
    """
    ids: list[str] = []
    labels: list[int] = []
    preds: list[int] = []
    p_true: list[float] = []
    sq: list[float] = []
    attrs: dict[str, list[str]] = {a: [] for a in attributes}
    reader = csvfile.reader(csvfile.lines(predictions, what="predictions.csv", error=AuditError))
    header = next(reader, None) or []
    pos = {name: k for k, name in enumerate(header)}
    for need in ("sample_id", "condition", "label", "prediction", "p_true", "prob_sq_sum", *attributes):
        if need not in pos:
            raise AuditError(f"{predictions}: no column {need!r}")
    for row in reader:
        if row[pos["condition"]] != condition:
            continue
        ids.append(row[pos["sample_id"]])
        labels.append(int(row[pos["label"]]))
        preds.append(int(row[pos["prediction"]]))
        p_true.append(float(row[pos["p_true"]]))
        sq.append(float(row[pos["prob_sq_sum"]]))
        for a in attributes:
            attrs[a].append(row[pos[a]])
    p = np.asarray(p_true, dtype=np.float64)
    columns: dict[str, Any] = {a: np.asarray(v, dtype=object).astype(str) for a, v in attrs.items()}
    if properties is not None:
        where = {sid: k for k, sid in enumerate(ids)}
        values = {c: np.full(len(ids), np.nan) for c in PROPERTY_COLUMNS[1:]}
        reader = csvfile.reader(csvfile.lines(properties, what="image_properties.csv", error=AuditError))
        if tuple(next(reader, None) or ()) != PROPERTY_COLUMNS:
            raise AuditError(f"{properties}: not an image_properties.csv (header {', '.join(PROPERTY_COLUMNS)})")
        for row in reader:
            k = where.get(row[0])
            if k is None:
                if condition != "clean":  # a condition run on a subset (attacks): the other samples have no row
                    continue
                raise AuditError(f"{properties}: sample {row[0]!r} has no clean row in {predictions.name}")
            for c, text in zip(PROPERTY_COLUMNS[1:], row[1:]):
                values[c][k] = float(text) if text else math.nan
        columns.update(values)
    return SliceTable(
        ids,
        np.asarray(preds) == np.asarray(labels),
        np.asarray(sq, dtype=np.float64) - 2 * p + 1,
        -np.log(np.maximum(p, _EPS)),
        columns,
    )


def _mean_interval(values: np.ndarray) -> list[float] | None:
    n = len(values)
    if n < 2:
        return None
    m, se = float(values.mean()), float(values.std(ddof=1)) / math.sqrt(n)
    return [m - _Z * se, m + _Z * se]


def side_metrics(table: SliceTable, mask: np.ndarray) -> dict[str, Any]:
    """``{n, metrics}`` of the samples of ``mask``: accuracy, brier, nll and their intervals (null when empty)."""
    n = int(mask.sum())
    if n == 0:
        return {"n": 0, "metrics": {k: None for k in ("accuracy", "accuracy_ci", "brier", "brier_ci", "nll", "nll_ci")}}
    k = int(table.correct[mask].sum())
    b, ll = table.brier[mask], table.nll[mask]
    return {
        "n": n,
        "metrics": {
            "accuracy": k / n,
            "accuracy_ci": wilson(k, n, level=CONFIDENCE_LEVEL),
            "brier": float(b.mean()),
            "brier_ci": _mean_interval(b),
            "nll": float(ll.mean()),
            "nll_ci": _mean_interval(ll),
        },
    }


def measure_watched(watch: Sequence[WatchedSlice], table: SliceTable, *, min_group_size: int) -> list[dict[str, Any]]:
    """results.json ``slices``: one entry per watched slice (:class:`audit.contract.results.WatchedSliceResult`).

    Raises:
        AuditError: a slice names a column the run does not have.
    """
    out = []
    columns: Mapping[str, Any] = table.columns
    for entry in watch:
        try:
            mask = select(entry, columns)
        except SliceError as err:
            raise AuditError(f"slices.watch {entry.id!r}: {err}") from None
        inside, rest = side_metrics(table, mask), side_metrics(table, ~mask)
        gap: dict[str, float | None] = {}
        for metric, sign in (("accuracy", -1.0), ("brier", 1.0), ("nll", 1.0)):
            a, b = inside["metrics"][metric], rest["metrics"][metric]
            gap[metric] = None if a is None or b is None else sign * (a - b)
        out.append(_entry(entry, inside, rest, gap, min(inside["n"], rest["n"]) < min_group_size))
    return out


def _entry(
    entry: WatchedSlice, inside: dict[str, Any], rest: dict[str, Any], gap: dict[str, float | None], insufficient: bool
) -> dict[str, Any]:
    """One results.json ``slices`` entry (:class:`audit.contract.results.WatchedSliceResult`) of a watched slice."""
    return {
        "id": entry.id,
        "text": entry.text(),
        "definition": {"all": [p.model_dump(exclude_none=True) for p in entry.all]},
        "condition": "clean",
        "n": inside["n"],
        "metrics": inside["metrics"],
        "rest": rest,
        "gap": gap,
        "insufficient_data": insufficient,
    }


def measure_watched_detection(
    watch: Sequence[WatchedSlice], table: Any, *, min_group_size: int
) -> list[dict[str, Any]]:
    """results.json ``slices`` of a detection run: one entry per watched slice over the objects of ``table``
    (:class:`audit.evaluation.slices.run_folder.RunTable` of :func:`~audit.evaluation.slices.run_folder.read_detection_table`,
    condition ``clean``).

    Per side (the slice, the rest): ``n`` objects, ``recall`` = found / n and ``recall_ci`` the 95 % interval of
    :func:`audit.evaluation.slices.search.cluster_value` with the images holding an object of the run as clusters
    (``groups``: their number), as slices.csv's ``value_low``/``value_high`` with the confirmation half's images.
    ``gap.recall`` = rest - slice (positive: the slice is worse); null when a side is empty. ``insufficient_data``:
    fewer objects than ``min_group_size`` in the slice or in the rest, or either side's objects in fewer images
    than the search's :data:`~audit.evaluation.slices.search.MIN_SLICE_CLUSTERS` (its cluster test does not count
    such a comparison).

    Raises:
        AuditError: a slice names a column the run does not have.
    """
    from audit.evaluation.slices.search import MIN_SLICE_CLUSTERS, cluster_value

    assert table.task == "detection" and table.clusters is not None
    bad = np.asarray(table.badness["recall"], dtype=float)
    cluster = np.unique(np.asarray(table.clusters), return_inverse=True)[1].reshape(-1)
    groups = int(cluster.max()) + 1 if len(cluster) else 0

    def side(mask: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        if n == 0:
            return {"n": 0, "metrics": {"recall": None, "recall_ci": None}}
        value, interval = cluster_value(bad, cluster, mask, groups=groups)
        return {"n": n, "metrics": {"recall": float(value), "recall_ci": interval}}

    out = []
    for entry in watch:
        try:
            mask = select(entry, table.attributes)
        except SliceError as err:
            raise AuditError(f"slices.watch {entry.id!r}: {err}") from None
        inside, rest = side(mask), side(~mask)
        a, b = inside["metrics"]["recall"], rest["metrics"]["recall"]
        images, rest_images = int(np.unique(cluster[mask]).size), int(np.unique(cluster[~mask]).size)
        insufficient = min(inside["n"], rest["n"]) < min_group_size or min(images, rest_images) < MIN_SLICE_CLUSTERS
        out.append(_entry(entry, inside, rest, {"recall": None if a is None or b is None else b - a}, insufficient))
    return out


def _numeric(values: np.ndarray, bins: int) -> bool:
    """A manifest attribute is numeric when every non-empty value is a finite number with more distinct values than
    ``bins`` (the rule of ``cvaudit slices``, :mod:`audit.evaluation.slices.run_folder`); a property always is."""
    if values.dtype.kind == "f":
        return True
    present = values[values != ""]
    try:
        numbers = present.astype(float)
    except ValueError:
        return False
    return len(present) > 0 and bool(np.isfinite(numbers).all()) and len(np.unique(numbers)) > bins


def search_table(
    table: SliceTable, *, metric: str, settings: Any, attributes: Sequence[str], protected: Sequence[str] | None
) -> Any:
    """The slice search (:func:`audit.evaluation.slices.search.search`) over the clean rows of a run being written,
    as ``cvaudit slices`` searches a finished run folder: the same columns (manifest attributes categorical unless
    numeric, image properties numeric) and badness.

    Args:
        attributes: the run's ``data.attributes`` (the image properties in ``table`` are searched too).
        protected: the attributes whose slices are fairness findings; None: every manifest attribute.

    Returns:
        :class:`audit.evaluation.slices.run_folder.RunSlices` (``slices_csv_text`` writes slices.csv from it).
    """
    from audit.evaluation.slices.run_folder import RunSlices, RunTable
    from audit.evaluation.slices.search import SEARCH_METRICS, categorical_column, numeric_column, search

    properties = [c for c in PROPERTY_COLUMNS[1:] if c in table.columns]
    columns, numeric = [], []
    for name in [*attributes, *properties]:
        values = np.asarray(table.columns[name])
        if name in properties or _numeric(values, settings.bins):
            numeric.append(name)
            as_float = values if values.dtype.kind == "f" else np.where(values == "", "nan", values).astype(float)
            columns.append(numeric_column(name, as_float, bins=settings.bins))
        else:
            columns.append(categorical_column(name, values, min_size=settings.min_size))
    badness = {"accuracy": 1.0 - table.correct.astype(float), "brier": table.brier, "nll": table.nll}
    result = search(columns, badness[metric], SEARCH_METRICS[metric], settings)
    run_table = RunTable(
        ids=list(table.ids),
        badness=badness,
        attributes={name: np.asarray(table.columns[name]) for name in [*attributes, *properties]},
        manifest_attributes=list(attributes),
        properties=properties,
        properties_file=bool(properties),
    )
    chosen = list(attributes) if protected is None else list(protected)
    return RunSlices(run_table, result, chosen, numeric=numeric)
