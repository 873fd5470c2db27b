"""results.json ``imagenet_c``: the corruption benchmark's summary (config ``benchmark:``; absent before 1.6).

A classifier gets CE, relative CE, mCE and relative mCE (Hendrycks & Dietterich 2019) against the
baseline the config names; a detector gets mPC and rPC (Michaelis et al. 2019). The formulas are in
:mod:`audit.contract.corruption_suite` and docs/imagenet-c.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from audit.contract.results.base import Node

__all__ = ["BenchmarkBaseline", "BenchmarkCorruption", "BenchmarkPreview", "ImageNetCResults"]


class BenchmarkBaseline(Node):
    """What the corruption errors are divided by."""

    kind: Literal["alexnet", "results"] = Field(
        description="alexnet: the published AlexNet errors; results: a baseline run's results.json"
    )
    source: str = Field(description="where the baseline errors come from (the citation, or the results.json path)")
    sha256: str | None = Field(default=None, description="SHA-256 of the baseline results.json; null for alexnet")
    model: str | None = Field(default=None, description="the baseline run's model path; null for alexnet")
    clean_error: float | None = Field(
        default=None, description="the baseline's clean error (1 - accuracy); null for alexnet (not published)"
    )
    clean_map: float | None = Field(default=None, description="the baseline's clean mAP (detection)")


class BenchmarkCorruption(Node):
    """One corruption of the suite."""

    corruption: str = Field(description="the corruption (stressor name); its conditions are '<corruption>@<severity>'")
    held_out: bool = Field(description="one of the 4 held-out corruptions (never part of mCE or mPC)")
    severities: list[int | float] = Field(description="the severities run, ascending")
    errors: list[float] | None = Field(
        default=None, description="classification: the top-1 error 1 - accuracy at each severity"
    )
    baseline_errors: list[float] | None = Field(
        default=None, description="classification: the baseline's error at each severity"
    )
    ce: float | None = Field(
        default=None, description="classification: sum_s error / sum_s baseline error; null where the sum is 0"
    )
    relative_ce: float | None = Field(
        default=None,
        description="classification: sum_s (error - clean error) / sum_s (baseline error - baseline clean error); "
        "null against alexnet (no published clean error) or where the denominator is 0",
    )
    unnormalized_ce: float | None = Field(
        default=None, description="classification: the mean error over the severities (no baseline)"
    )
    maps: list[float | None] | None = Field(default=None, description="detection: mAP at each severity")
    mean_map: float | None = Field(default=None, description="detection: the mean mAP over the severities")


class BenchmarkPreview(Node):
    """One corruption at one severity, on one of the audit's own images (as the report may show it)."""

    condition: str = Field(description="the condition id '<corruption>@<severity>'")
    image: str = Field(description="a data:image/png;base64 URI, encoded as a gallery image (anonymized or raw)")


class ImageNetCResults(Node):
    """The ImageNet-C benchmark over the run's suite conditions (config ``benchmark``)."""

    suite: Literal["imagenet-c"] = Field(description="the suite (config benchmark.suite)")
    task: Literal["classification", "detection"] = Field(description="classification: CE/mCE; detection: mPC/rPC")
    severities: list[int | float] = Field(description="the severities run for every corruption")
    complete: bool = Field(
        description="all 15 benchmark corruptions ran at severities 1-5: mce / mpc are the published benchmark's"
    )
    baseline: BenchmarkBaseline | None = Field(default=None, description="classification: the normaliser")
    clean_error: float | None = Field(default=None, description="classification: 1 - clean accuracy")
    corruptions: list[BenchmarkCorruption] = Field(description="one entry per corruption run, in the suite's order")
    mce: float | None = Field(
        default=None, description="classification: mean CE over the benchmark corruptions run (not the held-out ones)"
    )
    relative_mce: float | None = Field(
        default=None, description="classification: mean relative CE over the benchmark corruptions run"
    )
    held_out_mce: float | None = Field(default=None, description="classification: mean CE over the held-out run")
    held_out_relative_mce: float | None = Field(
        default=None, description="classification: mean relative CE over the held-out corruptions run"
    )
    clean_map: float | None = Field(default=None, description="detection: P_clean, the clean mAP")
    mpc: float | None = Field(
        default=None,
        description="detection: mean over the benchmark corruptions run and their severities of mAP (Michaelis "
        "et al. 2019)",
    )
    rpc: float | None = Field(default=None, description="detection: mpc / clean_map")
    held_out_mpc: float | None = Field(default=None, description="detection: mPC over the held-out corruptions run")
    previews: list[BenchmarkPreview] | None = Field(
        default=None, description="each condition on one audit image; present when the policy allows images"
    )
