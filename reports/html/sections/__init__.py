"""The report's sections, in page order: each one a view function and a template include.

To add a section, write its view (``(ctx) -> dict | None``) and its template and
:func:`register` a :class:`Section`; see :mod:`reports.html.sections.registry`.
"""

from __future__ import annotations

from reports.html.sections import closing, corruptions, detection, findings, measures, overview, physical, slices
from reports.html.sections.registry import Section, register, registered, temporarily, unregister

__all__ = ["Section", "register", "registered", "temporarily", "unregister"]

for _section in (
    Section("verdict", "Verdict", overview.verdict, "verdict.html.j2"),
    Section("summary", "Executive summary", overview.summary, "summary.html.j2"),
    Section("identity", "What was tested", overview.identity, "identity.html.j2"),
    Section("policy", "Policy rules", overview.policy, "policy.html.j2"),
    Section("robustness", "Robustness", measures.robustness, "robustness.html.j2"),
    Section("detection", "Detection", detection.detection, "detection.html.j2"),
    Section("corruptions", "Corruption benchmark", corruptions.corruption_benchmark, "corruptions.html.j2"),
    Section("breaking-points", "Breaking points", measures.breaking_points, "breaking_points.html.j2", in_toc=False),
    Section("adversarial", "Adversarial robustness", measures.adversarial, "adversarial.html.j2"),
    Section("physical", "Physical threats", physical.physical, "physical.html.j2"),
    Section("calibration", "Calibration", measures.calibration, "calibration.html.j2"),
    Section("groups", "Subgroups", measures.groups, "groups.html.j2"),
    Section("slices", "Weak slices", slices.slices, "slices.html.j2"),
    Section("errors", "Mistakes", findings.errors, "errors.html.j2"),
    Section("fairness", "Fairness", findings.fairness, "fairness.html.j2"),
    Section("governance", "Data governance", findings.governance, "governance.html.j2"),
    Section("gallery", "Stressor gallery", findings.gallery, "gallery.html.j2"),
    Section("method", "Method notes", closing.method, "method.html.j2"),
    Section("compliance", "Documentation duties", closing.no_data, "compliance.html.j2"),
    Section("limitations", "Limitations", closing.limitations, "limitations.html.j2"),
    Section("signature", "Signature", closing.signature, "signature.html.j2"),
):
    register(_section)
