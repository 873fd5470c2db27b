"""The slice search over a finished run folder: what it reads, slices.csv and the promoted rule.

Reads, never the images. A classification run:

- ``results.json`` (validated): ``dataset.attributes`` names the manifest
  attributes the run recorded (config ``data.attributes``);
- ``predictions.csv`` (:mod:`audit.contract.predictions`), the rows of one condition (``clean`` by
  default): the per-sample value of the metric and the manifest attributes (its columns after the
  fixed ones);
- ``image_properties.csv`` when present (written by the run; header
  ``id,brightness,contrast,sharpness,colourfulness,saturation,aspect_ratio,width,height``, ``id`` as
  predictions.csv's ``sample_id``, an empty cell a property not computed): numeric attributes. When
  it is absent the search runs over the manifest attributes only and says so.

A manifest attribute is numeric when every non-empty value is a finite number and it has more
distinct values than ``bins``; otherwise categorical. An image property is always numeric.

A detection run (``task: detection``): the units are the ground-truth objects present under the condition,
clustered in their images (:func:`read_detection_table`):

- ``objects.csv`` (:mod:`audit.evaluation.detection.objects`): per object its image (``image_row``), whether it
  was found, and the searched columns ``class``, ``size``, each ``object.<key>`` (categorical unless numeric
  as above), ``area_share``, ``center_x``, ``center_y`` and ``center_distance`` (derived: the distance of the box
  centre from the image centre, ``sqrt((cx - 1/2)^2 + (cy - 1/2)^2) / sqrt(1/2)``, 0 at the centre, 1 in a
  corner), always numeric. A run written before objects.csv had the geometry columns is searched without them;
- ``detections.csv``: the manifest attributes of each image (its columns between ``file_name`` and
  ``objects``), joined to the objects by ``sample_id`` on the condition's rows.

- ``image_properties.csv`` when present (a detection run writes it from 1.6 on; computed on each image as
  decoded, at its own size): each object carries its image's properties (numeric attributes, searched like the
  classification run's; the objects of one image stay one cluster).

Protected attributes: cvaudit has no separate declaration; every manifest attribute of
``data.attributes`` is measured as a fairness attribute (results.json ``fairness``), so by default a
slice with a predicate on one of them is a fairness finding; ``protected`` names them instead.

Problems are one :class:`audit.contract.slices.SliceError` line naming the file (and line) and the
problem, raised before anything is searched.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audit.contract import csvfile
from audit.contract.errors import CvauditError, echo
from audit.contract.files import require_regular
from audit.contract.load import load_results
from audit.contract.metric_specs import DETECTION_COUNTS
from audit.contract.predictions import PREDICTIONS_COLUMNS
from audit.contract.slices import SliceDefinition, SliceError, slice_id
from audit.evaluation.slices.search import (
    DETECTION_METRICS,
    SEARCH_METRICS,
    Column,
    SearchResult,
    SearchSettings,
    categorical_column,
    numeric_column,
    search,
)

__all__ = [
    "IMAGE_PROPERTIES_CSV",
    "PROPERTY_COLUMNS",
    "SLICES_COLUMNS",
    "SLICES_CSV",
    "RunSlices",
    "RunTable",
    "promote",
    "read_detection_table",
    "read_run_table",
    "read_slices_csv",
    "search_run",
    "slices_csv_text",
]

SLICES_CSV = "slices.csv"
IMAGE_PROPERTIES_CSV = "image_properties.csv"
#: The properties image_properties.csv holds (its header after ``id``).
PROPERTY_COLUMNS = (
    "brightness",
    "contrast",
    "sharpness",
    "colourfulness",
    "saturation",
    "aspect_ratio",
    "width",
    "height",
)
#: slices.csv's columns. Numbers of the slice and the rest are on the confirmation half (discovery never saw
#: it); ``n`` is the slice's size in the whole run; ``effect`` = how much worse the slice is (rest - slice for a
#: metric where higher is better, slice - rest otherwise); ``p_value`` is Holm-adjusted over the slices
#: confirmed together; ``fairness`` is true when the slice has a predicate on a protected attribute.
SLICES_COLUMNS = (
    "rank",
    "id",
    "definition",
    "depth",
    "n",
    "metric",
    "n_confirm",
    "value",
    "value_low",
    "value_high",
    "rest_n_confirm",
    "rest_value",
    "rest_low",
    "rest_high",
    "effect",
    "tolerance",
    "p_value",
    "p_raw",
    "merged",
    "fairness",
    "protected_attributes",
    "definition_json",
)

#: float64 machine epsilon: NLL's floor on p_true, as results.json's NLL (audit.contract.predictions).
_EPS = float(np.finfo(np.float64).eps)


@dataclass
class RunTable:
    """The samples of one condition of a run: per-sample badness of each metric and the attribute columns."""

    ids: list[str]
    badness: dict[str, np.ndarray]
    attributes: dict[str, np.ndarray]
    manifest_attributes: list[str]
    properties: list[str]
    properties_file: bool
    #: "classification" or "detection"
    task: str = "classification"
    #: detection: each unit's image (the clusters of the cluster-robust test); None for classification
    clusters: np.ndarray | None = None
    #: detection: objects.csv had the box geometry columns
    geometry: bool = False


def _float(text: str | None, path: Path, line: int, column: str) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise SliceError(f"{path}: line {line}: {column} {echo(text)} is not a number") from None
    if not math.isfinite(value):
        raise SliceError(f"{path}: line {line}: {column} {echo(text)} is not a finite number")
    return value


def _rows(path: Path, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        rows = csvfile.reader(csvfile.lines(path, what=what, error=SliceError))
        header = next(rows, None)
        if header is None:
            raise SliceError(f"{path}: {what} is empty")
        body = [(number, row) for number, row in enumerate(rows, start=2) if row]
    except csvfile.CsvError as exc:
        raise SliceError(f"{path}: {exc}") from None
    return header, body


def read_run_table(run_dir: str | Path, *, condition: str = "clean") -> RunTable:
    """Read a run folder (module docstring) into a :class:`RunTable` of the rows of ``condition``.

    Raises:
        SliceError: no results.json / predictions.csv, detection results, a malformed row or property file.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise SliceError(f"{run}: not a run folder (no such folder)")
    try:
        results = load_results(run / "results.json")
    except CvauditError as exc:
        raise SliceError(str(exc)) from None
    if results.task == "detection":
        return read_detection_table(run, condition=condition)
    if results.task != "classification":
        raise SliceError(f"{run / 'results.json'}: the slice search reads classification and detection runs")
    predictions = run / "predictions.csv"
    if not predictions.is_file():
        raise SliceError(f"{predictions}: no predictions.csv in the run folder (the search reads the per-sample rows)")
    require_regular(predictions, what="predictions file", error=SliceError)
    header, body = _rows(predictions, "predictions file")
    fixed = list(PREDICTIONS_COLUMNS)
    if header[: len(fixed)] != fixed:
        raise SliceError(f"{predictions}: header does not start with {','.join(fixed)}")
    manifest = header[len(fixed) :]
    at = {name: i for i, name in enumerate(header)}
    ids: list[str] = []
    correct: list[float] = []
    brier: list[float] = []
    nll: list[float] = []
    values: dict[str, list[str]] = {a: [] for a in manifest}
    for number, row in body:
        if len(row) != len(header):
            raise SliceError(f"{predictions}: line {number}: {len(row)} fields, the header has {len(header)}")
        if row[at["condition"]] != condition:
            continue
        ids.append(row[at["sample_id"]])
        correct.append(float(row[at["label"]] == row[at["prediction"]]))
        p_true = _float(row[at["p_true"]], predictions, number, "p_true")
        sq = _float(row[at["prob_sq_sum"]], predictions, number, "prob_sq_sum")
        brier.append(sq - 2.0 * p_true + 1.0)
        nll.append(-math.log(max(p_true, _EPS)))
        for a in manifest:
            values[a].append(row[at[a]])
    if not ids:
        raise SliceError(f"{predictions}: no rows of condition {echo(condition)}")
    if len(set(ids)) != len(ids):
        raise SliceError(f"{predictions}: a sample_id appears twice in condition {echo(condition)}")
    attributes: dict[str, np.ndarray] = {a: np.array(v, dtype=str) for a, v in values.items()}
    properties, table, has_props = _read_properties(run, ids, taken=set(attributes))
    for j, name in enumerate(properties):
        attributes[name] = table[:, j]
    return RunTable(
        ids=ids,
        badness={"accuracy": 1.0 - np.array(correct), "brier": np.array(brier), "nll": np.array(nll)},
        attributes=attributes,
        manifest_attributes=manifest,
        properties=properties,
        properties_file=has_props,
    )


