"""The ImageNet-C benchmark suite: its corruptions and the published AlexNet errors that normalise them.

Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR), define 15 benchmark corruptions, each at five severities, plus 4 held-out
corruptions for validation (:data:`HELD_OUT`), which the mean corruption error (mCE) leaves out.

The corruption error of a model ``f`` on corruption ``c`` is normalised by a baseline's errors::

    CE_c = sum_s E_{s,c}(f) / sum_s E_{s,c}(baseline)
    relative CE_c = sum_s (E_{s,c}(f) - E_clean(f)) / sum_s (E_{s,c}(baseline) - E_clean(baseline))

and mCE (relative mCE) is the mean of CE_c (relative CE_c) over the 15 benchmark corruptions.

:data:`ALEXNET_ERRORS` are the AlexNet top-1 errors on ImageNet-C per corruption and severity as
published in the README of https://github.com/hendrycks/robustness (section "AlexNet ImageNet-C
Error", added in commit 76d93933ab5ff56044973bbd4efe75cc2a795a7a on 2019-10-10, replaced by a link to
a spreadsheet in commit 5aa129ed23b6212942bf1ff63194b380cc792d0a on 2020-05-05). That table gives no
clean AlexNet error, so the relative CE against AlexNet is not computed (null); a baseline run
(``benchmark.baseline: path/to/results.json``) gives both.
"""

from __future__ import annotations

__all__ = [
    "ALEXNET_ERRORS",
    "ALEXNET_SOURCE",
    "BENCHMARK",
    "CORRUPTIONS",
    "HELD_OUT",
    "SEVERITIES",
    "SUITES",
]

#: The built-in suites (``benchmark.suite``).
SUITES = ("imagenet-c",)

#: The 15 benchmark corruptions, in the paper's order (noise, blur, weather, digital).
BENCHMARK = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)

#: The 4 held-out corruptions ("for validation"): reported, never part of mCE.
HELD_OUT = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

#: Every corruption of the suite: the 15 benchmark ones, then the held-out ones.
CORRUPTIONS = BENCHMARK + HELD_OUT

#: The severities of the benchmark.
SEVERITIES = (1, 2, 3, 4, 5)

#: Where :data:`ALEXNET_ERRORS` come from (shown in results.json and the report).
ALEXNET_SOURCE = (
    "AlexNet top-1 errors on ImageNet-C, README of github.com/hendrycks/robustness "
    "(commit 76d93933ab5ff56044973bbd4efe75cc2a795a7a, 2019-10-10)"
)

#: AlexNet's top-1 error on ImageNet-C per corruption at severities 1..5 (source: module docstring).
ALEXNET_ERRORS: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
    "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
    "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
    "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
}
