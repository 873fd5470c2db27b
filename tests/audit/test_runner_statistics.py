"""The runner's statistics settings: the slot-memory warning and the intervals a run plans."""

from __future__ import annotations

from audit.contract.config import AuditConfig
from audit.runner import SLOT_WARNING, _intervals, _warn_slot_memory


def _cfg(**evaluation) -> AuditConfig:
    return AuditConfig.model_validate(
        {"model": {"path": "m.pt"}, "data": {"manifest": "x.csv"}, "evaluation": evaluation}
    )


def test_many_slots_warn_with_the_memory_they_take(capsys):
    _warn_slot_memory(_cfg(), SLOT_WARNING, 3, 10)
    assert capsys.readouterr().err == ""
    _warn_slot_memory(_cfg(), 359, 3, 10)
    err = capsys.readouterr().err
    assert "cvaudit: warning: 359 group slots (more than 256)" in err and "MiB per condition" in err
    assert "for the 3 conditions" in err and "1000 replicates" in err


def test_planned_intervals_follow_the_settings():
    assert _intervals(_cfg()) >= {"accuracy", "ece", "debiased_l2_ce", "macro_f1"}
    assert "top_k_accuracy" not in _intervals(_cfg()) and "top_k_accuracy" in _intervals(_cfg(top_k=2))
    assert _intervals(_cfg(n_bootstrap=0)) == {"accuracy"}
