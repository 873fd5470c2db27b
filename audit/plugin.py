"""cvaudit's pytest plugin (registered through the ``pytest11`` entry point).

Thin on purpose: options, fixtures, one marker and the terminal summary. torch
and the audit machinery are imported only when a test asks for results.

- ``--cvaudit-config PATH``: run that audit once per session;
  ``--cvaudit-results PATH``: reuse a stored ``results.json`` instead;
  ``--cvaudit-out DIR``: where the run writes its outputs (default: a temp dir);
  ``--cvaudit-mlflow EXPERIMENT``: log the session's audit to MLflow (the run's
  config, or the stored results' folder), as ``cvaudit run --mlflow`` does.
  The run is :func:`audit.runner.run`, the library's: it prints nothing and leaves the
  C allocator alone unless the config sets ``allocator`` (``cvaudit run`` uses ``retain``).
- fixture ``cvaudit_results`` (session): an :class:`audit.testing.AuditResults`.
- marker ``@pytest.mark.cvaudit(policy="ci-gate")`` on a test that takes the
  ``cvaudit_rule`` argument expands into one test per policy rule; call
  ``cvaudit_rule.check()`` in its body (blocking failures fail, warnings warn,
  ``insufficient_data`` skips).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from audit.contract.results import Results

_RESULTS_KEY = pytest.StashKey[Any]()


class CvauditWarning(UserWarning):
    """A non-blocking policy rule did not pass."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cvaudit", "model audits with cvaudit")
    group.addoption("--cvaudit-config", default=None, metavar="PATH", help="Run this cvaudit config once per session.")
    group.addoption("--cvaudit-results", default=None, metavar="PATH", help="Reuse a stored results.json.")
    group.addoption("--cvaudit-out", default=None, metavar="DIR", help="Output folder of the session's audit run.")
    group.addoption(
        "--cvaudit-mlflow",
        default=None,
        metavar="EXPERIMENT",
        help="Log the session's audit to this MLflow experiment (extra cvaudit[mlflow]).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cvaudit(policy='ci-gate'): expand the test (taking `cvaudit_rule`) into one test per policy rule"
    )


def _load_results(config: pytest.Config, tmp_factory: pytest.TempPathFactory) -> Any:
    from audit.contract.errors import CvauditError
    from audit.testing import AuditResults

    results_path = config.getoption("--cvaudit-results")
    config_path = config.getoption("--cvaudit-config")
    experiment = config.getoption("--cvaudit-mlflow")
    if results_path:
        path = Path(results_path)
        if not path.is_file():
            raise pytest.UsageError(f"--cvaudit-results: {path}: file not found")
        try:
            results = AuditResults.load(path)
        except CvauditError as err:
            raise pytest.UsageError(f"--cvaudit-results: {err}") from None
        if experiment:
            _track_stored(results.results, path, experiment)
        return results
    if not config_path:
        return None
    from audit.contract.config import load_config
    from audit.runner import run
    from audit.tracking import require_tracking, with_experiment

    out = Path(config.getoption("--cvaudit-out") or tmp_factory.mktemp("cvaudit"))
    try:  # the library's run: the C allocator is left alone unless the config sets ``allocator``
        cfg = load_config(Path(config_path))
        if experiment:
            cfg = with_experiment(cfg, experiment)
        require_tracking(cfg)
        outcome = run(cfg, config_path=Path(config_path), out_dir=out)
    except CvauditError as err:
        pytest.fail(f"cvaudit could not run: {err}", pytrace=False)
    return AuditResults(outcome.results, source=str(out / "results.json"))


def _track_stored(results: Results, path: Path, experiment: str) -> None:
    """Log stored results (and the outputs beside them) to MLflow; params record where they came from."""
    from audit.contract.config import MlflowConfig
    from audit.tracking import track_run

    params = {
        "results": str(path.resolve()),
        "seed": str(results.seed),
        "model.path": str(results.model.path),
        "data.path": str(results.dataset.path),
        "policy": str(results.policy.name if results.policy is not None else None),
    }
    track_run(MlflowConfig(experiment=experiment), results=results, out_dir=path.parent, params=params)


