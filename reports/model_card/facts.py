"""The one code path from a run folder to the numbers and statements every model card shows.

:func:`read_run` reads ``results.json`` once through the contract's one bounded
reader (:func:`audit.contract.load.read_results_bytes`, then
:func:`audit.contract.parse_results`), hashes the bytes it parsed, and reads the run's
``attestation.dsse.json`` when the run was signed; :func:`card_facts` turns the
typed results into :class:`CardFacts`. The Hugging Face, Model Card Toolkit
and Markdown renderers read nothing else, so the three cards cannot disagree
with each other or with results.json. An object detector's results
(``task: detection``) fill :attr:`CardFacts.detection`
(:func:`reports.model_card.detection_facts.detection_facts`) instead of the
classifier's conditions and fairness entries, which stay empty.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.contract.errors import CvauditError
from audit.contract.files import read_bounded
from audit.contract.load import parse_results, read_results_bytes
from audit.contract.results import (
    AdversarialCheck,
    DatasetInfo,
    EvaluationSettings,
    FairnessEntry,
    GovernanceFinding,
    ModelInfo,
    PolicyOutcome,
    Results,
)
from reports.attestation import MAX_ATTESTATION_BYTES
from reports.model_card.detection_facts import DetectionFacts, detection_facts

__all__ = [
    "AttestationFacts",
    "CardFacts",
    "ConditionFacts",
    "ModelCardError",
    "SliceFacts",
    "card_facts",
    "read_run",
]

ATTESTATION_FILE = "attestation.dsse.json"


class ModelCardError(CvauditError):
    """A run folder a model card cannot be made from: one line naming the file and the problem."""


@dataclass(frozen=True)
class SliceFacts:
    """The metrics of one slice: a condition overall, or one group under a condition.

    Rates are shares in [0, 1] exactly as in results.json; None where undefined (n = 0).
    """

    condition: str
    attribute: str | None
    value: str | None
    n: int
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    ece: float | None = None
    ece_ci: tuple[float, float] | None = None
    insufficient_data: bool = False

    @property
    def name(self) -> str:
        """``clean`` or ``night@3``; with a group ``clean | camera=A``."""
        return self.condition if self.attribute is None else f"{self.condition} | {self.attribute}={self.value}"


@dataclass(frozen=True)
class ConditionFacts:
    """One evaluated condition with its groups and its accuracy drop from clean."""

    id: str
    stressor: str | None
    severity: int | float
    model_aware: bool
    probe: bool
    meaning: str | None
    overall: SliceFacts
    groups: list[SliceFacts]
    clean_accuracy: float | None = None
    drop: float | None = None


@dataclass(frozen=True)
class AttestationFacts:
    """What a signed run's attestation says about the results the card was made from."""

    sha256: str
    key_ids: list[str]
    results_sha256: str
    subjects: list[str]


@dataclass(frozen=True)
class CardFacts:
    """Everything a model card states, from one results.json (and its attestation)."""

    model_name: str
    model: ModelInfo
    dataset: DatasetInfo
    evaluation: EvaluationSettings
    tool_version: str
    started: str
    finished: str
    seed: int
    conditions: list[ConditionFacts]
    fairness: list[FairnessEntry]
    policy: PolicyOutcome | None
    findings: list[GovernanceFinding]
    adversarial_checks: list[AdversarialCheck]
    results_sha256: str
    attestation: AttestationFacts | None = None
    notes: list[str] = field(default_factory=list)
    task: str = "classification"
    detection: DetectionFacts | None = None

    @property
    def clean(self) -> ConditionFacts:
        """The classifier's clean condition (a detector's is ``detection.clean``)."""
        return self.conditions[0]

    @property
    def stressed(self) -> list[ConditionFacts]:
        """Every condition but clean and the attack sanity probes."""
        return [c for c in self.conditions[1:] if not c.probe]


def _interval(value: Any) -> tuple[float, float] | None:
    if value is None or value[0] is None or value[1] is None:
        return None
    return float(value[0]), float(value[1])


def _slice(condition: str, metrics: Any, attribute: str | None = None, value: str | None = None, **extra) -> SliceFacts:
    return SliceFacts(
        condition=condition,
        attribute=attribute,
        value=value,
        n=metrics.n,
        accuracy=metrics.accuracy,
        accuracy_ci=_interval(metrics.accuracy_ci),
        balanced_accuracy=metrics.balanced_accuracy,
        macro_f1=metrics.macro_f1,
        ece=metrics.ece,
        ece_ci=_interval(metrics.ece_ci),
        **extra,
    )


def _model_name(results: Results) -> str:
    path = Path(str(results.model.path or "model"))
    if results.model.format == "huggingface":
        return path.parent.name or path.name
    return path.stem or path.name


