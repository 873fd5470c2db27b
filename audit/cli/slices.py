"""``cvaudit slices``: weak slices of a finished run, found on one half and confirmed on the other.

``cvaudit slices RUN_DIR`` reads the run's results.json, predictions.csv and, when present,
image_properties.csv (never the images), writes slices.csv (``--out``, default
``RUN_DIR/slices.csv``, written atomically; a signed run folder needs ``--out`` elsewhere) and prints the confirmed slices.
``cvaudit slices RUN_DIR --promote N`` prints the policy rule and the config snippet for slice N of
that slices.csv instead. A detection run (``task: detection``) is searched on its ground-truth objects
(objects.csv, with the images' manifest attributes from detections.csv): metric ``recall``, objects
clustered in images; ``--promote N`` prints its rule on ``gap.recall`` and the ``slices.watch`` entry a
detection run measures (by recall, over the objects). See docs/slices.md.

Exit codes: 0 the search ran (whether or not it found a slice) or the rule was printed; 2 unusable
input (a setting out of range, an attribute the run does not have, a run folder without
predictions.csv or objects.csv, a metric of the other task, ``--promote`` of a row that does not read back), with
one line on stderr, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import click

from audit.cli.boundary import boundary, say

__all__ = ["slices_command"]

#: The attestation of a signed run folder (reports.attestation.ATTESTATION_FILE, not part of the reports API).
_ATTESTATION = "attestation.dsse.json"


@click.command("slices")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option(
    "--metric",
    default=None,
    help="The metric compared: accuracy (default), brier or nll on a classification run (the per-sample metrics of "
    "the registry); recall (default, objects found) on a detection run.",
)
@click.option("--depth", type=int, default=3, show_default=True, help="Most predicates per slice (1 to 4).")
@click.option(
    "--tolerance",
    type=float,
    default=0.0,
    show_default=True,
    help="A slice is reported only when it is worse than the rest by more than this (in [0, 1]).",
)
@click.option("--min-size", type=int, default=50, show_default=True, help="Fewest samples of a slice in the run.")
@click.option("--bins", type=int, default=10, show_default=True, help="Quantile bins of a numeric attribute.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Family-wise error rate of the report.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the discovery/confirmation split.")
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    help="Search only these attributes (manifest attributes or image properties; repeat the option).",
)
@click.option(
    "--protected",
    multiple=True,
    help="Protected attributes: a slice on one is a fairness finding (default: every manifest attribute).",
)
@click.option("--condition", default="clean", show_default=True, help="The condition whose predictions are searched.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="slices.csv to write (with --promote: to read). Default: RUN_DIR/slices.csv.",
)
@click.option("--promote", type=int, default=None, metavar="N", help="Print the policy rule for slice N of slices.csv.")
@boundary
def slices_command(
    run_dir: Path,
    metric: str | None,
    depth: int,
    tolerance: float,
    min_size: int,
    bins: int,
    alpha: float,
    seed: int,
    attributes: tuple[str, ...],
    protected: tuple[str, ...],
    condition: str,
    out: Path | None,
    promote: int | None,
) -> None:
    """Find the slices of RUN_DIR whose metric is worse than the rest, with the family-wise error controlled."""
    from audit.contract.slices import SliceError
    from audit.evaluation import (
        DETECTION_METRICS,
        SEARCH_METRICS,
        SLICES_CSV,
        SearchSettings,
        promote_slice,
        search_run,
        slices_csv_text,
    )
    from reports import atomic_write_text

    target = out if out is not None else run_dir / SLICES_CSV
    if promote is not None:
        for line in promote_slice(target, promote).splitlines():
            say(line, err=False)
        return
    if metric is not None and metric not in SEARCH_METRICS and metric not in DETECTION_METRICS:
        known = ", ".join([*SEARCH_METRICS, *DETECTION_METRICS])
        raise SliceError(f"--metric {metric!r} cannot be searched; use one of {known}")
    settings = SearchSettings(depth=depth, tolerance=tolerance, min_size=min_size, bins=bins, alpha=alpha, seed=seed)
    if (run_dir / _ATTESTATION).exists() and target.resolve().is_relative_to(run_dir.resolve()):
        # through --out too (a path into the folder, or a link to it): the signed folder stays as signed
        raise SliceError(
            f"{run_dir} is a signed run folder: a slices.csv written into it now is not covered by its attestation "
            "(and would replace an attested one); name a file outside it with --out"
        )
    if target.is_dir():
        raise SliceError(f"--out {target}: is a folder; name the slices.csv file to write")
    found = search_run(
        run_dir,
        metric=metric,
        settings=settings,
        attributes=list(attributes) or None,
        protected=list(protected) or None,
        condition=condition,
    )
    table, result = found.table, found.result
    metric = result.metric
    units = "objects" if table.task == "detection" else "samples"
    if table.task == "detection":
        if not table.geometry:
            say(f"cvaudit: objects.csv in {run_dir} has no box geometry (an older run): searched without it")
        if not table.properties_file:
            say(
                f"cvaudit: no image_properties.csv in {run_dir} (a run before 1.6): searched the objects' columns "
                "and manifest attributes"
            )
    elif not table.properties_file:
        say(f"cvaudit: no image_properties.csv in {run_dir}: searched the manifest attributes only")
    path = atomic_write_text(target, slices_csv_text(found))
    say(
        f"cvaudit: {result.n} {units} of {condition}, {len(result.attributes)} attributes, {result.candidates} "
        f"candidate slices; {result.discovered} worse on the discovery half, {result.confirmed_family} tested on the "
        f"confirmation half (Holm, alpha {settings.alpha})"
    )
    if not result.findings:
        say(f"no slice confirmed worse than the rest by more than {settings.tolerance} ({path})", err=False)
        return
    for rank, f in enumerate(result.findings, start=1):
        flag = "  [fairness]" if any(a in found.protected for a in f.definition.attributes) else ""
        say(
            f"{rank}. {f.definition.text()}: {metric} {f.value:.4g} vs {f.rest_value:.4g} outside "
            f"(n={f.n}, p={f.p_value:.2g}){flag}",
            err=False,
        )
    say(str(path), err=False)