@pytest.fixture(scope="session")
def cvaudit_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The session's audit results (runs the audit on first use)."""
    config = request.config
    if _RESULTS_KEY not in config.stash:
        config.stash[_RESULTS_KEY] = _load_results(config, tmp_path_factory)
    results = config.stash[_RESULTS_KEY]
    if results is None:
        pytest.skip("no audit: pass --cvaudit-config PATH or --cvaudit-results PATH")
    return results


@dataclass(frozen=True)
class RuleOutcome:
    """One policy rule's outcome; ``check()`` turns it into a test result."""

    rule: dict[str, Any]
    policy: str

    def check(self) -> None:
        __tracebackhide__ = True
        r = self.rule
        from audit.contract.fmt import observed, threshold

        detail = (
            f"policy {self.policy}, rule {r['id']}: {r.get('message', '')}\n"
            f"  observed: {observed(r)}  required: {threshold(r)}  blocking: {r.get('blocking')}"
        )
        if r["status"] in ("insufficient_data", "not_applicable"):
            pytest.skip(f"{r['status'].replace('_', ' ')}: {detail}")
        if r["status"] == "fail" and r.get("blocking"):
            raise AssertionError(detail)
        if r["status"] in ("fail", "warn"):
            warnings.warn(CvauditWarning(detail), stacklevel=2)


def _policy_of(marker: pytest.Mark) -> str:
    return str(marker.kwargs.get("policy", marker.args[0] if marker.args else "ci-gate"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("cvaudit")
    if marker is None or "cvaudit_rule" not in metafunc.fixturenames:
        return
    import policies

    policy = policies.load_policy(_policy_of(marker))
    ids = [rule.id for rule in policy.rules]
    metafunc.parametrize("cvaudit_rule", ids, ids=ids, indirect=True)


_OUTCOMES = pytest.StashKey[dict]()


@pytest.fixture()
def cvaudit_rule(request: pytest.FixtureRequest, cvaudit_results: Any) -> RuleOutcome:
    """The outcome of one policy rule (see the ``cvaudit`` marker)."""
    import policies

    marker = request.node.get_closest_marker("cvaudit")
    name = _policy_of(marker) if marker else "ci-gate"
    cache = request.config.stash.setdefault(_OUTCOMES, {})
    if name not in cache:
        cache[name] = policies.check_policy(cvaudit_results.results, policies.load_policy(name))
    rule_id = request.param
    rule = next(r for r in cache[name]["rules"] if r["id"] == rule_id)
    return RuleOutcome(rule, name)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The verdict, every blocking failure (as ``cvaudit run`` prints them), then the largest gaps."""
    stored = config.stash.get(_RESULTS_KEY, None)
    if stored is None or stored.results.policy is None:
        return
    results = stored.results
    from audit.contract.fmt import failure_lines, pp, verdict_line
    from audit.contract.text import neutralise

    tr = terminalreporter
    tr.section("cvaudit")
    tr.write_line(neutralise(verdict_line(results)))
    for line in failure_lines(results):
        tr.write_line(neutralise(line))
    if results.detection is not None:  # a detector: the largest recall gaps at the operating point
        tests = sorted((g for g in results.detection.gap_tests if g.gap), key=lambda g: -(g.gap or 0.0))[:3]
        for g in tests:
            tr.write_line(
                neutralise(
                    f"  largest recall gap: {g.attribute} under {g.condition}: {pp(g.gap)} (worst {g.worst_group})"
                )
            )
    fairness = results.fairness or []
    gaps = sorted((f for f in fairness if f.accuracy_gap), key=lambda f: -(f.accuracy_gap or 0.0))[:3]
    for f in gaps:
        tr.write_line(
            neutralise(
                f"  largest gap: {f.attribute} under {f.condition}: {pp(f.accuracy_gap)} (worst {f.worst_group})"
            )
        )
