"""Stressor traits are class attributes that every caller reads; no stressor name is written elsewhere.

The scan below fails when a registered stressor's name appears in runner, evaluator, policy or
report code as a string literal or an identifier (docstrings and comments may name them as
examples). The trait tests give a plugin attack a new name and check that each caller reacts to
its declared traits without any list being edited.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import stressors
from audit.evaluation import breaking_points
from audit.evaluation.adversarial_checks import ITERATIVE_STRONGER, LARGE_EPSILON, sanity_checks
from audit.evaluation.conditions import Condition
from stressors.attacks.common import Attack

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("audit", "reports", "policies")

#: (file, name) pairs that may name a stressor, and why.
ALLOWED = {
    # The demo's own config lists the stressors it runs.
    ("audit/demo.py", "*"),
    # The detection demo's too (and its training's photometric jitter has a `contrast`).
    ("audit/demo_detection.py", "*"),
    # `cvaudit init` writes a starter config that names example stressors.
    ("audit/cli/init.py", "*"),
    # results.json's breaking-point `method` value for DeepFool: a published schema value (changing it is a
    # MAJOR version); the attack class declares it as `minimal_perturbation_method`.
    ("audit/contract/results/breaking_points.py", "deepfool"),
    ("reports/templates/breaking_points.html.j2", "deepfool"),
    # The statistical contrast of a pair test, not the stressor.
    ("audit/contract/gaptests.py", "contrast"),
    # The ImageNet-C protocol: its published list of corruptions and AlexNet's published errors per corruption.
    ("audit/contract/corruption_suite.py", "*"),
    # image_properties.csv's columns: measured brightness and contrast of each image, not the stressors.
    ("audit/evaluation/slices/run_folder.py", "brightness"),
    ("audit/evaluation/slices/run_folder.py", "contrast"),
    ("audit/contract/image_properties.py", "brightness"),
    ("audit/contract/image_properties.py", "contrast"),
    ("audit/evaluation/image_properties.py", "brightness"),
    ("audit/evaluation/image_properties.py", "contrast"),
    # The statistical contrast of a pair test (power at the hardest pair), not the stressor.
    ("audit/contract/power.py", "contrast"),
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _python_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            found.add(node.value)
        elif isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name.split(".")[-1])
    return found


def _template_names(path: Path) -> set[str]:
    return set(re.findall(r"""['"]([A-Za-z_][A-Za-z0-9_]*)['"]""", path.read_text(encoding="utf-8")))


def _product_files():
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
                yield path


def test_no_stressor_name_in_runner_evaluator_policy_or_report_code():
    names = set(stressors.available())
    assert {"pgd", "fgsm", "night"} <= names
    hits = []
    for path in _product_files():
        rel = path.relative_to(ROOT).as_posix()
        if (rel, "*") in ALLOWED:
            continue
        found = _python_names(path) if path.suffix == ".py" else _template_names(path)
        hits += [f"{rel}: {name!r}" for name in sorted(found & names) if (rel, name) not in ALLOWED]
    assert not hits, "stressor names outside stressors/ (read a trait instead):\n" + "\n".join(hits)


def test_allow_list_entries_are_still_needed():
    names = set(stressors.available())
    for rel, name in ALLOWED:
        path = ROOT / rel
        assert path.is_file(), rel
        if name != "*":
            found = _python_names(path) if path.suffix == ".py" else _template_names(path)
            assert name in names and name in found, (rel, name)


# --------------------------------------------------------------------------- each trait is read


class Sweep(Attack):
    """A plugin attack with a new name: iterative, L∞, stronger than single-step, bisectable."""

    name = "sweep_plugin"
    iterative = True
    stronger_than_single_step = True
    zero_accuracy_epsilon = 0.2
    bisectable = True


class Shot(Attack):
    """A plugin single-step L∞ attack."""

    name = "shot_plugin"


class Minimal(Attack):
    name = "minimal_plugin"
    iterative = True
    minimal_perturbation_method = "deepfool"
    needs_gradients = False