def _read_properties(run: Path, ids: list[str], *, taken: set[str]) -> tuple[list[str], np.ndarray, bool]:
    """The run's image_properties.csv, if any: its property names, a (len(ids), properties) table in the order
    of ``ids`` (NaN where a sample has no row or an empty cell), and whether the file exists.

    Raises:
        SliceError: a header other than cvaudit's, a property named like one of ``taken``, a malformed row or a
            sample id twice (one line naming the file and line).
    """
    prop_path = run / IMAGE_PROPERTIES_CSV
    if not prop_path.exists():
        return [], np.empty((len(ids), 0)), False
    require_regular(prop_path, what="image properties file", error=SliceError)
    p_header, p_body = _rows(prop_path, "image properties file")
    if tuple(p_header) != ("id", *PROPERTY_COLUMNS):
        # the run writes exactly these columns; any other file is not one of its image_properties.csv (and
        # an unbounded number of columns would grow the search with the cube of their number)
        raise SliceError(
            f"{prop_path}: the header must be id,{','.join(PROPERTY_COLUMNS)} (cvaudit's image properties)"
        )
    properties = p_header[1:]
    clash = [p for p in properties if p in taken]
    if clash:
        raise SliceError(f"{prop_path}: property {echo(clash[0])} is also a manifest attribute or object column")
    index = {sample: i for i, sample in enumerate(ids)}
    table = np.full((len(ids), len(properties)), np.nan)
    seen: set[str] = set()
    for number, row in p_body:
        if len(row) != len(p_header):
            raise SliceError(f"{prop_path}: line {number}: {len(row)} fields, the header has {len(p_header)}")
        if row[0] in seen:
            raise SliceError(f"{prop_path}: line {number}: id {echo(row[0])} appears twice")
        seen.add(row[0])
        i = index.get(row[0])
        for j, text in enumerate(row[1:]):
            value = math.nan if text == "" else _float(text, prop_path, number, properties[j])
            if i is not None:
                table[i, j] = value
    return properties, table, True


