"""The runner's statistics settings: the slot-memory warning and the intervals a run plans."""

from __future__ import annotations

import warnings

from audit.contract.config import AuditConfig
from audit.runner import SLOT_WARNING, SlotMemoryWarning, _intervals, _warn_slot_memory


def _cfg(**evaluation) -> AuditConfig:
    return AuditConfig.model_validate(
        {"model": {"path": "m.pt"}, "data": {"manifest": "x.csv"}, "evaluation": evaluation}
    )


def test_many_slots_warn_with_the_memory_they_take(capsys):
    """A warning (the library prints nothing; the CLI's boundary shows it as one `cvaudit: warning:` line)."""
    from audit.cli.boundary import command_boundary

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_slot_memory(_cfg(), SLOT_WARNING, 3, 10)
        assert caught == []
        _warn_slot_memory(_cfg(), 359, 3, 10)
    assert capsys.readouterr().err == ""
    (warning,) = caught
    assert issubclass(warning.category, SlotMemoryWarning)
    message = str(warning.message)
    assert "359 group slots (more than 256)" in message and "MiB per condition" in message
    assert "for the 3 conditions" in message and "1000 replicates" in message
    with command_boundary():
        _warn_slot_memory(_cfg(), 359, 3, 10)
    assert "cvaudit: warning: 359 group slots (more than 256)" in capsys.readouterr().err


def test_planned_intervals_follow_the_settings():
    assert _intervals(_cfg()) >= {"accuracy", "ece", "debiased_l2_ce", "macro_f1"}
    assert "top_k_accuracy" not in _intervals(_cfg()) and "top_k_accuracy" in _intervals(_cfg(top_k=2))
    assert _intervals(_cfg(n_bootstrap=0)) == {"accuracy"}
