"""Config and policy files share one YAML loader with limits; no message echoes more than a few hundred characters.

Regression (issue 13): a 350-byte policy file of nested aliases made `cvaudit
policy check` write a 312 MB error line and use 4.5 GB of memory.
"""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
from click.testing import CliRunner
from results_builder import complete_results

from audit.cli import main
from audit.contract.config import load_config
from audit.contract.errors import MAX_MESSAGE, CvauditError, echo, one_line
from audit.contract.yaml_loader import MAX_CHARS, MAX_NODES, YamlError, load_yaml
from policies.loader import parse_policy


def _alias_chain(scalar: str, depth: int, width: int = 10) -> list[str]:
    lines = [f'  a0: &a0 "{scalar}"']
    for i in range(1, depth + 1):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return lines


def policy_bomb(scalar: str, depth: int) -> bytes:
    return (
        "version: 1\nname: bomb\nanchors:\n"
        + "\n".join(_alias_chain(scalar, depth))
        + f"\nrules: [{{id: r, condition: *a{depth}, metric: accuracy}}]\n"
    ).encode()


def config_bomb(scalar: str, depth: int) -> bytes:
    return (
        "anchors:\n" + "\n".join(_alias_chain(scalar, depth)) + f"\nmodel: {{path: m.pt, class_names: *a{depth}}}\n"
        "data: {manifest: m.csv}\n"
    ).encode()


def _bounded(call, *, cpu_seconds: float = 10.0, megabytes: float = 64.0) -> str:
    """Run ``call``, which must raise a one-line CvauditError within a CPU-time and memory budget.

    CPU seconds, not wall-clock time: the budget catches runaway work (an alias bomb expanded),
    not a loaded machine.
    """
    tracemalloc.start()
    started = time.process_time()
    try:
        call()
    except CvauditError as err:
        message = str(err)
    else:
        pytest.fail("no error")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.process_time() - started < cpu_seconds and peak < megabytes * 1e6
    assert "\n" not in message and len(message) <= MAX_MESSAGE
    return message


@pytest.mark.parametrize(("scalar", "depth", "expected"), [("y", 9, "values"), ("y" * 300, 4, "characters")])
def test_alias_bombs_are_refused_by_both_loaders(tmp_path, scalar, depth, expected):
    bomb = policy_bomb(scalar, depth)
    assert len(bomb) < 700
    message = _bounded(lambda: parse_policy(bomb, source="p.yaml"))
    assert "once YAML aliases are expanded" in message and expected in message
    (tmp_path / "c.yaml").write_bytes(config_bomb(scalar, depth))
    message = _bounded(lambda: load_config(tmp_path / "c.yaml"))
    assert "once YAML aliases are expanded" in message and expected in message


def test_policy_error_below_the_limits_echoes_at_most_a_few_hundred_characters():
    """Regression: the validation message quoted the whole expanded value."""
    bomb = policy_bomb("y" * 300, 3)  # 1000 copies of 300 characters: under the limits, and invalid
    message = _bounded(lambda: parse_policy(bomb, source="p.yaml"))
    assert message.startswith("p.yaml: rule 'r': key 'condition':") and len(message) < 400


def test_config_error_below_the_limits_is_short(tmp_path):
    (tmp_path / "c.yaml").write_bytes(config_bomb("y" * 300, 3))
    message = _bounded(lambda: load_config(tmp_path / "c.yaml"))
    assert len(message) < 400


def test_policy_check_cli_prints_one_short_line(tmp_path):
    (tmp_path / "p.yaml").write_bytes(policy_bomb("y" * 300, 3))
    (tmp_path / "results.json").write_text(json.dumps(complete_results({})))
    result = CliRunner().invoke(
        main, ["policy", "check", str(tmp_path / "results.json"), "--policy", str(tmp_path / "p.yaml")]
    )
    assert result.exit_code == 2 and len(result.output) < 400 and "p.yaml: rule 'r'" in result.output


def test_limits_are_as_documented():
    assert MAX_NODES == 100_000 and MAX_CHARS == 4 << 20
    with pytest.raises(YamlError, match="bytes; at most"):
        load_yaml(b"a: " + b"x" * (1 << 20), source="big.yaml")


def test_echo_and_one_line_bound_their_output():
    nested: list = []
    for _ in range(500):
        nested = [nested, "z" * 10_000]
    assert len(echo(nested)) <= 200 and len(echo("q" * 10_000)) <= 230
    assert len(one_line("w " * 100_000)) == MAX_MESSAGE


def test_a_lone_surrogate_escape_becomes_visible_text():
    """YAML's "\\ud800" escape is the one way a config or policy holds a lone surrogate: every string
    (keys too) comes out with it as visible text, so no writer fails on a class or attribute name."""
    data = load_yaml(b'data:\n  attributes: ["cam\\ud800"]\n"\\udcff": 1\n', source="c.yaml")
    assert data == {"data": {"attributes": ["cam\\ud800"]}, "\\udcff": 1}
    assert json.dumps(data, ensure_ascii=False).encode("utf-8")  # encodable
