"""Record what a demo run wrote, as the reference ``tests/test_outputs_unchanged.py`` compares runs with.

    # in a checkout of the revision whose outputs are the reference (e.g. main before a change):
    .venv/bin/cvaudit demo --out /tmp/ref-demo --quiet
    .venv/bin/python scripts/make_output_reference.py /tmp/ref-demo --commit "$(git rev-parse --short HEAD)"

writes ``tests/data/demo_outputs_reference.json.gz``: the text and SHA-256 of ``predictions.csv``,
``governance.csv`` and ``breaking_points.csv``, and results.json without what differs between two
runs of the same inputs (:func:`normalise`: run times and dates, an attack member's seconds, absolute
paths, the TorchScript file's digest, whose zip bytes vary although its weights do not, and the library versions).

The demo's model is shipped (``audit/demo_weights``) and its images are built with exact or float64
arithmetic, so a run on another CPU differs from the reference only where torch's CPU kernels round
differently (AVX-512, AVX2, the portable default; oneDNN's and MKL's code paths): float values in the
last digits and, rarely, the outcome of an attack on a sample at its decision boundary.
:func:`compare_outputs` states how far that may go.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "demo_outputs_reference.json.gz"
CSV_FILES = ("predictions.csv", "governance.csv", "breaking_points.csv")

# How far a run on another CPU may differ from the reference. Measured with `--compare` between a run on
# the native kernels (AVX-512), one with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
# MKL_ENABLE_INSTRUCTIONS=AVX2 and one with ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41
# MKL_ENABLE_INSTRUCTIONS=SSE4_2: identical images, no prediction changed, probabilities of stressed
# (not attacked) images within 2.7e-6 and results.json values of those conditions within 1.9e-5 (a
# p-value of a calibration gap: the debiased error subtracts nearly equal sums). Images attacked with
# iterated gradient steps follow another path on other kernels: one sample's confidence moved by 0.074,
# a group's calibration error by 0.003, samples moved between two-sample reliability bins, and the
# thumbnails of attacked samples differ in their pixels. (AVX2 measured on the weights before the
# shipped ones, both others on the shipped ones too: 2.5e-6 and 0.064.)
FLOAT_TOLERANCE = 1e-4  # absolute, on a float of a non-attack CSV row or results.json value (5x the measured)
RELATIVE_TOLERANCE = 1e-4  # and relative, for values far from 1 (p-values, NLL)
ATTACK_COUNT_TOLERANCE = 3  # samples of an attacked condition whose outcome may differ (integers: counts)
ATTACK_TOLERANCE = 0.05  # absolute, on a float of an attacked condition not averaged over a count n (gaps, p-values)
MAX_CHANGED_ATTACK_ROWS = 0.02  # share of attacked CSV rows whose non-float fields may differ


def normalise(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without the values that differ between two runs of the same inputs."""
    out = json.loads(json.dumps(results))
    for section, keys in (
        ("provenance", ("started", "finished", "config", "versions")),
        ("model", ("path", "sha256")),
        ("dataset", ("path",)),
        ("governance", ("audit_date",)),
    ):
        for key in keys:
            (out.get(section) or {}).pop(key, None)
    for key in ("path", "sha256"):  # the TorchScript file as the run found it (its zip bytes vary)
        ((out.get("model") or {}).get("code_executed") or {}).pop(key, None)
    for cond in out.get("conditions") or []:  # an attack member's run time (attack_details.members[].seconds)
        for member in (cond.get("attack_details") or {}).get("members") or []:
            member.pop("seconds", None)
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if "." in text or "e" in text.lower() or not math.isfinite(value) else None


def _close(a: float, b: float, attack_tolerance: float | None = None) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if attack_tolerance is not None:
        return abs(a - b) <= attack_tolerance
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=FLOAT_TOLERANCE)


