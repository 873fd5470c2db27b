"""Blur: defocus (disk), motion (line, per-sample angle) or Gaussian, scaled to the image size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from stressors.base import ImageStressor, Params, StressorError, interpolate_level, uniform
from stressors.filters import correlate, disk_kernel, fft_filter, gaussian_kernel2d, line_kernels

#: Kernel size per severity as a fraction of the image's shorter side, per kind.
FRACTIONS: dict[str, tuple[float, ...]] = {
    "defocus": (0.01, 0.02, 0.03, 0.045, 0.06),  # disk radius
    "motion": (0.02, 0.04, 0.07, 0.10, 0.14),  # streak length
    "gaussian": (0.004, 0.008, 0.013, 0.019, 0.027),  # sigma
}
_WHAT = {"defocus": "defocus disk radius", "motion": "motion streak length", "gaussian": "Gaussian sigma"}


class Blur(ImageStressor):
    """Optical blur whose size is a fixed fraction of the image's shorter side.

    Kernel sizes scale with the image, so a severity means the same at 32 px
    and at 1024 px (at 224 px the pixel value is given in brackets):

    ========  ==============================  ===========================  =======================
    severity  defocus: disk radius            motion: streak length        gaussian: sigma
    ========  ==============================  ===========================  =======================
    1         1.0 % (2.2 px)                  2 % (4.5 px)                 0.4 % (0.9 px)
    2         2.0 % (4.5 px)                  4 % (9.0 px)                 0.8 % (1.8 px)
    3         3.0 % (6.7 px)                  7 % (15.7 px)                1.3 % (2.9 px)
    4         4.5 % (10.1 px)                 10 % (22.4 px)               1.9 % (4.3 px)
    5         6.0 % (13.4 px)                 14 % (31.4 px)               2.7 % (6.0 px)
    ========  ==============================  ===========================  =======================

    Defocus uses a pixel-coverage disk (a defocused lens' PSF); motion a
    centred, anti-aliased line (uniform camera or subject motion during the
    exposure) at an angle drawn per sample uniformly in [0, 180) degrees;
    gaussian an isotropic Gaussian (a generic soft lens or atmospheric blur).
    Borders are reflected. Defocus and gaussian run as one FFT correlation per
    batch; motion streaks (few non-zero taps) as direct sums of shifted images on
    the CPU (see :func:`stressors.filters.correlate`), with the same result.

    Fractional severities interpolate the kernel size linearly (2.5: a defocus
    radius of 2.5 % of the shorter side); a motion streak keeps the angle of
    the next integer level.

    Args:
        kind: ``"defocus"`` (default), ``"motion"`` or ``"gaussian"``.
        severities: subset of 1..5 to run.

    Raises:
        StressorError: unknown ``kind`` or bad ``severities``.
    """

    name = "blur"
    fractional_severities = True
    severity_meaning = {
        i + 1: ", ".join(f"{kind} {_WHAT[kind]} {100 * FRACTIONS[kind][i]:g}%" for kind in FRACTIONS)
        + " of the shorter side"
        for i in range(5)
    }

    def __init__(self, *, kind: str = "defocus", severities: Sequence[int] | None = None) -> None:
        super().__init__(severities=severities)
        if kind not in FRACTIONS:
            raise StressorError(f"blur: option 'kind' must be one of {sorted(FRACTIONS)}, got {kind!r}")
        self.kind = kind
        self.severity_meaning = {
            level: f"{_WHAT[kind]} {100 * FRACTIONS[kind][level - 1]:g}% of the shorter side "
            f"({FRACTIONS[kind][level - 1] * 224:.1f} px at 224 px)"
            + ("; angle uniform in [0, 180) deg per sample" if kind == "motion" else "")
            for level in range(1, 6)
        }

    @property
    def options(self) -> dict[str, Any]:
        return {"kind": self.kind, **super().options}

    def _sample(self, seeds: list[int], severity: float) -> dict[str, Tensor]:
        fraction = interpolate_level(FRACTIONS[self.kind], severity)
        values = {"fraction": torch.full((len(seeds),), fraction, dtype=torch.float64)}
        if self.kind == "motion":
            values["angle_deg"] = uniform(seeds, stream=1) * 180.0
        return values

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        size = interpolate_level(FRACTIONS[self.kind], params.severity) * min(images.shape[-2:])
        if self.kind == "defocus":
            kernels = disk_kernel(size)
        elif self.kind == "gaussian":
            kernels = gaussian_kernel2d(size)
        else:
            return correlate(images, line_kernels(size, params["angle_deg"]), border="reflect")
        return fft_filter(images, kernels, border="reflect")
