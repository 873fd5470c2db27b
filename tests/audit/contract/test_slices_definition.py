"""The slice definition model: text, id, select, and the definitions it refuses."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from audit.contract.slices import Predicate, SliceDefinition, SliceError, WatchedSlice, select, slice_id


def _d(*predicates: dict) -> SliceDefinition:
    return SliceDefinition(all=list(predicates))


def test_text_forms() -> None:
    d = _d({"attribute": "camera", "equals": "B"}, {"attribute": "brightness", "min": 0.0, "max": 0.2071})
    assert d.text() == "camera = B AND 0 <= brightness < 0.2071"
    assert Predicate(attribute="w", max=640.0).text() == "w < 640"
    assert Predicate(attribute="w", min=123456.7).text() == "w >= 123457"
    assert Predicate(attribute="site", equals="a b").text() == 'site = "a b"'
    assert Predicate(attribute="site", equals="").text() == 'site = ""'


def test_id_is_stable_and_order_free() -> None:
    a = _d({"attribute": "camera", "equals": "B"}, {"attribute": "light", "equals": "dusk"})
    b = _d({"attribute": "light", "equals": "dusk"}, {"attribute": "camera", "equals": "B"})
    c = _d({"attribute": "camera", "equals": "C"}, {"attribute": "light", "equals": "dusk"})
    assert slice_id(a) == slice_id(b) != slice_id(c)
    assert slice_id(a).startswith("slice-") and len(slice_id(a)) == 16


def test_select_half_open_and_missing_values() -> None:
    d = _d({"attribute": "camera", "equals": "B"}, {"attribute": "x", "min": 1.0, "max": 2.0})
    table = {
        "camera": np.array(["B", "B", "B", "A", "B", "B"]),
        "x": np.array([1.0, 2.0, 1.5, 1.5, np.nan, 0.99]),
    }
    assert select(d, table).tolist() == [True, False, True, False, False, False]
    # numbers stored as text (a manifest column) select the same; text that is no number is in no numeric slice
    text_table = {"camera": table["camera"], "x": np.array(["1", "2", "1.5", "1.5", "", "abc"])}
    assert select(d, text_table).tolist() == [True, False, True, False, False, False]
    assert select(_d({"attribute": "x", "min": 1.5}), table).tolist() == [False, True, True, True, False, False]


def test_select_unknown_attribute_is_one_line() -> None:
    with pytest.raises(SliceError, match="no attribute 'night' in the data") as info:
        select(_d({"attribute": "night", "equals": "1"}), {"camera": np.array(["A"])})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "predicates",
    [
        [{"attribute": "a", "equals": "1", "min": 0.0}],
        [{"attribute": "a"}],
        [{"attribute": "a", "min": 2.0, "max": 1.0}],
        [{"attribute": "a", "min": float("inf")}],
        [{"attribute": "a", "equals": "1"}, {"attribute": "a", "equals": "2"}],
        [{"attribute": f"a{i}", "equals": "1"} for i in range(5)],
        [],
    ],
)
def test_refused_definitions(predicates: list) -> None:
    with pytest.raises(ValidationError):
        SliceDefinition(all=predicates)


def test_watched_slice_needs_a_rule_id() -> None:
    assert WatchedSlice(id="slice-1", all=[{"attribute": "a", "equals": "1"}]).id == "slice-1"
    with pytest.raises(ValidationError):
        WatchedSlice(id="bad id", all=[{"attribute": "a", "equals": "1"}])
