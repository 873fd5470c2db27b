"""ImageNet-C compatible corruptions, batched in torch.

Severity tables are those of Hendrycks & Dietterich (2019), "Benchmarking
Neural Network Robustness to Common Corruptions and Perturbations" (ICLR),
as published in the ``imagecorruptions`` package 1.1.2
(``imagecorruptions/corruptions.py``; the same constants are in its
maintained copy ``corrupt-tta`` 0.1.7). Results at 224x224 match that code up
to float32 rounding and the random draws (which are keyed per sample here,
see :mod:`stressors.base`).

Image size: the tables assume 224x224 inputs. Noise, contrast and brightness
do not depend on size. The blur radii and sigmas are multiplied by
``min(H, W) / reference_size`` (``reference_size=224`` by default), so a
severity blurs the same fraction of the picture at 32 px and at 1024 px; pass
``reference_size=None`` to use the tables' pixel values verbatim at any size.

Motion blur: the original ImageNet-C used Wand/ImageMagick's ``motion_blur``;
``imagecorruptions`` replaced it by a numpy equivalent (``_motion_blur``: a
one-sided line of ``2 * radius + 1`` taps with half-Gaussian weights of the
given sigma, at an angle drawn uniformly in [-45, 45] degrees, edges
replicated). :class:`MotionBlur` builds that same line kernel per sample and
applies it as a direct sum of its 2 * radius + 1 shifted taps (on the CPU; an FFT
correlation elsewhere, see :func:`stressors.filters.correlate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from stressors.base import ImageStressor, Params, StressorError, interpolate_level, noise_like, uniform
from stressors.filters import correlate, disk_kernel, fft_filter

# Constants of imagecorruptions 1.1.2, corruptions.py (severity 1..5).
GAUSSIAN_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
DEFOCUS_RADIUS_ALIAS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
MOTION_RADIUS_SIGMA = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)

#: Elements per chunk for elementwise passes on the CPU (about 2 MB of float32: L2/L3-resident).
_CACHE_ELEMENTS = 1 << 19


class _ImageNetC(ImageStressor):
    """Shared settings: the severities and the reference size for spatial scaling."""

    def __init__(self, *, severities: Sequence[int] | None = None, reference_size: int | None = 224) -> None:
        super().__init__(severities=severities)
        if reference_size is not None and (
            isinstance(reference_size, bool) or not isinstance(reference_size, int) or reference_size <= 0
        ):
            raise StressorError(
                f"{self.name}: option 'reference_size' must be a positive int or null, got {reference_size!r}"
            )
        self.reference_size = reference_size

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "reference_size": self.reference_size}

    def _scale(self, images: Tensor) -> float:
        if self.reference_size is None:
            return 1.0
        return min(images.shape[-2:]) / self.reference_size


class GaussianNoise(_ImageNetC):
    """ImageNet-C ``gaussian_noise``: additive white Gaussian noise, then clipping.

    Severity 1..5 is the noise standard deviation in [0, 1] units:
    0.08, 0.12, 0.18, 0.26, 0.38 (about 20 to 97 grey levels of 255). Size-independent.
    Fractional severities interpolate sigma linearly (the noise field is that of the next level).
    """

    name = "gaussian_noise"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"additive Gaussian noise, sigma = {s} ({s * 255:.0f}/255)" for i, s in enumerate(GAUSSIAN_NOISE_SIGMA)
    }

    def _sample(self, seeds: list[int], severity: float) -> dict[str, Tensor]:
        sigma = interpolate_level(GAUSSIAN_NOISE_SIGMA, severity)
        return {"sigma": torch.full((len(seeds),), sigma, dtype=torch.float64)}

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        return images + interpolate_level(GAUSSIAN_NOISE_SIGMA, params.severity) * noise_like(images, params.seeds)


class DefocusBlur(_ImageNetC):
    """ImageNet-C ``defocus_blur``: an anti-aliased disk point-spread function.

    Severity 1..5 is the disk radius at 224 px: 3, 4, 6, 8, 10 pixels (1.3 % to
    4.5 % of the shorter side), with an anti-aliasing Gaussian of sigma 0.1,
    0.5, 0.5, 0.5, 0.5 px. At 224 px (or ``reference_size=None``) the kernel is
    ImageNet-C's exactly (``disk()``: a binary disk on a grid of half-size
    max(8, radius), blurred by a 3x3 or 5x5 Gaussian with reflected borders);
    at other sizes radius and sigma are scaled and the disk is a pixel-coverage
    disk so that sub-pixel radii still blur. Borders are reflected (as ``cv2.filter2D``).
    """

    name = "defocus_blur"
    severity_meaning = {
        i + 1: f"defocus disk radius {r} px at 224 px ({100 * r / 224:.1f}% of the shorter side)"
        for i, (r, _) in enumerate(DEFOCUS_RADIUS_ALIAS)
    }

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        radius, alias = DEFOCUS_RADIUS_ALIAS[int(params.severity) - 1]
        scale = self._scale(images)
        if scale == 1.0:
            kernel = imagenet_c_disk(radius, alias)
        else:
            kernel = _blur_kernel_reflect(disk_kernel(radius * scale), alias * scale, 3)
        return fft_filter(images, kernel, border="reflect")


class MotionBlur(_ImageNetC):
    """ImageNet-C ``motion_blur``: a one-sided line kernel at a random angle.

    Severity 1..5 is (radius, sigma) at 224 px: (10, 3), (15, 5), (15, 8),
    (15, 12), (20, 15): the streak has ``2 * radius + 1`` taps weighted by a
    half-Gaussian of that sigma, so its effective length grows from ~3 px to
    ~15 px (1.3 % to 6.7 % of the shorter side). The angle is drawn per sample,
    uniformly in [-45, 45] degrees. This is the line-kernel equivalent of
    Wand/ImageMagick's motion blur used by ``imagecorruptions`` (see the module docstring).
    """

    name = "motion_blur"
    severity_meaning = {
        i + 1: f"one-sided motion streak, radius {r} px, sigma {s} px at 224 px; angle uniform in [-45, 45] deg"
        for i, (r, s) in enumerate(MOTION_RADIUS_SIGMA)
    }

    def _sample(self, seeds: list[int], severity: int) -> dict[str, Tensor]:
        return {"angle_deg": uniform(seeds, stream=1) * 90.0 - 45.0}

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        radius, sigma = MOTION_RADIUS_SIGMA[int(params.severity) - 1]
        scale = self._scale(images)
        kernels = imagenet_c_motion_kernels(
            max(0, round(radius * scale)), max(sigma * scale, 1e-3), params["angle_deg"], images.shape[-2:]
        )
        return correlate(images, kernels, border="replicate")


class Contrast(_ImageNetC):
    """ImageNet-C ``contrast``: pull every pixel toward the image's per-channel mean.

    Severity 1..5 keeps 40 %, 30 %, 20 %, 10 %, 5 % of the deviation from the
    mean (out = (x - mean) * c + mean). Size-independent. Fractional severities
    interpolate the kept share linearly.
    """

    name = "contrast"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"contrast reduced to {int(c * 100)}% around the channel mean" for i, c in enumerate(CONTRAST_FACTOR)
    }

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        c = interpolate_level(CONTRAST_FACTOR, params.severity)
        mean = images.mean(dim=(-2, -1), keepdim=True)
        return (images - mean) * c + mean


class Brightness(_ImageNetC):
    """ImageNet-C ``brightness``: add a constant to the HSV value channel.

    Severity 1..5 adds 0.1, 0.2, 0.3, 0.4, 0.5 to V = max(R, G, B) (clipped at
    1) keeping hue and saturation, i.e. RGB is scaled by V'/V (black becomes
    grey V'). Identical to ImageNet-C's RGB -> HSV -> RGB round trip without
    computing hue. Size-independent; expects RGB (1-channel images are treated as V).
    Fractional severities interpolate the shift linearly.
    """

    name = "brightness"
    fractional_severities = True
    severity_meaning = {i + 1: f"HSV value + {c} (hue and saturation kept)" for i, c in enumerate(BRIGHTNESS_SHIFT)}

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        shift = interpolate_level(BRIGHTNESS_SHIFT, params.severity)
        n, c = images.shape[:2]
        out = torch.empty_like(images)
        # A few images at a time, so that the planes stay in the CPU cache between passes.
        chunk = n if images.device.type != "cpu" else max(1, _CACHE_ELEMENTS // max(1, images[0].numel()))
        for start in range(0, n, chunk):
            x, o = images[start : start + chunk], out[start : start + chunk]
            value = x[:, 0].clone()
            for ch in range(1, c):
                torch.maximum(value, x[:, ch], out=value)
            new_value = (value + shift).clamp_(max=1.0)
            # Float arithmetic instead of boolean masks (several times faster on the CPU):
            # lit = 1 where V > 0, else 0; there ratio = V'/V and offset = 0, elsewhere
            # (black pixels) ratio = 0 and offset = V', so out = x * ratio + offset is exactly
            # x * V'/V for lit pixels and grey V' for black ones.
            lit = torch.sign(value).clamp_(min=0.0)
            scaled = new_value * lit
            ratio = scaled.div(value.clamp_(min=1e-12))
            offset = new_value.sub_(scaled)
            for ch in range(c):
                torch.addcmul(offset, x[:, ch], ratio, out=o[:, ch])
        return out


# ------------------------------------------------------------------ kernels


def imagenet_c_disk(radius: int, alias_blur: float) -> Tensor:
    """ImageNet-C's ``disk(radius, alias_blur)`` kernel, float64.

    A binary disk ``X**2 + Y**2 <= radius**2`` on a grid of half-size
    ``max(8, radius)``, normalised, then blurred by OpenCV's ``GaussianBlur``
    with a 3x3 (radius <= 8) or 5x5 kernel and reflect-101 borders.
    """
    half = 8 if radius <= 8 else radius
    ksize = 3 if radius <= 8 else 5
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((x[:, None] ** 2 + x[None, :] ** 2) <= radius**2).to(torch.float64)
    return _blur_kernel_reflect(disk / disk.sum(), alias_blur, ksize)


def _blur_kernel_reflect(kernel: Tensor, sigma: float, ksize: int) -> Tensor:
    """OpenCV ``GaussianBlur(kernel, (ksize, ksize), sigma)`` with reflect-101 borders, float64."""
    half = ksize // 2
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * max(sigma, 1e-6) ** 2))
    g = g / g.sum()
    k = F.pad(kernel[None, None], (half, half, half, half), mode="reflect")
    k = F.conv2d(k, g.view(1, 1, 1, -1))
    k = F.conv2d(k, g.view(1, 1, -1, 1))
    return k[0, 0]


def imagenet_c_motion_kernels(radius: int, sigma: float, angles_deg: Tensor, image_hw: Sequence[int]) -> Tensor:
    """``imagecorruptions._motion_blur`` as correlation kernels, one per angle.

    Tap ``i`` (0 <= i < 2 * radius + 1) weighs ``exp(-i**2 / (2 * sigma**2))``
    (normalised) and reads the pixel at offset
    ``(ceil(i * sin(a) - 0.5), ceil(i * cos(a) - 0.5))`` (rows, columns); taps
    whose offset reaches the image size are dropped, as the original stops there.

    Returns:
        float64 tensor of shape (N, K, K), K = 2 * (2 * radius) + 1.
    """
    width = 2 * radius + 1
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    theta = torch.deg2rad(angles_deg.to(torch.float64))[:, None]
    oy = torch.ceil(taps * torch.sin(theta) - 0.5).long()
    ox = torch.ceil(taps * torch.cos(theta) - 0.5).long()
    h, w = image_hw
    inside = (oy.abs() < h) & (ox.abs() < w)
    # The original loop breaks at the first tap that leaves the image.
    inside = inside.long().cumprod(dim=1).bool()
    half = width - 1
    size = 2 * half + 1
    n = angles_deg.shape[0]
    out = torch.zeros(n, size * size, dtype=torch.float64)
    index = (oy + half) * size + (ox + half)
    out.scatter_add_(1, index, weights.expand(n, -1) * inside)
    return out.view(n, size, size)


__all__ = ["Brightness", "Contrast", "DefocusBlur", "GaussianNoise", "MotionBlur"]