def attacked_conditions(results: dict[str, Any]) -> set[str]:
    """Ids of the model-aware (attack) conditions with a non-zero budget, whose images follow gradients."""
    return {
        c["id"] for c in results.get("conditions", []) if c.get("model_aware") and float(c.get("severity") or 0) > 0
    }


def compare_csv(name: str, ref_text: str, new_text: str, attacked: set[str] = frozenset()) -> list[str]:
    """Differences between two CSV files beyond the CPU kernels' rounding (empty: equal enough).

    The header and the row keys (first two columns) must be equal in order. A row of an attacked
    condition (its ``condition`` column in ``attacked``) holds one sample's end point of an iterated
    attack, which other kernels reach by another path: its floats are not compared, its other
    fields may differ in at most ``MAX_CHANGED_ATTACK_ROWS`` of those rows (the aggregates are held
    in results.json by :func:`compare_json`). In every other row floats agree within
    ``FLOAT_TOLERANCE`` and every other field exactly.
    """
    ref_rows = list(csv.reader(io.StringIO(ref_text)))
    new_rows = list(csv.reader(io.StringIO(new_text)))
    if not ref_rows or not new_rows or ref_rows[0] != new_rows[0]:
        return [f"{name}: header {new_rows[:1]} instead of {ref_rows[:1]}"]
    if len(ref_rows) != len(new_rows):
        return [f"{name}: {len(new_rows) - 1} rows instead of {len(ref_rows) - 1}"]
    header = ref_rows[0]
    where = header.index("condition") if "condition" in header else None
    out, changed_attack_rows, attack_rows = [], 0, 0
    for line, (a, b) in enumerate(zip(ref_rows[1:], new_rows[1:]), start=2):
        if a[:2] != b[:2] or len(a) != len(b):
            out.append(f"{name}:{line}: row {b[:2]} instead of {a[:2]}")
            continue
        loose = where is not None and a[where] in attacked
        attack_rows += loose
        changed = False
        for column, x, y in zip(header, a, b):
            fx, fy = _float(x), _float(y)
            if fx is not None and fy is not None:
                if not loose and not _close(fx, fy):
                    out.append(f"{name}:{line}: {column} {y} instead of {x}")
            elif x != y:
                changed = True
                if not loose:
                    out.append(f"{name}:{line}: {column} {y!r} instead of {x!r}")
        changed_attack_rows += loose and changed
    if changed_attack_rows > MAX_CHANGED_ATTACK_ROWS * attack_rows:
        out.append(
            f"{name}: {changed_attack_rows} of {attack_rows} attacked rows differ (at most {MAX_CHANGED_ATTACK_ROWS:.0%})"
        )
    return out