#: objects.csv's columns the detection search needs (the others: object.<key>, the geometry, are optional).
_OBJECT_FIELDS = ("condition", "sample_id", "image_row", "class", "size", "present", "found")
_GEOMETRY = ("area_share", "center_x", "center_y")
#: detections.csv's fixed columns before the manifest attributes, and after them.
_DETECTIONS_HEAD = ("condition", "sample_id", "image_id", "file_name")
_DETECTIONS_TAIL = ("objects", "detections", *(spec.name for spec in DETECTION_COUNTS))


def _image_attributes(run: Path, condition: str) -> tuple[list[str], dict[str, list[str]]]:
    """The manifest attributes of detections.csv and, per sample id of ``condition``, their values."""
    path = run / "detections.csv"
    if not path.is_file():
        raise SliceError(f"{path}: no detections.csv in the detection run folder (the images' manifest attributes)")
    require_regular(path, what="detections file", error=SliceError)
    header, body = _rows(path, "detections file")
    head, tail = len(_DETECTIONS_HEAD), len(_DETECTIONS_TAIL)
    if (
        tuple(header[:head]) != _DETECTIONS_HEAD
        or tuple(header[-tail:]) != _DETECTIONS_TAIL
        or len(header) < head + tail
    ):
        raise SliceError(f"{path}: not a detections.csv of this cvaudit (header differs)")
    names = header[head : len(header) - tail]
    values: dict[str, list[str]] = {}
    for number, row in body:
        if len(row) != len(header):
            raise SliceError(f"{path}: line {number}: {len(row)} fields, the header has {len(header)}")
        if row[0] != condition:
            continue
        if row[1] in values:
            raise SliceError(
                f"{path}: line {number}: sample_id {echo(row[1])} appears twice in condition {echo(condition)}"
            )
        values[row[1]] = row[head : len(header) - tail]
    return names, values