def card_facts(
    results: Results, *, results_sha256: str, attestation: AttestationFacts | None = None, name: str | None = None
) -> CardFacts:
    """Collect what the cards state from typed results.

    Args:
        results: Results read by :func:`audit.contract.load_results`.
        results_sha256: SHA-256 of the results.json file they were read from.
        attestation: The run's attestation (signed runs), checked by :func:`read_run`.
        name: The model's name in the cards; default the model folder's (Hugging Face) or
            file's name.

    Returns:
        The card facts; conditions in results order (clean first). For detection results
        ``conditions``, ``fairness`` and ``adversarial_checks`` are empty and ``detection`` is set.
    """
    detection = detection_facts(results) if results.task == "detection" else None
    return CardFacts(
        model_name=name or _model_name(results),
        model=results.model,
        dataset=results.dataset,
        evaluation=results.evaluation,
        tool_version=results.tool.version,
        started=results.provenance.started,
        finished=results.provenance.finished,
        seed=results.seed,
        conditions=_conditions(results) if detection is None else [],
        fairness=list(results.fairness or []),
        policy=results.policy,
        findings=results.governance.findings,
        adversarial_checks=list(results.adversarial_checks or []),
        results_sha256=results_sha256,
        attestation=attestation,
        notes=list(results.notes),
        task=results.task,
        detection=detection,
    )


def _conditions(results: Results) -> list[ConditionFacts]:
    """A classifier's conditions with their groups and accuracy drops."""
    meanings = {
        s.name: {str(k): v for k, v in s.severity_meaning.items()} for s in results.stressors if s.severity_meaning
    }
    drops = {r.condition: r for r in results.robustness or []}
    conditions = []
    for c in results.conditions or []:
        row = drops.get(c.id)
        conditions.append(
            ConditionFacts(
                id=c.id,
                stressor=c.stressor,
                severity=c.severity,
                model_aware=c.model_aware,
                probe=bool(c.probe),
                meaning=meanings.get(c.stressor or "", {}).get(str(c.severity)) if c.stressor else None,
                overall=_slice(c.id, c.metrics),
                groups=[
                    _slice(c.id, g.metrics, g.attribute, g.value, insufficient_data=g.insufficient_data)
                    for g in c.groups
                ],
                clean_accuracy=row.clean_accuracy if row is not None else None,
                drop=row.drop if row is not None else None,
            )
        )
    return conditions


def _attestation(folder: Path, results_sha256: str) -> AttestationFacts | None:
    """The run's attestation, which must list results.json with the digest of the file read."""
    path = folder / ATTESTATION_FILE
    if not os.path.lexists(path):
        return None
    data = read_bounded(path, limit=MAX_ATTESTATION_BYTES, what="attestation", error=ModelCardError)
    try:
        envelope = json.loads(data)
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
        key_ids = [str(s["keyid"]) for s in envelope["signatures"]]
    except (json.JSONDecodeError, binascii.Error, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ModelCardError(f"{path}: not a cvaudit attestation ({type(err).__name__})") from None
    if "results.json" not in subjects:
        raise ModelCardError(f"{path}: does not attest results.json")
    if subjects["results.json"] != results_sha256:
        raise ModelCardError(
            f"{path}: attests a different results.json (sha256 {subjects['results.json'][:12]}…, the file has "
            f"{results_sha256[:12]}…); the results changed after signing: run `cvaudit verify` on the folder"
        )
    return AttestationFacts(
        sha256=hashlib.sha256(data).hexdigest(),
        key_ids=key_ids,
        results_sha256=results_sha256,
        subjects=sorted(subjects),
    )


def read_run(run: str | Path, *, name: str | None = None) -> CardFacts:
    """Read a run folder (or its results.json) into card facts.

    Args:
        run: The run's output folder, or the results.json in it.
        name: The model's name in the cards (see :func:`card_facts`).

    Returns:
        The facts; ``attestation`` is set when the folder holds ``attestation.dsse.json``.

    results.json is read once with the bound :data:`audit.contract.load.MAX_RESULTS_BYTES` and
    the attestation with :data:`reports.attestation.MAX_ATTESTATION_BYTES`, each checked on its
    descriptor first (:func:`audit.contract.files.read_bounded`): a larger file, a device such as
    ``/dev/zero``, a FIFO or a socket is refused before a byte is read.

    Raises:
        ResultsError: results.json is missing, not a regular file, over the limit or not valid
            results (through the one reader).
        ModelCardError: the results have no policy verdict yet, or the attestation is malformed
            or attests another results.json.
    """
    path = Path(run)
    results_path = path / "results.json" if path.is_dir() else path
    data = read_results_bytes(results_path)  # bounded; the digest is of the very bytes parsed
    results = parse_results(data, source=str(results_path))
    if results.policy is None:
        raise ModelCardError(f"{results_path}: the results have no policy verdict (not a finished run)")
    digest = hashlib.sha256(data).hexdigest()
    attestation = _attestation(results_path.parent, digest)
    return card_facts(results, results_sha256=digest, attestation=attestation, name=name)
