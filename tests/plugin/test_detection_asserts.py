"""``assert_map`` and ``assert_recall``: pytest helpers for detection results (issue 25), and the plugin
reading stored detection results end to end.

The numbers are those of ``tests/detection_results.py`` (clean mAP 0.62, recall 0.80 [0.75, 0.85];
camera A / B recall 0.90 / 0.70, camera C flagged insufficient_data; night@3 mAP 0.35).
"""

from __future__ import annotations

import json

import pytest
from detection_results import detection_dict, detection_results
from results_builder import complete_results, typed_results

from audit.testing import AuditResults, assert_map, assert_metric, assert_no_regression, assert_recall

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def results():
    return detection_results()


def _message(call) -> str:
    with pytest.raises(AssertionError) as err:
        call()
    return str(err.value)


def test_passing_assertions_return_quietly(results):
    assert_map(results, min=0.6)
    assert_map(results, "night@3", min=0.35)
    assert_map(results, "clean", attribute="object.size", value="large", min=0.8)
    assert_recall(results, "clean", min=0.8)
    assert_recall(results, "clean", attribute="camera", value="B", min=0.7)
    assert_recall(results, "night@3", attribute="object.size", value="small", min=0.6)


def test_assert_map_failure_names_the_condition_the_value_and_every_condition(results):
    text = _message(lambda: assert_map(results, "night@3", min=0.4))
    lines = text.splitlines()
    assert lines[0] == "cvaudit: map >= 0.4 failed for night@3"
    assert "observed: 0.350" in lines[1] and "n: 200 images, 500 objects" in lines[1]
    assert "per condition: clean 0.620, night@3 0.350" in text
    assert "camera" in text and "(insufficient data)" in text  # the camera table flags camera=C


def test_assert_recall_failure_shows_interval_counts_and_the_group_table(results):
    text = _message(lambda: assert_recall(results, "clean", min=0.85))
    assert "recall >= 0.85 failed for clean" in text
    assert "95% CI: [0.750, 0.850]" in text and "(tp 400, missed 100)" in text
    text = _message(lambda: assert_recall(results, "clean", attribute="camera", value="B", min=0.75))
    assert "failed for clean, camera=B" in text and "(tp 178, missed 77)" in text
    table = [line.split() for line in text.splitlines()[2:]]
    assert table[0][:3] == ["camera", "images", "objects"]
    assert table[1][:4] == ["A", "96", "240", "0.900"] and table[2][:4] == ["B", "99", "255", "0.700"]


def test_a_group_flagged_insufficient_data_fails(results):
    text = _message(lambda: assert_recall(results, "clean", attribute="camera", value="C", min=0.1))
    assert "flagged insufficient_data (fewer than 30 objects)" in text


def test_a_null_value_fails():
    def no_map(d):
        d["detection"]["conditions"][1]["metrics"]["map"] = None

    text = _message(lambda: assert_map(detection_results(no_map), "night@3", min=0.0))
    assert "observed: None" in text and "map is null here" in text


def test_unknown_targets_and_bad_arguments(results):
    with pytest.raises(KeyError, match="conditions: \\['clean', 'night@3'\\]"):
        assert_map(results, "fog@1", min=0.1)
    with pytest.raises(KeyError, match="values: \\['large', 'medium', 'small'\\]"):
        assert_recall(results, attribute="object.size", value="tiny", min=0.1)
    with pytest.raises(KeyError, match="no attribute 'lens'"):
        assert_recall(results, attribute="lens", value="x", min=0.1)
    with pytest.raises(ValueError, match="both 'attribute' and 'value'"):
        assert_recall(results, attribute="camera", min=0.1)


def test_classification_results_are_refused_and_refuse_detection_helpers(results):
    classification = typed_results({"conditions": []})
    with pytest.raises(
        ValueError, match="assert_map reads detection results.*classification results: use assert_metric"
    ):
        assert_map(classification, min=0.5)
    with pytest.raises(ValueError, match="assert_recall reads detection results"):
        assert_recall(classification, min=0.5)
    with pytest.raises(ValueError, match="these are detection results.*assert_map\\(\\) or assert_recall\\(\\)"):
        assert_metric(results, "accuracy", ">=", 0.5)
    with pytest.raises(ValueError, match="assert_no_regression reads classification results"):
        assert_no_regression(results, results)


def test_results_from_a_path_and_a_dict(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(complete_results(detection_dict())))
    assert_map(str(path), min=0.6)
    assert_recall(complete_results(detection_dict()), min=0.8)
    assert AuditResults.load(path).detection_group("clean", "camera", "A").metrics.recall == 0.90


TESTS = """
from audit.testing import assert_map, assert_recall


def test_clean(cvaudit_results):
    assert cvaudit_results.task == "detection"
    assert_map(cvaudit_results, "clean", min=0.6)


def test_camera_b(cvaudit_results):
    assert_recall(cvaudit_results, "clean", attribute="camera", value="B", min=0.8)
"""


def test_plugin_reads_stored_detection_results(pytester, tmp_path):
    import policies

    data = complete_results(detection_dict())
    outcome = policies.check_policy(typed_results(data), policies.load_policy("detection-gate"), findings=[])
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**data, "policy": outcome}))
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("--cvaudit-results", str(path), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cvaudit: recall >= 0.8 failed for clean, camera=B*",
            "*largest recall gap: object.size under clean: 35.0 pp (worst small)*",
        ]
    )
