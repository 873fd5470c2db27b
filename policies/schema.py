"""Pydantic models of a policy file (``version: 1``).

Every model forbids unknown keys. Cross-field problems are raised as
:class:`pydantic_core.PydanticCustomError` of type ``policy_key`` whose
context names the offending key, so :mod:`policies.loader` can turn any
validation error into a one-line :class:`~policies.errors.PolicyError`.

A policy has three parts:

- ``rules``: ``kind: metric`` rules (a threshold on a number in
  results.json) and ``kind: finding`` rules (fail when a named check, e.g. an
  adversarial sanity check, has status ``fail``);
- ``governance``: which data-governance checks to run over the dataset
  manifest, and which of them block;
- ``report``: which example images the report may show.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from audit.contract.conditions import canonical_condition, format_severity
from audit.contract.metric_specs import (
    EQUALIZED_ODDS_DIFFERENCE,
    gap_metric_names,
    rate_difference_names,
    ratio_metric_names,
)

SUPPORTED_VERSIONS = (1,)

Judge = Literal["point", "ci_lower", "ci_upper"]
TestMode = Literal["detect", "demonstrate", "point"]
Aggregate = Literal["gap", "ratio", "worst"]
InsufficientMode = Literal["fail", "warn", "pass"]
ImageMode = Literal["none", "anonymized", "raw"]
PersonalImageMode = Literal["none", "anonymized"]
PiiPattern = Literal["email", "phone", "national_id"]

_RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
#: a stressor name (a config entry's name or label, which may hold "." and ":") or a glob of names
_STRESSOR = r"[A-Za-z0-9_.:*?!\[\]-]+"
_CONDITION = re.compile(rf"^(clean|\*|{_STRESSOR}@[^@\s]+)$")

DEFAULT_PII_COLUMNS = (
    "name",
    "full_name",
    "first_name",
    "last_name",
    "surname",
    "email",
    "e_mail",
    "email_address",
    "phone",
    "phone_number",
    "telephone",
    "mobile",
    "address",
    "street",
    "date_of_birth",
    "dob",
    "ssn",
    "national_id",
    "passport",
    "passport_number",
    "tax_id",
    "driver_license",
)


def _number(value: Any) -> Any:
    """Accept a finite int or float (not a bool, not a string, not NaN/inf) for a threshold."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("not_a_number", "expected a number, got {got}", {"got": repr(value)})
    try:
        number = float(value)
    except OverflowError:  # an int past float's range (10**400): OverflowError is not a validation error
        raise PydanticCustomError(
            "not_a_number", "expected a finite number, got an integer too large for a float"
        ) from None
    if not math.isfinite(number):
        raise PydanticCustomError("not_a_number", "expected a finite number, got {got}", {"got": repr(value)})
    return number


Number = Annotated[float, BeforeValidator(_number)]