def read_detection_table(run_dir: str | Path, *, condition: str = "clean") -> RunTable:
    """A detection run folder (module docstring) as a :class:`RunTable` of the objects present under ``condition``:
    badness ``recall`` = 1 for a missed object, ``clusters`` the objects' images.

    Raises:
        SliceError: no objects.csv / detections.csv, a malformed row, an object whose image detections.csv lacks,
            a manifest attribute named like an object column, no object present under ``condition`` (one line).
    """
    run = Path(run_dir)
    path = run / "objects.csv"
    if not path.is_file():
        raise SliceError(f"{path}: no objects.csv in the detection run folder (the search reads the per-object rows)")
    require_regular(path, what="objects file", error=SliceError)
    header, body = _rows(path, "objects file")
    missing = [c for c in _OBJECT_FIELDS if c not in header]
    if missing:
        raise SliceError(f"{path}: not an objects.csv (no column {missing[0]!r})")
    if len(set(header)) != len(header):
        raise SliceError(f"{path}: the header names a column twice")
    geometry = all(c in header for c in _GEOMETRY)
    keys = [c for c in header if c.startswith("object.")]
    at = {name: i for i, name in enumerate(header)}
    names, images = _image_attributes(run, condition)
    clash = [a for a in names if a in ("class", "size", *keys, *_GEOMETRY, "center_distance")]
    if clash:
        raise SliceError(f"{run / 'detections.csv'}: manifest attribute {echo(clash[0])} is also an object column")
    booleans = {"true": True, "false": False}
    samples: list[str] = []
    missed: list[float] = []
    clusters: list[int] = []
    text: dict[str, list[str]] = {c: [] for c in ("class", "size", *keys, *names)}
    numbers: dict[str, list[float]] = {c: [] for c in _GEOMETRY} if geometry else {}
    for number, row in body:
        if len(row) != len(header):
            raise SliceError(f"{path}: line {number}: {len(row)} fields, the header has {len(header)}")
        if row[at["condition"]] != condition:
            continue
        present, found = booleans.get(row[at["present"]]), booleans.get(row[at["found"]])
        if present is None or found is None:
            raise SliceError(f"{path}: line {number}: present/found must be true or false")
        if not present:
            continue  # moved out of view: neither found nor missed
        sample = row[at["sample_id"]]
        image = images.get(sample)
        if image is None:
            raise SliceError(
                f"{path}: line {number}: sample_id {echo(sample)} has no row of condition {echo(condition)} "
                "in detections.csv"
            )
        try:
            clusters.append(int(row[at["image_row"]]))
        except ValueError:
            raise SliceError(
                f"{path}: line {number}: image_row {echo(row[at['image_row']])} is not a whole number"
            ) from None
        missed.append(0.0 if found else 1.0)
        samples.append(sample)
        for c in ("class", "size", *keys):
            text[c].append(row[at[c]])
        for j, a in enumerate(names):
            text[a].append(image[j])
        for c in numbers:
            cell = row[at[c]]
            numbers[c].append(math.nan if cell == "" else _float(cell, path, number, c))
    if not missed:
        raise SliceError(f"{path}: no object present under condition {echo(condition)}")
    attributes: dict[str, np.ndarray] = {c: np.array(v, dtype=str) for c, v in text.items()}
    for c, v in numbers.items():
        attributes[c] = np.array(v, dtype=float)
    if geometry:
        cx, cy = attributes["center_x"], attributes["center_y"]
        attributes["center_distance"] = np.sqrt((cx - 0.5) ** 2 + (cy - 0.5) ** 2) / math.sqrt(0.5)
    images_in_order = list(dict.fromkeys(samples))
    properties, table, has_props = _read_properties(run, images_in_order, taken=set(attributes))
    if properties:  # each object carries its image's properties
        row_of = {sample: i for i, sample in enumerate(images_in_order)}
        at_row = np.array([row_of[s] for s in samples], dtype=np.int64)
        for j, name in enumerate(properties):
            attributes[name] = table[at_row, j]
    return RunTable(
        ids=[str(i) for i in range(len(missed))],
        badness={"recall": np.array(missed)},
        attributes=attributes,
        manifest_attributes=names,
        properties=properties,
        properties_file=has_props,
        task="detection",
        clusters=np.array(clusters, dtype=np.int64),
        geometry=geometry,
    )


def _is_numeric(values: np.ndarray, bins: int) -> bool:
    if values.dtype.kind == "f":
        return True
    present = values[values != ""]
    if len(present) == 0:
        return False
    try:
        numbers = present.astype(float)
    except ValueError:
        return False
    return bool(np.isfinite(numbers).all()) and len(np.unique(numbers)) > bins


@dataclass
class RunSlices:
    """A search over a run: the table it read, the result, and the protected attributes."""

    table: RunTable
    result: SearchResult
    protected: list[str]
    numeric: list[str] = field(default_factory=list)


