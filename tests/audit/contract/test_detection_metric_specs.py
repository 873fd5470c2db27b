"""The detection metrics in the one metric registry: every key of a detection condition's metrics has a spec."""

from __future__ import annotations

from audit.contract.metric_specs import (
    METRICS,
    detection_interval_names,
    detection_metric_names,
    gap_metric_names,
    specs,
)
from audit.contract.results import DetectionMetrics


def test_every_detection_metric_has_a_spec_and_every_spec_a_key():
    keys = [k for k in DetectionMetrics.model_fields if not k.endswith("_ci")]
    assert sorted(keys) == sorted(detection_metric_names())


def test_every_detection_interval_is_a_key():
    for name in detection_interval_names():
        assert f"{name}_ci" in DetectionMetrics.model_fields


def test_classification_lists_hold_no_detection_metric():
    classification = {s.name for s in specs()}
    assert not classification & set(detection_metric_names())
    assert "map" not in gap_metric_names()
    assert METRICS["map"].task == "detection"