def compare_json(
    ref: Any,
    new: Any,
    path: str = "$",
    attacked: set[str] = frozenset(),
    *,
    _attack: bool = False,
    _n: int | None = None,
    _bins: bool = False,
) -> list[str]:
    """Differences between two JSON values: every key of ``ref`` present in ``new``, numbers within tolerance.

    Outside attacked conditions: floats within ``FLOAT_TOLERANCE`` / ``RELATIVE_TOLERANCE``, everything
    else equal. An object whose ``id`` or ``condition`` names an attacked condition is compared as far
    as ``ATTACK_COUNT_TOLERANCE`` samples changing their outcome can move it, and so is everything inside:
    sample counts ``n`` exactly (except in reliability bins, which samples move between), other integers
    (confusion cells, bin counts) within ``ATTACK_COUNT_TOLERANCE``; a float of an object with a count
    ``n`` (a condition's or a group's metrics, a bin) within ``ATTACK_COUNT_TOLERANCE / n`` (twice that for
    the Brier score, whose per-sample value spans 2), other floats (gaps, p-values of their tests) within
    ``ATTACK_TOLERANCE``; a value may turn into null or back only in a reliability bin (it emptied); an
    image (a data URI: a thumbnail of an attacked sample) may differ in its pixels.
    """
    if isinstance(ref, dict):
        if not isinstance(new, dict):
            return [f"{path}: {type(new).__name__} instead of an object"]
        _attack = _attack or ref.get("id") in attacked or ref.get("condition") in attacked
        if isinstance(ref.get("n"), int) and ref["n"] > 0:
            _n = ref["n"]
        out = []
        for key, value in ref.items():
            if key not in new:
                out.append(f"{path}.{key}: missing")
            else:
                bins = _bins or key == "reliability"
                out += compare_json(value, new[key], f"{path}.{key}", attacked, _attack=_attack, _n=_n, _bins=bins)
        return out
    if isinstance(ref, list):
        if not isinstance(new, list) or len(new) != len(ref):
            return [f"{path}: {len(ref)} items before, {len(new) if isinstance(new, list) else new!r} now"]
        return [
            d
            for k, (a, b) in enumerate(zip(ref, new))
            for d in compare_json(a, b, f"{path}[{k}]", attacked, _attack=_attack, _n=_n, _bins=_bins)
        ]
    key = path.rsplit(".", 1)[-1].split("[", 1)[0]
    numbers = (int, float)
    if (
        isinstance(ref, numbers)
        and isinstance(new, numbers)
        and not isinstance(ref, bool)
        and not isinstance(new, bool)
    ):
        if isinstance(ref, int) and isinstance(new, int):
            allowed = ATTACK_COUNT_TOLERANCE if _attack and (key != "n" or _bins) else 0
            same = abs(ref - new) <= allowed
        elif not _attack:
            same = _close(float(ref), float(new))
        else:
            spread = 2.0 if key.startswith("brier") else 1.0
            same = _close(float(ref), float(new), ATTACK_COUNT_TOLERANCE * spread / _n if _n else ATTACK_TOLERANCE)
        return [] if same else [f"{path}: {ref!r} before, {new!r} now"]
    if _attack and _bins and (ref is None) != (new is None):
        return []  # a reliability bin that emptied or filled (a sample moved to the next bin)
    if _attack and isinstance(ref, str) and isinstance(new, str) and ref.startswith("data:image/"):
        return [] if new.startswith("data:image/") else [f"{path}: an image before, {new[:40]!r} now"]
    return [] if ref == new and type(ref) is type(new) else [f"{path}: {ref!r} before, {new!r} now"]


def record(demo_out: Path, commit: str) -> dict[str, Any]:
    return {
        "commit": commit,
        "sha256": {name: digest(demo_out / name) for name in CSV_FILES},
        "csv": {name: (demo_out / name).read_bytes().decode("utf-8") for name in CSV_FILES},
        "results": normalise(json.loads((demo_out / "results.json").read_text(encoding="utf-8"))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_out", type=Path, help="the --out folder of a `cvaudit demo` run")
    parser.add_argument("--commit", help="the revision that wrote it (records the reference)")
    parser.add_argument("--compare", type=Path, help="another run's --out folder: print how it differs")
    args = parser.parse_args()
    if args.compare:
        a, b = record(args.demo_out, "a"), record(args.compare, "b")
        attacked = attacked_conditions(a["results"])
        for name in CSV_FILES:
            same = a["sha256"][name] == b["sha256"][name]
            diffs = compare_csv(name, a["csv"][name], b["csv"][name], attacked)
            print(f"{name}: {'identical' if same else 'bytes differ'}; {len(diffs)} differences beyond tolerance")
            print(*diffs[:20], sep="\n  ")
        diffs = compare_json(a["results"], b["results"], attacked=attacked)
        print(f"results.json: {len(diffs)} differences beyond tolerance", *diffs[:20], sep="\n  ")
        return
    if not args.commit:
        parser.error("--commit is required to record a reference")
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(record(args.demo_out, args.commit), sort_keys=True).encode("utf-8")
    REFERENCE.write_bytes(gzip.compress(data, mtime=0))
    print(f"wrote {REFERENCE.relative_to(ROOT)} ({REFERENCE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
