"""The detection report's attack part: robust mAP against ε per norm (attack and noise lines) and the checks."""

from __future__ import annotations

from detection_results import detection_results

from audit.evaluation.detection.attack_checks import AttackCurve, CurvePoint, attack_result, attack_sanity_checks
from reports.html import render_html
from reports.html.detection_charts import attack_charts


def _attack(name: str, norm: str, eps: list[float], maps: list[float], noise: list[float]) -> dict:
    points = [CurvePoint(e, m, 0.0 if e >= 0.3 else 0.5, n, 0.7, 1.0, 0.4, None if e == 0 else 1.0)
              for e, m, n in zip(eps, maps, noise)]  # fmt: skip
    curve = AttackCurve(name, norm, "vanishing", 0.3 if norm == "linf" else 10.0, maps[0], 0.8, points)
    return attack_result(curve, attack_sanity_checks(curve)).to_dict()


def _with_attacks(d):
    d["detection"]["attacks"] = [
        _attack("detection_pgd", "linf", [0, 2 / 255, 8 / 255, 0.3], [0.62, 0.31, 0.05, 0.0], [0.62, 0.61, 0.6, 0.2]),
        _attack("detection_pgd_l2", "l2", [0, 1.0], [0.62, 0.4], [0.62, 0.45]),
    ]


def test_attack_charts_one_per_norm_with_noise_lines_and_the_numbers():
    results = detection_results(_with_attacks)
    views = attack_charts(results.detection.attacks)
    assert [v.name for v in views] == [
        "Robust mAP against the L\u221e attack budget epsilon",
        "Robust mAP against the L2 attack budget epsilon",
    ]
    linf = views[0].table
    assert [r[0] for r in linf.rows] == ["detection_pgd (vanishing)", "detection_pgd (vanishing): random noise"]
    assert linf.rows[0][1] == [f"{v:.3f}" for v in (0.62, 0.31, 0.05, 0.0)]
    assert linf.rows[1][1][-1] == "0.200"
    assert "31.0% at \u03b5 = 0.007843" in str(views[0].svg)


def test_the_report_shows_the_attacks_and_their_checks_and_nothing_without_them():
    html = render_html(detection_results(_with_attacks))
    assert "Gradient attacks on the detector (robust mAP)" in html
    assert html.count("detection_attack.stronger_than_noise") == 2
    assert "detection_pgd_l2: largest epsilon 1.0 &lt; 10" in html  # the L2 probe is missing: insufficient data
    assert "Gradient attacks on the detector" not in render_html(detection_results())


def test_the_summary_names_each_attack_and_the_worst_condition_is_not_an_attack_probe():
    from reports.html.detection_prose import attack_sentences, worst_condition

    def edit(d):
        _with_attacks(d)
        probe = {**d["detection"]["conditions"][1], "id": "detection_pgd@0.3", "stressor": "detection_pgd"}
        probe["metrics"] = {**probe["metrics"], "map": 0.0}
        d["detection"]["conditions"].append(probe)

    det = detection_results(edit).detection
    assert worst_condition(det).id == "night@3"
    plain = [t.replace("\ue000", "").replace("\ue001", "") for t in attack_sentences(det)]  # user-text marks
    assert plain == [
        "Under the gradient attack detection_pgd (vanishing, L\u221e) mAP fell to 0.310 at \u03b5 = 0.007843"
        " (random noise of that size: 0.610); no sanity check failed (5 of 5 passed).",
        "Under the gradient attack detection_pgd_l2 (vanishing, L2) mAP fell to 0.400 at \u03b5 = 1"
        " (random noise of that size: 0.450); no sanity check failed (4 of 5 passed).",
    ]