def _group_value(value: Any) -> Any:
    """An unquoted numeric group value (``value: 1``) means the string ``"1"``; an unquoted YAML boolean
    (``value: true``, e.g. a detection's ``object.occluded``) means ``"true"`` or ``"false"``, as a
    detection audit writes an object attribute's boolean values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


GroupValue = Annotated[str, BeforeValidator(_group_value)]


def check_strptime_pattern(pattern: str) -> None:
    """Raise ``ValueError`` when a strptime ``pattern`` cannot parse what it formats
    (a bad directive such as ``%Q``, or a pattern that does not round-trip)."""
    sample = datetime(2001, 2, 3, 4, 5, 6)
    text = sample.strftime(pattern)
    datetime.strptime(text, pattern)


def _key_error(key: str, message: str, *, rule_id: str | None = None) -> PydanticCustomError:
    context = {"key": key, "message": message}
    if rule_id is not None:
        context["rule_id"] = rule_id
    return PydanticCustomError("policy_key", "{message}", context)


def _bound_outcome(*, never: bool) -> str:
    return "can never be met" if never else "is met whatever the data (the rule judges nothing)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricRule(_Strict):
    """A threshold on one number of results.json.

    Target selection (exactly one of the first three):

    - ``condition``: a condition id or a glob (``clean``, ``night@3``,
      ``night@*``); or ``stressor`` (+ optional ``severity``);
    - ``section`` (+ ``entry`` for a list): any other top-level key of
      results.json, e.g. ``section: robustness, entry: night, metric: auc``
      or ``section: dataset, metric: num_skipped``.

    Within a condition: no ``attribute`` judges ``metrics.<metric>``;
    ``attribute`` + ``value`` judges one group; ``attribute`` + ``aggregate``
    judges a gap, ratio or the worst group across groups; ``attribute`` alone
    reads ``<metric>`` from the ``fairness`` entry of that condition and
    attribute (e.g. ``equalized_odds_difference``). ``attribute`` may be a
    glob (``"*"``: every attribute).

    A glob may match several targets; the rule takes the worst of them.
    """

    kind: Literal["metric"] = "metric"
    id: str = Field(pattern=_RULE_ID)
    metric: str = Field(min_length=1)
    description: str | None = None
    clause: str | None = None
    condition: str | None = None
    stressor: str | None = Field(default=None, pattern=rf"^{_STRESSOR}$")
    severity: Number | None = None
    section: str | None = None
    entry: str | None = None
    attribute: str | None = None
    value: GroupValue | None = None
    aggregate: Aggregate | None = None
    min: Number | None = None
    max: Number | None = None
    judge: Judge = "point"
    blocking: StrictBool = True
    min_samples: int | None = Field(default=None, ge=0)
    min_positives: int | None = Field(default=None, ge=0)
    test: TestMode | None = None
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    required: StrictBool = False
    on_insufficient_data: InsufficientMode | None = None

    @model_validator(mode="after")
    def _check_tests(self) -> MetricRule:
        difference = self.difference
        if self.test in ("detect", "demonstrate"):
            if difference is None:
                raise _key_error(
                    "test",
                    "'test' applies to a difference between groups: aggregate gap or ratio, or "
                    "equalized_odds_difference / demographic_parity_difference / <metric>_gap / <metric>_ratio "
                    "with 'attribute'",
                )
            if (difference[1] == "gap") != (self.op == "max"):
                want = "max" if difference[1] == "gap" else "min"
                raise _key_error("test", f"a tested {difference[1]} rule sets '{want}' (or use test: point)")
            if self.judge != "point":
                raise _key_error("judge", "a tested rule judges its test, not an interval bound: use judge: point")
        if self.min_positives is not None and self.metric != EQUALIZED_ODDS_DIFFERENCE.name:
            raise _key_error("min_positives", "'min_positives' applies to equalized_odds_difference rules")
        if "confidence" in self.model_fields_set and self.test_mode == "point":
            raise _key_error("confidence", "'confidence' applies to tested rules (test: detect or demonstrate)")
        return self

    @property
    def difference(self) -> tuple[str, Literal["gap", "ratio"]] | None:
        """``(statistic, kind)`` when the rule judges a difference between groups, else None."""
        if self.attribute is None or self.value is not None or self.section is not None:
            return None
        if self.aggregate in ("gap", "ratio"):
            return self.metric, self.aggregate  # type: ignore[return-value]
        if self.aggregate is not None:
            return None
        if self.metric in rate_difference_names():
            return self.metric, "gap"
        for kind in ("gap", "ratio"):
            base = self.metric.removesuffix(f"_{kind}")
            if base != self.metric and base in (gap_metric_names() if kind == "gap" else ratio_metric_names()):
                return base, kind  # type: ignore[return-value]
        return None

    @property
    def test_mode(self) -> TestMode:
        """How the rule is decided: its ``test``, or ``detect`` for a difference rule with the natural bound."""
        if self.test is not None:
            return self.test
        difference = self.difference
        if difference is None or self.judge != "point" or (difference[1] == "gap") != (self.op == "max"):
            return "point"
        return "detect"

    @model_validator(mode="after")
    def _check_shape(self) -> MetricRule:
        if (self.min is None) == (self.max is None):
            key = "max" if self.min is not None else "min"
            raise _key_error(key, "set exactly one of 'min' or 'max' (write two rules for a range)")
        if self.section is not None:
            for key in ("condition", "stressor", "severity", "attribute", "value", "aggregate"):
                if getattr(self, key) is not None:
                    raise _key_error(key, f"'{key}' cannot be combined with 'section'")
        else:
            if self.condition is None and self.stressor is None:
                raise _key_error("condition", "set 'condition', 'stressor' or 'section'")
            if self.condition is not None and self.stressor is not None:
                raise _key_error("stressor", "set either 'condition' or 'stressor', not both")
            if self.entry is not None:
                raise _key_error("entry", "'entry' needs 'section'")
        if self.condition is not None and _CONDITION.match(self.condition):
            # one spelling per condition: "pgd@2/255" and "pgd@0.0078431" name pgd@0.007843
            object.__setattr__(self, "condition", canonical_condition(self.condition))
        elif self.condition is not None:
            raise _key_error(
                "condition",
                f"expected 'clean', '<stressor>@<severity>' or a glob such as 'night@*', got {self.condition!r}",
            )
        if self.severity is not None and self.stressor is None:
            raise _key_error("severity", "'severity' needs 'stressor'")
        if self.value is not None and self.attribute is None:
            raise _key_error("value", "'value' needs 'attribute'")
        if self.aggregate is not None and (self.attribute is None or self.value is not None):
            raise _key_error("aggregate", "'aggregate' needs 'attribute' and no 'value'")
        if self.value is not None and any(ch in self.attribute for ch in "*?["):
            raise _key_error("attribute", "a glob 'attribute' cannot be combined with 'value'")
        return self

    @model_validator(mode="after")
    def _check_bounds(self) -> MetricRule:
        # a difference between groups is >= 0 (a ratio, smallest over largest, lies in [0, 1]): a bound
        # outside that range is never met or always met, and the tests of differences refuse it (a
        # negative tolerance)
        difference = self.difference
        if difference is None:
            return self
        statistic, kind = difference
        if self.threshold < 0:
            outcome = _bound_outcome(never=self.op == "max")
            raise _key_error(
                self.op,
                f"a {kind} of {statistic} is never negative, so {self.op} {self.threshold:g} {outcome}; "
                "expected a bound >= 0",
            )
        if kind == "ratio" and self.threshold > 1:
            outcome = _bound_outcome(never=self.op == "min")
            raise _key_error(
                self.op,
                f"a ratio of {statistic} (smallest group over largest) is at most 1, so {self.op} "
                f"{self.threshold:g} {outcome}; expected a bound between 0 and 1",
            )
        # a blocking rule that can never fail gates nothing (a gate of such rules would pass on nothing)
        always = (self.op == "min" and self.threshold == 0) or (
            kind == "ratio" and self.op == "max" and self.threshold == 1
        )
        if always and self.blocking:
            raise _key_error(
                self.op,
                f"a {kind} of {statistic} is always {'>= 0' if self.op == 'min' else '<= 1'}, so {self.op} "
                f"{self.threshold:g} {_bound_outcome(never=False)}; a blocking rule needs a bound it can fail",
            )
        return self

    @property
    def selector(self) -> str:
        """The condition selector of the rule, however it is spelled: ``condition`` as its canonical id or
        glob, or ``stressor`` + ``severity`` as ``<stressor>@<severity>`` (``<stressor>@*`` without a
        severity); empty for a ``section`` rule. Every look-up of a rule's conditions matches this one
        text (:func:`policies.targets.selector_matches`), so the spellings cannot drift apart.

        >>> MetricRule(id="a", stressor="night", severity=2, metric="accuracy", min=0.5).selector
        'night@2'
        """
        if self.condition is not None:
            return self.condition
        if self.stressor is None:
            return ""
        return f"{self.stressor}@{'*' if self.severity is None else format_severity(self.severity)}"

    @property
    def optional(self) -> bool:
        """The rule says explicitly (``required: false``) that its target may be absent from the run."""
        return "required" in self.model_fields_set and not self.required

    @property
    def threshold(self) -> float:
        """The bound (``min`` or ``max``)."""
        return self.min if self.min is not None else self.max  # type: ignore[return-value]

    @property
    def op(self) -> Literal["min", "max"]:
        """``"min"`` when the observed value must be at least the threshold."""
        return "min" if self.min is not None else "max"


class FindingRule(_Strict):
    """Fail when a named check (a glob) has a status listed in ``fail_on``.

    Checks are looked up among the governance findings and in
    ``results["adversarial_checks"]`` (or only in ``section`` when set); an
    entry's name is its ``check``, ``id`` or ``name`` key.
    """

    kind: Literal["finding"]
    id: str = Field(pattern=_RULE_ID)
    check: str = Field(min_length=1)
    description: str | None = None
    clause: str | None = None
    section: str | None = None
    fail_on: list[Literal["fail", "warn"]] = Field(default_factory=lambda: ["fail"], min_length=1)
    blocking: StrictBool = True
    required: StrictBool = False

    @property
    def optional(self) -> bool:
        """The rule says explicitly (``required: false``) that its check may be absent from the run."""
        return "required" in self.model_fields_set and not self.required


def _rule_kind(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("kind", "metric")
    return getattr(value, "kind", "metric")


Rule = Annotated[
    Annotated[MetricRule, Tag("metric")] | Annotated[FindingRule, Tag("finding")],
    Discriminator(_rule_kind),
]


class CheckConfig(_Strict):
    """Settings every governance check has."""

    enabled: StrictBool = True
    blocking: StrictBool = False
    clause: str | None = None


class RetentionCheck(CheckConfig):
    """Capture date + ``period_days`` must lie after ``now``."""

    period_days: int = Field(gt=0)


class ConsentCheck(CheckConfig):
    """Consent must be recorded (a ``granted`` value) and not withdrawn."""

    granted: list[str] = Field(default_factory=lambda: ["yes", "y", "true", "1", "granted", "given", "obtained"])
    withdrawn: list[str] = Field(
        default_factory=lambda: [
            "withdrawn",
            "revoked",
            "no",
            "n",
            "false",
            "0",
            "refused",
            "denied",
        ]
    )


class RecordedCheck(CheckConfig):
    """A value (purpose, lawful basis) must be recorded, and be in ``allowed`` when set."""

    allowed: list[str] | None = None


class PiiCheck(CheckConfig):
    """Forbidden PII columns, and a conservative regex scan of string values.

    A column is forbidden when its normalised name is in ``columns``, or (with
    ``match_tokens``, the default) when its name tokens look like personal
    data (see :func:`policies.pii.pii_column_kind`, e.g. ``patient_name``,
    ``customer_email``, ``"E-mail Address"``), unless it is in ``allow_columns``.
    """

    columns: list[str] = Field(default_factory=lambda: list(DEFAULT_PII_COLUMNS))
    match_tokens: StrictBool = True
    allow_columns: list[str] = Field(default_factory=list)
    scan: StrictBool = True
    patterns: list[PiiPattern] = Field(default_factory=lambda: ["email", "phone", "national_id"])
    scan_columns: list[str] | None = None


class BiometricCheck(CheckConfig):
    """Rows marked as biometric (e.g. a face) need a recorded basis."""

    true_values: list[str] = Field(default_factory=lambda: ["true", "yes", "y", "1"])


class RegionCheck(CheckConfig):
    """Storage/processing region columns must hold an ``allowed`` value."""

    allowed: list[str] = Field(min_length=1)
    columns: list[str] | None = None


class GovernanceColumns(_Strict):
    """Manifest column names the checks read."""

    capture_date: str = "capture_date"
    consent: str = "consent"
    purpose: str = "purpose"
    lawful_basis: str = "lawful_basis"
    region: str = "region"
    contains_face: str = "contains_face"
    biometric_basis: str = "biometric_basis"


#: the governance checks a policy may configure (keys of ``governance:`` holding a :class:`CheckConfig`)
_GOVERNANCE_CHECKS = (
    "retention",
    "consent",
    "purpose",
    "lawful_basis",
    "pii",
    "biometric",
    "region",
    "unparseable_dates",
    "future_dates",
)


class GovernanceConfig(_Strict):
    """The ``governance:`` section; a check runs only when its key is present."""

    id_column: str = "sample_id"
    date_format: str = "iso"
    max_ids: int = Field(default=20, ge=0)
    columns: GovernanceColumns = Field(default_factory=GovernanceColumns)
    retention: RetentionCheck | None = None
    consent: ConsentCheck | None = None
    purpose: RecordedCheck | None = None
    lawful_basis: RecordedCheck | None = None
    pii: PiiCheck | None = None
    biometric: BiometricCheck | None = None
    region: RegionCheck | None = None
    unparseable_dates: CheckConfig = Field(default_factory=CheckConfig)
    future_dates: CheckConfig = Field(default_factory=CheckConfig)

    @model_validator(mode="after")
    def _check_date_format(self) -> GovernanceConfig:
        if self.date_format not in ("iso", "day_first", "month_first") and "%" not in self.date_format:
            raise _key_error(
                "date_format",
                "expected 'iso', 'day_first', 'month_first' or a strftime pattern such as "
                f"'%d/%m/%Y', got {self.date_format!r}",
            )
        if "%" in self.date_format:
            try:
                check_strptime_pattern(self.date_format)
            except ValueError as exc:
                raise _key_error("date_format", f"not a usable strptime pattern {self.date_format!r} ({exc})") from None
        return self

    def date_check_blocking(self, section: str) -> bool:
        """Whether ``unparseable_dates`` / ``future_dates`` block: their own
        ``blocking`` when set explicitly; otherwise an unparseable date inherits
        ``retention``'s ``blocking`` (a date that cannot be read cannot be shown
        to be within retention), and a future date does not block."""
        settings: CheckConfig = getattr(self, section)
        if "blocking" in settings.model_fields_set:
            return settings.blocking
        if section == "unparseable_dates" and self.retention is not None:
            return self.retention.blocking
        return False


class ReportConfig(_Strict):
    """What the report may show: ``images`` caps the requested image mode;
    ``images_with_personal_data`` (``none`` by default, at most ``anonymized``;
    ``raw`` is refused) caps it whenever a PII finding counts samples or the
    manifest marks biometric samples."""

    images: ImageMode = "anonymized"
    images_with_personal_data: PersonalImageMode = "none"


class Policy(_Strict):
    """A whole policy file.

    ``on_insufficient_data`` says what a rule that cannot be judged (a group
    too small, a value that is null, an interval that is missing) does to the
    verdict: ``fail`` (the default: a gate fails closed) turns it into
    ``fail`` for a blocking rule (``warn`` for a non-blocking one); ``warn``
    reports it as ``insufficient_data`` without failing; ``pass`` reports it as
    ``pass`` with a note. A rule may override it. Governance checks that
    cannot be judged (a column they need is absent) follow the same setting.
    """

    version: int
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str | None = None
    report_only: StrictBool = False
    on_insufficient_data: InsufficientMode = "fail"
    rules: list[Rule] = Field(default_factory=list)
    governance: GovernanceConfig | None = None
    report: ReportConfig = Field(default_factory=ReportConfig)

    _source: str = PrivateAttr(default="<policy>")
    _sha256: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _check_policy(self) -> Policy:
        if self.version not in SUPPORTED_VERSIONS:
            raise _key_error(
                "version",
                f"unsupported policy version {self.version}; this cvaudit reads version 1",
            )
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise _key_error("id", "duplicate rule id", rule_id=rule.id)
            seen.add(rule.id)
        self._check_gates()
        return self

    def _check_gates(self) -> None:
        """A report-only policy blocks nothing, so its ``pass`` is never mistaken for a gate's (that a
        gate has a blocking rule that applies is checked when it judges: :func:`policies.validate.check_gate`)."""
        if not self.report_only:
            return
        for rule in self.rules:
            if rule.blocking:
                raise _key_error(
                    "blocking",
                    "a report_only policy blocks nothing: set 'blocking: false' (rules block by default) "
                    "or remove 'report_only: true'",
                    rule_id=rule.id,
                )
        for section in self.blocking_governance:
            raise _key_error(
                f"governance.{section}.blocking",
                "a report_only policy blocks nothing: set 'blocking: false' or remove 'report_only: true'",
            )

    @property
    def blocking_governance(self) -> list[str]:
        """The ``governance:`` checks this policy runs and lets block the verdict (their section names)."""
        governance = self.governance
        out = []
        for section in _GOVERNANCE_CHECKS if governance is not None else ():
            check = getattr(governance, section)
            if section in ("unparseable_dates", "future_dates"):  # run with retention, may inherit its blocking
                on = governance.retention is not None and governance.retention.enabled and check.enabled
                blocking = on and governance.date_check_blocking(section)
            else:
                blocking = check is not None and check.enabled and check.blocking
            if blocking:
                out.append(section)
        return out

    @property
    def source(self) -> str:
        """Where the policy was read from (a path or ``builtin:<name>``)."""
        return self._source

    @property
    def sha256(self) -> str:
        """SHA-256 of the policy file bytes (of a canonical dump when built in memory)."""
        if not self._sha256:
            dump = self.model_dump_json(exclude_defaults=True).encode("utf-8")
            self._sha256 = hashlib.sha256(dump).hexdigest()
        return self._sha256
