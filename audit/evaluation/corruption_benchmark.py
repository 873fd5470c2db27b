"""The corruption benchmark (config ``benchmark:``): its checks before any image, and its summary after.

:func:`check_benchmark` refuses, before the data are read, a suite the run cannot evaluate or
normalise: a corruption that is not a registered stressor here, a ``stressors[]`` entry whose
conditions collide with the suite's, a baseline results.json that cannot be read, is of another task
or another dataset, or lacks a suite condition. Each refusal is one line naming the key or the file.

:func:`imagenet_c_summary` computes results.json ``imagenet_c`` from the run's own results (torch is
not needed): per corruption ``c`` with errors ``E_s = 1 - accuracy`` at the severities ``s`` run,

- ``CE_c = sum_s E_s / sum_s B_s`` (``B``: the baseline's errors at the same severities),
- ``relative CE_c = sum_s (E_s - E_clean) / sum_s (B_s - B_clean)`` (null against AlexNet, whose
  clean error is not published with the table),
- ``mCE`` / ``relative mCE``: their mean over the 15 benchmark corruptions run; the 4 held-out
  corruptions are averaged separately (Hendrycks & Dietterich 2019);

and for a detector ``mPC``, the mean mAP over the benchmark corruptions run and their severities,
and ``rPC = mPC / clean mAP`` (Michaelis et al. 2019).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import stressors
from audit.contract.conditions import format_severity
from audit.contract.config import AuditConfig, BenchmarkConfig
from audit.contract.corruption_suite import ALEXNET_SOURCE, BENCHMARK, HELD_OUT, SEVERITIES
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError, echo
from audit.contract.load import ResultsError, load_results
from audit.contract.results import Results
from audit.contract.results.benchmark import BenchmarkBaseline, BenchmarkCorruption, ImageNetCResults
from stressors import StressorError

__all__ = ["check_benchmark", "corruption_error", "imagenet_c_summary", "mean_or_none", "suite_condition_ids"]


def suite_condition_ids(bench: BenchmarkConfig) -> list[str]:
    """Every condition id of the suite: ``<corruption>@<severity>``."""
    return [f"{name}@{format_severity(s)}" for name in bench.names for s in bench.levels]


def _dataset_identity(cfg: AuditConfig) -> tuple[str, str]:
    """How the run's data are told apart: ('sha256', digest) of a manifest or .npz file, else ('path', folder)."""
    source = cfg.data.manifest or cfg.data.npz
    if source is not None and Path(source).is_file():
        return "sha256", sha256_file(source)
    return "path", str(cfg.data.images or cfg.data.root or source)


def check_benchmark(cfg: AuditConfig, *, source: str, available: Sequence[str]) -> Results | None:
    """Refuse a benchmark this run cannot evaluate or normalise, before any image is read.

    Args:
        cfg: the run's config (``cfg.benchmark`` set).
        source: the config file, for the message.
        available: the registered stressor names (:func:`stressors.available`).

    Returns:
        The baseline run's results (``benchmark.baseline`` a results.json), or None for ``alexnet``.

    Raises:
        AuditError: one line: an unregistered corruption; a severity its stressor does not take; a
            ``stressors[]`` entry named like a suite
            corruption; a baseline results.json that cannot be read, is of another task, of another
            dataset (manifest SHA-256, or image folder path), or lacks a suite condition or its metric.
    """
    bench = cfg.benchmark
    assert bench is not None
    missing = [n for n in bench.names if n not in available]
    if missing:
        have = [n for n in bench.names if n in available]
        where = "benchmark.corruptions" if bench.corruptions is not None else "benchmark.corruptions (default: all 19)"
        raise AuditError(
            f"{source}: {where}: corruption {missing[0]!r} is not a registered stressor in this installation"
            f" ({len(missing)} of {len(bench.names)} missing; registered: {', '.join(have) or 'none'})"
        )
    for (
        name
    ) in bench.names:  # a severity the corruption's stressor does not take (e.g. 0, or 2.5 where no formula allows)
        try:
            stressors.get(name, severities=bench.levels)
        except StressorError as err:
            raise AuditError(f"{source}: benchmark.severities: {err}") from None
    for k, entry in enumerate(cfg.stressors):
        label = entry.label or entry.name
        if label in bench.names:
            raise AuditError(
                f"{source}: stressors[{k}] ({entry.name}): its conditions {label}@... are also the benchmark's; "
                "remove the entry or give it another 'label'"
            )
    if cfg.task == "detection":
        if "baseline" in bench.model_fields_set:
            raise AuditError(
                f"{source}: benchmark.baseline: a detector's suite gives mPC and rPC, which need no baseline; "
                "leave benchmark.baseline out"
            )
        return None
    if bench.baseline == "alexnet":
        return None
    path = Path(bench.baseline)
    try:
        baseline = load_results(path)
    except ResultsError as err:
        raise AuditError(f"{source}: benchmark.baseline: {err}") from None
    if baseline.task != cfg.task:
        raise AuditError(f"{path}: a {baseline.task} run's results; the benchmark baseline must be a {cfg.task} run")
    kind, identity = _dataset_identity(cfg)
    theirs = baseline.dataset.sha256 if kind == "sha256" else baseline.dataset.path
    if theirs != identity:
        what = "SHA-256 of the manifest" if kind == "sha256" else "image folder"
        raise AuditError(
            f"{path}: dataset: the baseline ran on another dataset ({what} {echo(str(theirs))}, this run: "
            f"{echo(identity)}); a benchmark baseline must be a run on the same data"
        )
    ids = _condition_values(baseline)
    for cid in ["clean", *suite_condition_ids(bench)]:
        if cid not in ids:
            raise AuditError(f"{path}: conditions: no condition {cid!r} (the baseline must have run the same suite)")
        if ids[cid] is None:
            raise AuditError(f"{path}: conditions: {cid!r} has no value to normalise by (its accuracy is null)")
    return baseline


