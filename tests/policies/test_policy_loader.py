"""Loading policies: built-ins, YAML files and one-line errors for bad input."""

from __future__ import annotations

import hashlib

import pytest
from conftest import typed

from audit.contract.yaml_loader import YamlError
from policies import PolicyError, available_policies, check_policy, load_policy
from policies.schema import FindingRule, MetricRule

_GOOD = """
version: 1
name: mine
rules:
  - id: clean-accuracy
    condition: clean
    metric: accuracy
    min: 0.8
"""


def test_builtins_are_listed_and_load():
    assert available_policies() == ["ci-gate", "demo", "detection-gate", "high-risk"]
    for name in available_policies():
        policy = load_policy(name)
        assert policy.name == name
        assert policy.version == 1
        assert policy.source == f"builtin:{name}"
        assert len(policy.sha256) == 64
        assert policy.rules


def test_high_risk_rules_all_cite_a_clause():
    policy = load_policy("high-risk")
    assert policy.on_insufficient_data == "fail"
    for rule in policy.rules:
        assert rule.clause and ("Art. 1" in rule.clause or "MEASURE 2." in rule.clause), rule.id
    for key in ("retention", "consent", "purpose", "lawful_basis", "pii", "biometric", "region"):
        check = getattr(policy.governance, key)
        assert check.blocking and check.clause, key


def test_demo_has_blocking_rules_and_warnings():
    policy = load_policy("demo")
    assert any(r.blocking for r in policy.rules)
    assert any(not r.blocking for r in policy.rules)
    assert policy.governance is not None and policy.governance.retention is not None


def test_load_from_path_hashes_the_file_bytes(write_policy):
    path = write_policy(_GOOD)
    policy = load_policy(str(path))
    assert policy.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert isinstance(policy.rules[0], MetricRule)
    assert policy.rules[0].judge == "point" and policy.rules[0].blocking is True
    assert load_policy(path).sha256 == policy.sha256


def test_finding_rules_parse(write_policy):
    policy = load_policy(write_policy(_GOOD + "  - {id: masking, kind: finding, check: gradient_masking}\n"))
    assert isinstance(policy.rules[1], FindingRule)
    assert policy.rules[1].fail_on == ["fail"]


def _error(write_policy, text: str) -> PolicyError:
    path = write_policy(text, name="bad.yaml")
    with pytest.raises(PolicyError) as info:
        load_policy(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return info.value


def test_malformed_yaml(write_policy):
    path = write_policy("version: 1\nname: x\nrules: [\n  - id: a\n", name="bad.yaml")
    with pytest.raises(YamlError) as info:
        load_policy(str(path))
    assert str(info.value).startswith(f"{path}: malformed YAML at line 4")


def test_not_a_mapping(write_policy):
    assert "expected a mapping" in str(_error(write_policy, "- just\n- a list\n"))


def test_unknown_key_in_rule_names_rule_and_key(write_policy):
    error = _error(write_policy, _GOOD + "    minimum: 0.9\n")
    assert (error.rule_id, error.key) == ("clean-accuracy", "minimum")
    assert "rule 'clean-accuracy'" in str(error) and "key 'minimum'" in str(error)
    assert "unknown key" in str(error) and "valid:" in str(error)


def test_unknown_top_level_key(write_policy):
    error = _error(write_policy, _GOOD + "colour: blue\n")
    assert error.rule_id is None and error.key == "colour"


def test_unknown_nested_governance_key(write_policy):
    error = _error(write_policy, _GOOD + "governance:\n  retention: {period_days: 10, period: 3}\n")
    assert error.key == "governance.retention.period"
    assert "unknown key (valid: " in str(error) and "period_days" in str(error)


def test_unknown_top_level_key_lists_the_valid_keys(write_policy):
    error = _error(write_policy, _GOOD + "colour: blue\n")
    assert "(valid: " in str(error) and "rules" in str(error)


def test_threshold_of_the_wrong_type(write_policy):
    error = _error(write_policy, _GOOD.replace("min: 0.8", "min: high"))
    assert (error.rule_id, error.key) == ("clean-accuracy", "min")
    assert "expected a number" in str(error) and "'high'" in str(error)


def test_string_number_is_not_coerced(write_policy):
    error = _error(write_policy, _GOOD.replace("min: 0.8", "min: '0.8'"))
    assert error.key == "min"


def test_blocking_must_be_a_bool(write_policy):
    error = _error(write_policy, _GOOD + "    blocking: maybe\n")
    assert (error.rule_id, error.key) == ("clean-accuracy", "blocking")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("    max: 0.9\n", "max"),
        ("    stressor: night\n", "stressor"),
        ("    value: A\n", "value"),
        ("    aggregate: gap\n", "aggregate"),
        ("    judge: median\n", "judge"),
        ("    min_samples: -1\n", "min_samples"),
    ],
)
def test_inconsistent_rule_keys(write_policy, extra, key):
    error = _error(write_policy, _GOOD + extra)
    assert (error.rule_id, error.key) == ("clean-accuracy", key)


def test_bad_condition_id(write_policy):
    error = _error(write_policy, _GOOD.replace("condition: clean", "condition: night3"))
    assert error.key == "condition" and "'<stressor>@<severity>'" in str(error)


def test_unknown_rule_kind(write_policy):
    error = _error(write_policy, _GOOD + "  - {id: x, kind: magic, check: y}\n")
    assert (error.rule_id, error.key) == ("x", "kind")


def test_rule_without_id_is_named_by_position(write_policy):
    error = _error(write_policy, _GOOD + "  - {condition: clean, metric: ece, max: 0.1}\n")
    assert (error.rule_id, error.key) == ("#2", "id")


def test_duplicate_rule_id(write_policy):
    error = _error(write_policy, _GOOD + "  - {id: clean-accuracy, condition: clean, metric: ece, max: 0.1}\n")
    assert error.rule_id == "clean-accuracy" and "duplicate" in str(error)


def test_unsupported_version(write_policy):
    error = _error(write_policy, _GOOD.replace("version: 1", "version: 2"))
    assert error.key == "version" and "version 1" in str(error)


def test_missing_version(write_policy):
    error = _error(write_policy, _GOOD.replace("version: 1\n", ""))
    assert error.key == "version"


def test_bad_date_format(write_policy):
    error = _error(write_policy, _GOOD + "governance: {date_format: european}\n")
    assert error.key == "governance.date_format"


def test_unknown_name_or_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="not a policy file and not a built-in"):
        load_policy("no-such-policy")
    with pytest.raises(PolicyError, match="missing.yaml: policy file not found"):
        load_policy(str(tmp_path / "missing.yaml"))


def test_in_memory_policy_works(results):
    policy = load_policy("demo").model_copy()
    assert check_policy(typed(results), policy)["name"] == "demo"