def cond(stressor, severity, accuracy, n=1000):
    cid = "clean" if stressor is None else f"{stressor}@{severity:.4g}"
    return {"id": cid, "stressor": stressor, "severity": severity, "metrics": {"n": n, "accuracy": accuracy}}


def test_a_plugin_attack_gets_the_checks_its_traits_ask_for():
    conditions = [
        cond(None, 0, 0.95),
        cond("sweep_plugin", 0.0, 0.95),
        cond("sweep_plugin", 0.1, 0.60),
        cond("sweep_plugin", 0.25, 0.01),
        cond("shot_plugin", 0.1, 0.50),
    ]
    findings = sanity_checks(conditions, attacks={"sweep_plugin": Sweep, "shot_plugin": Shot})
    large = [f for f in findings if f["check"] == LARGE_EPSILON]
    assert [(f["attack"], f["status"]) for f in large] == [("sweep_plugin", "pass")]  # 0.25 >= its 0.2
    stronger = [f for f in findings if f["check"] == ITERATIVE_STRONGER]
    assert [(f["attack"], f["status"]) for f in stronger] == [("sweep_plugin", "fail")]  # 0.60 > 0.50 at 0.1


def test_iterative_stronger_only_compares_attacks_of_the_same_norm():
    class SweepL2(Sweep):
        norm = "l2"

    conditions = [cond(None, 0, 0.95), cond("a", 0.1, 0.6), cond("b", 0.1, 0.5)]
    findings = sanity_checks(conditions, attacks={"a": SweepL2, "b": Shot})
    assert not [f for f in findings if f["check"] == ITERATIVE_STRONGER]


def test_a_plugin_without_iterative_gets_no_large_epsilon_check():
    findings = sanity_checks([cond(None, 0, 0.9), cond("x", 0.5, 0.9)], attacks={"x": Shot})
    assert not [f for f in findings if f["check"] == LARGE_EPSILON]


def test_the_default_reads_the_registered_classes():
    conditions = [cond(None, 0, 0.95), cond("pgd", 0.5, 0.0), cond("fgsm", 0.5, 0.1), cond("night", 3, 0.9)]
    attacks = {f["attack"] for f in sanity_checks(conditions)}
    assert attacks == {"pgd", "fgsm"}
    large = [f["attack"] for f in sanity_checks(conditions) if f["check"] == LARGE_EPSILON]
    assert large == ["pgd"]


def test_probe_conditions_follow_the_traits():
    assert Condition("a@0.2", Sweep(), 0.2, "a").probe
    assert not Condition("a@0.1", Sweep(), 0.1, "a").probe
    assert not Condition("b@0.5", Shot(), 0.5, "b").probe  # not iterative: no large-ε probe
    assert Condition("b@0", Shot(), 0.0, "b").probe


def test_breaking_point_refinement_follows_the_traits():
    assert breaking_points._refinable_attack(Sweep)
    assert not breaking_points._refinable_attack(Shot)
    assert breaking_points._minimal_method(Minimal) == "deepfool"
    assert breaking_points._minimal_method(Sweep) is None


def test_gradient_free_attacks_are_found_by_their_trait(monkeypatch):
    from audit import runner

    classes = {"sweep_plugin": Sweep, "minimal_plugin": Minimal, "shot_plugin": Shot}
    monkeypatch.setattr(stressors, "available", lambda: sorted(classes))
    monkeypatch.setattr(stressors, "factory", classes.__getitem__)
    assert runner._gradient_free_attacks() == ["minimal_plugin"]


@pytest.mark.parametrize("name", [n for n in stressors.available() if stressors.factory(n).model_aware])
def test_every_registered_attack_declares_its_traits(name):
    cls = stressors.factory(name)
    for trait in ("needs_gradients", "iterative", "zero_accuracy_epsilon", "stronger_than_single_step", "bisectable"):
        assert hasattr(cls, trait), (name, trait)
