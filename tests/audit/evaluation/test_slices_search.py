"""The slice search against hand-written references: brute-force enumeration, the split, the tests, Holm."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from audit.contract.slices import SliceError, select
from audit.evaluation.slices.search import (
    SEARCH_METRICS,
    SearchSettings,
    categorical_column,
    columns_from_table,
    numeric_column,
    search,
)

ACC = SEARCH_METRICS["accuracy"]


def _table(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "camera": rng.choice(["A", "B", "C"], n),
        "light": rng.choice(["day", "dusk"], n),
        "site": rng.choice(["s1", "s2", "s3", "s4"], n),
        "brightness": rng.random(n),
    }


def _planted(n: int, seed: int, *, slice_acc: float = 0.55, base: float = 0.95) -> tuple[dict, np.ndarray]:
    table = _table(n, seed)
    rng = np.random.default_rng(seed + 1)
    weak = (table["camera"] == "B") & (table["light"] == "dusk")
    bad = (rng.random(n) > np.where(weak, slice_acc, base)).astype(float)
    return table, bad


def _split(n: int, seed: int) -> np.ndarray:
    """The discovery half, written out independently of the search (the documented split)."""
    discovery = np.zeros(n, dtype=bool)
    discovery[np.random.default_rng(seed).permutation(n)[: (n + 1) // 2]] = True
    return discovery


def _agresti_caffo_p(bad_s: float, n_s: int, bad_r: float, n_r: int, tol: float) -> float:
    ps, pr = (bad_s + 1) / (n_s + 2), (bad_r + 1) / (n_r + 2)
    se = math.sqrt(ps * (1 - ps) / (n_s + 2) + pr * (1 - pr) / (n_r + 2))
    return 1 - NormalDist().cdf((ps - pr - tol) / se)


def test_candidates_match_brute_force_enumeration() -> None:
    table = _table(600, 3)
    settings = SearchSettings(depth=3, bins=4, min_size=20)
    columns = columns_from_table(table, {k: k == "brightness" for k in table}, settings)
    result = search(columns, np.zeros(600), ACC, settings)
    # brute force: every conjunction of predicates on distinct attributes, sizes counted with select()
    from audit.contract.slices import SliceDefinition

    expected = 0
    for depth in (1, 2, 3):
        for cols in itertools.combinations(columns, depth):
            for preds in itertools.product(*(c.predicates for c in cols)):
                mask = select(SliceDefinition(all=list(preds)), table)
                expected += int(mask.sum() >= 20)
    assert result.candidates == expected > 50


def test_numeric_bins_are_quantiles_and_codes_agree_with_select() -> None:
    values = np.arange(100, dtype=float)
    values[7] = np.nan
    column = numeric_column("x", values, bins=4)
    assert len(column.predicates) == 4
    assert column.predicates[0].min is None and column.predicates[-1].max is None
    for code, predicate in enumerate(column.predicates):
        assert (predicate.select(values) == (column.codes == code)).all()
    assert column.codes[7] == -1
    counts = np.bincount(column.codes[column.codes >= 0])
    assert counts.max() - counts.min() <= 1


def test_rare_categorical_values_make_no_predicate() -> None:
    column = categorical_column("c", np.array(["a"] * 10 + ["b"] * 3), min_size=5)
    assert [p.equals for p in column.predicates] == ["a"]
    assert column.codes.tolist() == [0] * 10 + [-1] * 3


def test_planted_slice_found_and_numbers_match_a_reference() -> None:
    n, seed = 4000, 5
    table, bad = _planted(n, seed)
    settings = SearchSettings(seed=11, bins=5)
    columns = columns_from_table(table, {k: k == "brightness" for k in table}, settings)
    result = search(columns, bad, ACC, settings)
    assert result.findings, "the planted slice is found"
    top = result.findings[0]
    assert top.definition.text() == "camera = B AND light = dusk"
    # the confirmation numbers, recomputed from the documented split
    confirm = ~_split(n, 11)
    mask = select(top.definition, table)
    s, r = mask & confirm, ~mask & confirm
    assert top.n == int(mask.sum()) and top.n_confirm == int(s.sum()) and top.rest_n_confirm == int(r.sum())
    assert top.value == pytest.approx(1 - bad[s].mean()) and top.rest_value == pytest.approx(1 - bad[r].mean())
    assert top.effect == pytest.approx(bad[s].mean() - bad[r].mean())
    assert top.p_raw == pytest.approx(_agresti_caffo_p(bad[s].sum(), s.sum(), bad[r].sum(), r.sum(), 0.0), rel=1e-9)
    # Holm over every slice tested on the confirmation half (statsmodels as the reference)
    raw = [p for _, p, _ in result.tested]
    reference = multipletests(raw, method="holm")[1]
    assert [p for _, _, p in result.tested] == pytest.approx(list(reference))
    assert all(f.p_value <= 0.05 for f in result.findings)
    assert {f.definition.text() for f in result.findings} <= {d.text() for d, _, p in result.tested if p <= 0.05}


def test_discovery_z_is_computed_on_the_discovery_half_only() -> None:
    n = 4000
    table, bad = _planted(n, 5)
    settings = SearchSettings(seed=2, bins=5)
    result = search(columns_from_table(table, {k: k == "brightness" for k in table}, settings), bad, ACC, settings)
    top = result.findings[0]
    d = _split(n, 2)
    mask = select(top.definition, table)
    s, r = mask & d, ~mask & d
    ps, pr = (bad[s].sum() + 1) / (s.sum() + 2), (bad[r].sum() + 1) / (r.sum() + 2)
    z = (ps - pr) / math.sqrt(ps * (1 - ps) / (s.sum() + 2) + pr * (1 - pr) / (r.sum() + 2))
    assert top.z_discovery == pytest.approx(z, rel=1e-9)


def test_tolerance_above_the_gap_reports_nothing() -> None:
    table, bad = _planted(4000, 5)  # the planted gap is 0.40
    settings = SearchSettings(seed=1, bins=5, tolerance=0.6)
    result = search(columns_from_table(table, {k: k == "brightness" for k in table}, settings), bad, ACC, settings)
    assert result.findings == []


def test_null_data_reports_nothing() -> None:
    rng = np.random.default_rng(9)
    table = _table(4000, 9)
    bad = (rng.random(4000) > 0.9).astype(float)
    settings = SearchSettings(seed=0, bins=5)
    result = search(columns_from_table(table, {k: k == "brightness" for k in table}, settings), bad, ACC, settings)
    assert result.findings == []


def test_identical_descriptions_are_merged_into_one() -> None:
    table, bad = _planted(4000, 5)
    table["camera_copy"] = table["camera"].copy()  # the same slices under a second name
    settings = SearchSettings(seed=11, bins=5)
    result = search(columns_from_table(table, {k: k == "brightness" for k in table}, settings), bad, ACC, settings)
    texts = [f.definition.text() for f in result.findings]
    weak = [t for t in texts if "light = dusk" in t and ("camera = B" in t or "camera_copy = B" in t)]
    assert len(weak) == 1 and result.findings[texts.index(weak[0])].merged >= 1


def test_brier_uses_a_welch_test() -> None:
    n = 4000
    table, _ = _planted(n, 5)
    rng = np.random.default_rng(4)
    weak = (table["camera"] == "B") & (table["light"] == "dusk")
    loss = rng.gamma(2.0, 0.05, n) + np.where(weak, 0.3, 0.0)
    settings = SearchSettings(seed=3, bins=5)
    metric = SEARCH_METRICS["brier"]
    result = search(columns_from_table(table, {k: k == "brightness" for k in table}, settings), loss, metric, settings)
    top = result.findings[0]
    assert top.definition.text() == "camera = B AND light = dusk"
    confirm = ~_split(n, 3)
    mask = select(top.definition, table)
    a, b = loss[mask & confirm], loss[~mask & confirm]
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert top.p_raw == pytest.approx(1 - NormalDist().cdf((a.mean() - b.mean()) / se), abs=1e-12)
    assert top.value == pytest.approx(a.mean()) and top.effect == pytest.approx(a.mean() - b.mean())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 0}, "depth must be 1 to 4"),
        ({"depth": 5}, "depth must be 1 to 4"),
        ({"tolerance": -0.1}, r"tolerance must be in \[0, 1\]"),
        ({"tolerance": 1.5}, r"tolerance must be in \[0, 1\]"),
        ({"tolerance": float("nan")}, r"tolerance must be in \[0, 1\]"),
        ({"min_size": 1}, "min size"),
        ({"alpha": 1.0}, "alpha"),
    ],
)
def test_settings_out_of_range(kwargs: dict, message: str) -> None:
    with pytest.raises(SliceError, match=message):
        SearchSettings(**kwargs)


def test_manifest_attribute_kinds() -> None:
    from audit.evaluation.slices.run_folder import _is_numeric

    assert _is_numeric(np.array([str(v) for v in range(20)] + [""]), 10)  # numbers with a missing value
    assert not _is_numeric(np.array([str(v) for v in range(5)]), 10)  # too few values: categorical
    assert not _is_numeric(np.array(["1", "2", "x"] * 10), 2)  # text
    assert not _is_numeric(np.array(["nan", "inf"] + [str(v) for v in range(20)]), 10)  # not finite