def _condition_values(results: Results) -> dict[str, float | None]:
    """Condition id -> accuracy (classification) or mAP (detection)."""
    if results.task == "detection":
        assert results.detection is not None
        return {c.id: c.metrics.map for c in results.detection.conditions}
    return {c.id: c.metrics.accuracy for c in results.conditions or []}


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean of the values, or None when there is none or any is None."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def corruption_error(
    errors: Sequence[float],
    baseline: Sequence[float],
    *,
    clean: float | None = None,
    baseline_clean: float | None = None,
) -> tuple[float | None, float | None]:
    """``(CE, relative CE)`` of one corruption from its errors and the baseline's at the same severities.

    ``CE = sum(errors) / sum(baseline)``; ``relative CE = sum(errors - clean) / sum(baseline - baseline_clean)``,
    None without both clean errors. Either is None where its denominator is 0.
    """
    den = sum(baseline)
    ce = sum(errors) / den if den != 0 else None
    if clean is None or baseline_clean is None:
        return ce, None
    rel_den = sum(b - baseline_clean for b in baseline)
    rel = sum(e - clean for e in errors) / rel_den if rel_den != 0 else None
    return ce, rel


def imagenet_c_summary(results: Results, bench: BenchmarkConfig, baseline: Results | None) -> ImageNetCResults:
    """results.json ``imagenet_c`` from the run's results and the baseline (None: AlexNet's published errors).

    Raises:
        KeyError: a suite condition missing from ``results`` (the run evaluates every one).
    """
    values = _condition_values(results)
    levels = bench.levels
    complete = all(n in bench.names for n in BENCHMARK) and levels == list(SEVERITIES)
    if results.task == "detection":
        return _detection_summary(values, bench, complete)
    ref = _condition_values(baseline) if baseline is not None else None
    clean_acc = values["clean"]
    clean = None if clean_acc is None else 1.0 - clean_acc
    base_clean = None
    if baseline is not None and ref is not None and ref["clean"] is not None:
        base_clean = 1.0 - ref["clean"]
    rows = []
    for name in bench.names:
        ids = [f"{name}@{format_severity(s)}" for s in levels]
        accs = [values[cid] for cid in ids]
        errors = None if any(a is None for a in accs) else [1.0 - a for a in accs]  # type: ignore[operator]
        if ref is not None:
            base = [1.0 - ref[cid] for cid in ids]  # type: ignore[operator]  # check_benchmark: none is None
        else:
            published = bench.alexnet[name]
            base = [published[int(s) - 1] for s in levels]
        ce, rel = (None, None)
        if errors is not None:
            ce, rel = corruption_error(errors, base, clean=clean, baseline_clean=base_clean)
        rows.append(
            BenchmarkCorruption(
                corruption=name,
                held_out=name in HELD_OUT,
                severities=levels,
                errors=errors,
                baseline_errors=base,
                ce=ce,
                relative_ce=rel,
                unnormalized_ce=mean_or_none(errors) if errors is not None else None,
            )
        )
    main = [r for r in rows if not r.held_out]
    held = [r for r in rows if r.held_out]
    if baseline is None:
        source = BenchmarkBaseline(kind="alexnet", source=ALEXNET_SOURCE)
    else:
        path = Path(bench.baseline)
        source = BenchmarkBaseline(
            kind="results",
            source=str(path),
            sha256=sha256_file(path) if path.is_file() else None,
            model=baseline.model.path,
            clean_error=base_clean,
        )
    return ImageNetCResults(
        suite=bench.suite,
        task="classification",
        severities=levels,
        complete=complete,
        baseline=source,
        clean_error=clean,
        corruptions=rows,
        mce=mean_or_none([r.ce for r in main]),
        relative_mce=mean_or_none([r.relative_ce for r in main]),
        held_out_mce=mean_or_none([r.ce for r in held]),
        held_out_relative_mce=mean_or_none([r.relative_ce for r in held]),
    )


def _detection_summary(values: Mapping[str, float | None], bench: BenchmarkConfig, complete: bool) -> ImageNetCResults:
    rows = []
    for name in bench.names:
        maps = [values[f"{name}@{format_severity(s)}"] for s in bench.levels]
        rows.append(
            BenchmarkCorruption(
                corruption=name,
                held_out=name in HELD_OUT,
                severities=bench.levels,
                maps=maps,
                mean_map=mean_or_none(maps),
            )
        )
    flat = [m for r in rows if not r.held_out for m in (r.maps or [])]
    held = [m for r in rows if r.held_out for m in (r.maps or [])]
    clean = values["clean"]
    mpc = mean_or_none(flat)
    return ImageNetCResults(
        suite=bench.suite,
        task="detection",
        severities=bench.levels,
        complete=complete,
        corruptions=rows,
        clean_map=clean,
        mpc=mpc,
        rpc=mpc / clean if mpc is not None and clean else None,
        held_out_mpc=mean_or_none(held),
    )