def search_run(
    run_dir: str | Path,
    *,
    metric: str | None = None,
    settings: SearchSettings | None = None,
    attributes: list[str] | None = None,
    protected: list[str] | None = None,
    condition: str = "clean",
) -> RunSlices:
    """Search the run in ``run_dir`` for weak slices (:func:`audit.evaluation.slices.search.search`).

    ``metric``: default ``accuracy`` for a classification run, ``recall`` for a detection run (the only ones of
    :data:`DETECTION_METRICS`; a detection run's units are objects clustered in images, see
    :func:`read_detection_table`). ``attributes`` restricts the search to those attributes (manifest
    attributes, image properties, or a detection run's object columns); ``protected`` names the protected
    attributes (default: every manifest attribute).

    Raises:
        SliceError: an unknown metric or attribute, a metric of the other task, or any problem of
            :func:`read_run_table` (one line).
    """
    settings = settings or SearchSettings()
    if metric is not None and metric not in SEARCH_METRICS and metric not in DETECTION_METRICS:
        known_metrics = ", ".join([*SEARCH_METRICS, *DETECTION_METRICS])
        raise SliceError(f"metric {echo(metric)} cannot be searched; use one of {known_metrics}")
    table = read_run_table(run_dir, condition=condition)
    metrics = DETECTION_METRICS if table.task == "detection" else SEARCH_METRICS
    metric = metric or next(iter(metrics))
    if metric not in metrics:
        raise SliceError(
            f"metric {echo(metric)} is not searched on a {table.task} run; use {' or '.join(metrics)} "
            f"({'objects found' if table.task == 'detection' else 'per-image predictions'})"
        )
    known = list(table.attributes)
    for name in (attributes or []) + (protected or []):
        if name not in table.attributes:
            if table.task == "detection":
                raise SliceError(
                    f"attribute {echo(name)} is not searched in this detection run (it has: {', '.join(known)})"
                )
            props = ", ".join(table.properties) if table.properties_file else f"no {IMAGE_PROPERTIES_CSV}"
            raise SliceError(
                f"attribute {echo(name)} is not in the manifest attributes of this run "
                f"({', '.join(table.manifest_attributes) or 'none'}) nor its image properties ({props})"
            )
    chosen = attributes or known
    if not chosen:
        raise SliceError(
            f"{run_dir}: the run recorded no manifest attributes (data.attributes) and has no {IMAGE_PROPERTIES_CSV}"
        )
    columns: list[Column] = []
    numeric: list[str] = []
    for name in chosen:
        values = table.attributes[name]
        if _is_numeric(values, settings.bins):
            numeric.append(name)
            as_float = values if values.dtype.kind == "f" else np.where(values == "", "nan", values).astype(float)
            columns.append(numeric_column(name, as_float, bins=settings.bins))
        else:
            columns.append(categorical_column(name, values, min_size=settings.min_size))
    result = search(columns, table.badness[metric], metrics[metric], settings, clusters=table.clusters)
    default_protected = [a for a in table.manifest_attributes]
    return RunSlices(table, result, list(protected) if protected is not None else default_protected, numeric=numeric)


def _num(value: float | None) -> object:
    return "" if value is None or not math.isfinite(value) else value


def slices_csv_text(found: RunSlices) -> str:
    """slices.csv (:data:`SLICES_COLUMNS`), one row per confirmed slice in rank order, via the one CSV writer."""
    out = io.StringIO()
    writer = csvfile.DictWriter(out, SLICES_COLUMNS)
    writer.writeheader()
    result = found.result
    for rank, f in enumerate(result.findings, start=1):
        hit = [a for a in f.definition.attributes if a in found.protected]
        writer.writerow(
            {
                "rank": rank,
                "id": slice_id(f.definition),
                "definition": f.definition.text(),
                "depth": f.definition.depth,
                "n": f.n,
                "metric": result.metric,
                "n_confirm": f.n_confirm,
                "value": _num(f.value),
                "value_low": _num(f.interval[0]) if f.interval else "",
                "value_high": _num(f.interval[1]) if f.interval else "",
                "rest_n_confirm": f.rest_n_confirm,
                "rest_value": _num(f.rest_value),
                "rest_low": _num(f.rest_interval[0]) if f.rest_interval else "",
                "rest_high": _num(f.rest_interval[1]) if f.rest_interval else "",
                "effect": _num(f.effect),
                "tolerance": result.settings.tolerance,
                "p_value": f.p_value,
                "p_raw": f.p_raw,
                "merged": f.merged,
                "fairness": "true" if hit else "false",
                "protected_attributes": ";".join(hit),
                "definition_json": json.dumps(f.definition.canonical(), sort_keys=True, separators=(",", ":")),
            }
        )
    return out.getvalue()


def read_slices_csv(path: str | Path) -> list[dict[str, str | None]]:
    """The rows of a slices.csv written by :func:`slices_csv_text` (one line on a file that is not one)."""
    path = Path(path)
    if not path.is_file():
        raise SliceError(f"{path}: no slices.csv (run 'cvaudit slices RUN_DIR' first, with the same --out)")
    header, body = _rows(path, "slices file")
    if header != list(SLICES_COLUMNS):
        raise SliceError(f"{path}: not a slices.csv of this cvaudit (header differs)")
    return [dict(zip(header, row, strict=False)) for _, row in body]


def _yaml_text(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _number(
    path: str | Path,
    rank: int,
    row: dict[str, str | None],
    key: str,
    *,
    default: float | None = None,
    whole: bool = False,
) -> float:
    """A finite number from a slices.csv cell (``default`` when empty), or one line naming the file and cell."""
    text = row.get(key)
    if not text and default is not None:
        return default
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (whole and (value < 0 or not value.is_integer())):
        what = "a whole number" if whole else "a finite number"
        raise SliceError(f"{path}: slice {rank}: {key} {echo(str(text))} is not {what}")
    return value


def promote(path: str | Path, rank: int) -> str:
    """The YAML that makes slice ``rank`` of the slices.csv at ``path`` a regression test: a policy rule
    (``section: slices, entry: <id>, metric: gap.<metric>, max: <tolerance>``) and the config snippet
    (``slices.watch``) that makes the next run measure the slice. A detection run's slice (metric ``recall``) is
    promoted alike: ``gap.recall``, ``min_samples`` its objects on the confirmation half.

    Raises:
        SliceError: no such rank, or a row whose definition does not read back.
    """
    rows = read_slices_csv(path)
    if not 1 <= rank <= len(rows):
        raise SliceError(f"{path}: no slice {rank} (the file has {len(rows)} slice(s))")
    row = rows[rank - 1]
    try:
        definition = SliceDefinition.model_validate(json.loads(row["definition_json"] or ""))
    except ValueError as exc:
        raise SliceError(
            f"{path}: slice {rank}: definition_json does not read back ({str(exc).splitlines()[0]})"
        ) from None
    ident = slice_id(definition)
    if ident != row["id"]:
        raise SliceError(f"{path}: slice {rank}: id {echo(row['id'])} is not the id of its definition ({ident})")
    # Every cell printed into the YAML is checked: a slices.csv is a file like any other, and a newline in a
    # cell would add keys to the rule (e.g. blocking: false); only registered metrics and finite numbers pass.
    metric = row["metric"] or "accuracy"
    detection = metric in DETECTION_METRICS  # a detection run's slice: objects, measured by recall
    if metric not in SEARCH_METRICS and not detection:
        known = ", ".join([*SEARCH_METRICS, *DETECTION_METRICS])
        raise SliceError(f"{path}: slice {rank}: metric {echo(metric)} is not a search metric ({known})")
    tolerance = _number(path, rank, row, "tolerance", default=0.0)
    n_confirm = int(_number(path, rank, row, "n_confirm", default=0.0, whole=True))
    value, rest = _number(path, rank, row, "value"), _number(path, rank, row, "rest_value")
    p_value = _number(path, rank, row, "p_value")
    lines = [
        f"# slice {rank}: {definition.text()}",
        f"# found by cvaudit slices: {metric} {value!r} in the slice vs {rest!r} outside",
        f"# (confirmation half, n={n_confirm}; Holm-adjusted p={p_value!r})",
        "# policy rule (add under 'rules:'): fails while the slice is worse than the rest by more than the tolerance",
        "rules:",
        "  - kind: metric",
        f"    id: {ident}",
        f"    description: {_yaml_text('known weak slice: ' + definition.text())}",
        "    section: slices",
        f"    entry: {ident}",
        f"    metric: gap.{metric}",
        f"    max: {tolerance!r}",
        f"    min_samples: {max(2, n_confirm)}",
        "# config (add under the run config): the next run measures this slice on the clean images"
        + (" (its ground-truth objects, by recall)" if detection else ""),
        "slices:",
        "  watch:",
        f"    - id: {ident}",
        "      all:",
    ]
    for p in definition.all:
        if p.equals is not None:
            lines.append(f"        - {{attribute: {_yaml_text(p.attribute)}, equals: {_yaml_text(p.equals)}}}")
        else:
            bounds = "".join(
                f", {key}: {value!r}" for key, value in (("min", p.min), ("max", p.max)) if value is not None
            )
            lines.append(f"        - {{attribute: {_yaml_text(p.attribute)}{bounds}}}")
    return "\n".join(lines) + "\n"
