"""ImageNet-C compatible corruptions, batched in torch.

Severity tables are those of Hendrycks & Dietterich (2019), "Benchmarking
Neural Network Robustness to Common Corruptions and Perturbations" (ICLR),
as published in the ``imagecorruptions`` package 1.1.2
(``imagecorruptions/corruptions.py``; the same constants are in its
maintained copy ``corrupt-tta`` 0.1.7). Results at 224x224 match that code up
to float32 rounding and the random draws (which are keyed per sample here,
see :mod:`stressors.base`).

Image size: the tables assume 224x224 inputs. The noises, contrast,
brightness and saturate do not depend on size. The blur radii and sigmas are
multiplied by ``min(H, W) / reference_size`` (``reference_size=224`` by
default), so a severity blurs the same fraction of the picture at 32 px and at
1024 px; pass ``reference_size=None`` to use the tables' pixel values verbatim
at any size. Pixelate's factor is a ratio of resolutions and JPEG's blocks are
the codec's 8x8 pixels: neither is scaled (see their classes).

Random draws: every noise field is drawn per sample on the CPU with numpy's
PCG64 from the sample's seed (:func:`stressors.base.noise_like`,
:func:`uniform_like`, :func:`per_sample_numpy`), identical on every device, so a
sample is corrupted identically whatever its batch. They follow the
reference's distributions, not its draws (it uses the global numpy RNG).

Motion blur: the original ImageNet-C used Wand/ImageMagick's ``motion_blur``;
``imagecorruptions`` replaced it by a numpy equivalent (``_motion_blur``: a
one-sided line of ``2 * radius + 1`` taps with half-Gaussian weights of the
given sigma, at an angle drawn uniformly in [-45, 45] degrees, edges
replicated). :class:`MotionBlur` builds that same line kernel per sample and
applies it as a direct sum of its 2 * radius + 1 shifted taps (on the CPU; an FFT
correlation elsewhere, see :func:`stressors.filters.correlate`).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from audit.contract.seeds import stream_seed
from stressors.base import ImageStressor, Params, StressorError, interpolate_level, noise_like, uniform
from stressors.filters import correlate, disk_kernel, fft_filter, gaussian_kernel1d

# Constants of imagecorruptions 1.1.2, corruptions.py (severity 1..5).
GAUSSIAN_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
DEFOCUS_RADIUS_ALIAS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
MOTION_RADIUS_SIGMA = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)
SHOT_NOISE_PHOTONS = (60, 25, 12, 5, 3)
IMPULSE_NOISE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
SPECKLE_NOISE_SIGMA = (0.15, 0.2, 0.35, 0.45, 0.6)
GAUSSIAN_BLUR_SIGMA = (1, 2, 3, 4, 6)
SATURATE_SCALE_SHIFT = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))
JPEG_QUALITY = (25, 18, 15, 10, 7)
PIXELATE_FACTOR = (0.6, 0.5, 0.4, 0.3, 0.25)

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

    output_in_range = True

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        sigma = float(interpolate_level(GAUSSIAN_NOISE_SIGMA, params.severity))

        def add_noise(rng: np.random.Generator, x: np.ndarray, out: np.ndarray) -> None:
            rng.standard_normal(out=out, dtype=np.float32)  # noise_like's draw
            out *= sigma
            out += x

        if images.device.type == "cpu":
            return per_sample_numpy(images, params.seeds, add_noise)
        return (images + sigma * noise_like(images, params.seeds)).clamp_(0.0, 1.0)


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
        return _in_chunks(images, lambda sl: fft_filter(images[sl], kernel, border="reflect"))


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
        return _in_chunks(images, lambda sl: correlate(images[sl], kernels[sl], border="replicate"))


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
        c = float(interpolate_level(CONTRAST_FACTOR, params.severity))

        def chunk(sl: slice) -> Tensor:
            x = images[sl]
            mean = x.mean(dim=(-2, -1), keepdim=True)
            return torch.sub(x, mean).mul_(c).add_(mean)

        return _in_chunks(images, chunk)


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

    output_in_range = True

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        shift = float(interpolate_level(BRIGHTNESS_SHIFT, params.severity))
        c = images.shape[1]
        out = torch.empty_like(images)

        # A few images at a time (_each_chunk), so that the planes stay in the CPU cache between passes
        # (and the clamp happens there too, not in a separate pass over the batch in memory).
        def chunk(sl: slice) -> None:
            x, o = images[sl], out[sl]
            value = x[:, 0] if c == 1 else torch.maximum(x[:, 0], x[:, 1])
            for ch in range(2, c):
                torch.maximum(value, x[:, ch], out=value)
            new_value = torch.add(value, shift).clamp_(max=1.0)
            # out = x * V'/V for lit pixels, grey V' for black ones, with float arithmetic only
            # (boolean masks are several times slower on the CPU): ratio = V'/max(V, 1e-12) and
            # offset = V' - V * ratio, which is 0 (to rounding) where V > 0 and V' where V = 0.
            ratio = new_value / value.clamp(min=1e-12)
            offset = torch.addcmul(new_value, value, ratio, value=-1.0)
            torch.addcmul(offset[:, None], x, ratio[:, None], out=o)
            o.clamp_(0.0, 1.0)

        _each_chunk(images, chunk)
        return out


class ShotNoise(_ImageNetC):
    """ImageNet-C ``shot_noise``: Poisson (photon) noise, ``Poisson(x * c) / c``, then clipping.

    Severity 1..5 is the photon count of a white pixel: c = 60, 25, 12, 5, 3
    (fewer photons, more noise: the standard deviation at grey level x is
    sqrt(x / c), 0.09 to 0.41 at mid-grey). Size-independent. Fractional
    severities interpolate c linearly (the Poisson draws are those of the next
    level's seed). The counts are drawn per sample on the CPU with numpy's
    PCG64 Poisson sampler (:func:`per_sample_numpy`), the same algorithms as
    the reference's ``np.random.poisson``; on another device the images make a
    round trip to the CPU.
    """

    name = "shot_noise"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"Poisson noise of {c} photons at white (std {(0.5 / c) ** 0.5:.2f} at mid-grey)"
        for i, c in enumerate(SHOT_NOISE_PHOTONS)
    }

    output_in_range = True

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        c = float(interpolate_level(SHOT_NOISE_PHOTONS, params.severity))

        def shot(rng: np.random.Generator, x: np.ndarray, out: np.ndarray) -> None:
            rate = np.multiply(x, c, dtype=np.float64)
            np.maximum(rate, 0.0, out=rate)  # check_images lets -1e-6 through
            np.divide(rng.poisson(rate), c, out=out, casting="unsafe")

        # Poisson counts are drawn on the CPU on every device (no batched, seedable torch sampler).
        return per_sample_numpy(images.cpu(), params.seeds, shot).to(images.device)


class ImpulseNoise(_ImageNetC):
    """ImageNet-C ``impulse_noise``: salt-and-pepper noise on each channel value independently.

    Severity 1..5 is the share of channel values replaced: 3 %, 6 %, 9 %, 17 %,
    27 %, half by 0 (pepper) and half by 1 (salt), as scikit-image's
    ``random_noise(mode='s&p', amount=a)`` that the reference calls. A value
    whose uniform draw u is below a / 2 becomes 0, one with a / 2 <= u < a
    becomes 1. Size-independent. Fractional severities interpolate a linearly
    (the uniform field is that of the next level).
    """

    name = "impulse_noise"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"salt-and-pepper noise on {a:.0%} of the channel values" for i, a in enumerate(IMPULSE_NOISE_AMOUNT)
    }

    output_in_range = True

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        amount = float(interpolate_level(IMPULSE_NOISE_AMOUNT, params.severity))
        half = 0.5 * amount

        # Untouched values keep x; salt (a / 2 <= u < a) becomes 1; pepper (u < a / 2) becomes 0.
        def salt_and_pepper(rng: np.random.Generator, x: np.ndarray, out: np.ndarray) -> None:
            u = rng.random(dtype=np.float32, size=x.shape)  # uniform_like's draw
            np.copyto(out, x)
            np.copyto(out, (u >= half).astype(np.float32), where=u < amount)

        if images.device.type == "cpu":
            return per_sample_numpy(images, params.seeds, salt_and_pepper)
        u = uniform_like(images, params.seeds)
        return torch.where(u < amount, (u >= half).to(images.dtype), images).clamp_(0.0, 1.0)


class SpeckleNoise(_ImageNetC):
    """ImageNet-C ``speckle_noise``: multiplicative Gaussian noise, ``x + x * n``, n ~ N(0, c²).

    Severity 1..5 is c = 0.15, 0.2, 0.35, 0.45, 0.6 (the noise is proportional
    to the brightness: black stays black). Size-independent. Fractional
    severities interpolate c linearly (the noise field is that of the next level).
    """

    name = "speckle_noise"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"multiplicative Gaussian noise, x * (1 + n), std(n) = {c}" for i, c in enumerate(SPECKLE_NOISE_SIGMA)
    }

    output_in_range = True

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        c = float(interpolate_level(SPECKLE_NOISE_SIGMA, params.severity))

        def speckle(rng: np.random.Generator, x: np.ndarray, out: np.ndarray) -> None:
            rng.standard_normal(out=out, dtype=np.float32)  # noise_like's draw
            out *= c
            out *= x
            out += x

        if images.device.type == "cpu":
            return per_sample_numpy(images, params.seeds, speckle)
        return (images + images * (c * noise_like(images, params.seeds))).clamp_(0.0, 1.0)


class GaussianBlur(_ImageNetC):
    """ImageNet-C ``gaussian_blur``: an isotropic Gaussian blur, edges replicated.

    Severity 1..5 is the Gaussian's sigma at 224 px: 1, 2, 3, 4, 6 pixels
    (0.4 % to 2.7 % of the shorter side). At 224 px (or ``reference_size=None``)
    the kernel is the reference's exactly: ``skimage.filters.gaussian`` ->
    ``scipy.ndimage.gaussian_filter`` with ``truncate=4``, i.e. the Gaussian
    density sampled at integer offsets up to ``int(4 * sigma + 0.5)``,
    normalised, per channel, with ``mode='nearest'`` (replicated edges). At
    other sizes sigma is multiplied by ``min(H, W) / reference_size`` and the
    kernel is integrated over each pixel (:func:`stressors.filters.gaussian_kernel1d`)
    so that sub-pixel sigmas still blur. Fractional severities interpolate sigma linearly.
    """

    name = "gaussian_blur"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"Gaussian blur, sigma {s} px at 224 px ({100 * s / 224:.1f}% of the shorter side)"
        for i, s in enumerate(GAUSSIAN_BLUR_SIGMA)
    }

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        sigma = float(interpolate_level(GAUSSIAN_BLUR_SIGMA, params.severity))
        scale = self._scale(images)
        k = scipy_gaussian_kernel1d(sigma) if scale == 1.0 else gaussian_kernel1d(sigma * scale)
        kernel = torch.outer(k, k)
        return _in_chunks(images, lambda sl: fft_filter(images[sl], kernel, border="replicate"))


class Saturate(_ImageNetC):
    """ImageNet-C ``saturate``: scale the HSV saturation, ``S' = clip(S * a + b, 0, 1)``, hue and value kept.

    Severity 1..5 is (a, b) = (0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2):
    levels 1 and 2 wash the colours out (70 % and 90 % less saturation), levels
    3 to 5 exaggerate them. Computed without the hue: with V = max and
    delta = max - min over the channels, every channel is
    ``V - S' * V * (V - x) / delta``, which is scikit-image's
    ``rgb2hsv`` -> ``hsv2rgb`` round trip with only S changed. Its quirk is
    kept: a grey pixel (delta = 0) has hue 0 (red), so with b > 0 (levels 4
    and 5) it becomes (V, V(1 - b), V(1 - b)), reddish. Size-independent.
    1-channel images are unchanged (the reference makes them RGB, then keeps
    the red channel, which is V). No fractional severities: the table goes
    from desaturation (a = 0.1) to saturation (a = 2), so an interpolated
    level would pass through the clean image (a = 1) near severity 2.5.
    Not monotone in pixel change (``monotone_severity = False``): on colourful
    images level 3 (saturation x 2, clipped) changes less than level 2 (x 0.1).
    """

    name = "saturate"
    #: Not monotone in mean |stressed - clean|: level 2 removes 90 % of the saturation, level 3
    #: doubles it (clipped at 1), a smaller change on colourful images; the published table's
    #: order, kept (tests/stressors/test_imagenet_c_reference.py shows the reference does the same).
    monotone_severity = False
    severity_meaning = {
        i + 1: (f"HSV saturation x {a}" + (f" + {b}" if b else "") + (" (washed out)" if a < 1 else " (exaggerated)"))
        for i, (a, b) in enumerate(SATURATE_SCALE_SHIFT)
    }

    output_in_range = True

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        a, b = (float(v) for v in SATURATE_SCALE_SHIFT[int(params.severity) - 1])
        c = images.shape[1]
        out = torch.empty_like(images)

        def chunk(sl: slice) -> None:
            x, o = images[sl], out[sl]
            value, low = x[:, 0].clone(), x[:, 0].clone()
            for ch in range(1, c):
                torch.maximum(value, x[:, ch], out=value)
                torch.minimum(low, x[:, ch], out=low)
            delta = torch.sub(value, low, out=low)
            # ratio = V / delta = 1 / S, finite (V / 1e-30) for grey pixels, where x - V = 0 anyway;
            # gain = S' / S = min(a + b * ratio, ratio) is S' = min(S * a + b, 1) divided by S.
            ratio = value / delta.clamp(min=1e-30)
            gain = torch.minimum(ratio.mul(b).add_(a), ratio)
            # out = V + gain * (x - V): exact for the max channel and for grey pixels (x - V = 0).
            torch.sub(x, value[:, None], out=o)
            o.mul_(gain[:, None]).add_(value[:, None])
            if b > 0 and c > 1:
                # grey pixels: hue 0 -> (V, V (1 - b), V (1 - b))
                grey = (delta == 0).to(images.dtype).mul_(value).mul_(b)
                o[:, 1:].sub_(grey[:, None])
            o.clamp_(0.0, 1.0)

        _each_chunk(images, chunk)
        return out


class Pixelate(_ImageNetC):
    """ImageNet-C ``pixelate``: PIL ``BOX`` downscale by a factor, then ``NEAREST`` upscale back.

    Severity 1..5 is the factor c = 0.6, 0.5, 0.4, 0.3, 0.25: the picture is
    re-sampled on ``int(W * c) x int(H * c)`` cells (at least 1), i.e. cells of
    1/c = 1.7 to 4 pixels. Matches Pillow's resampling: the BOX filter averages
    the input pixels whose centres fall inside each cell (Pillow's
    ``precompute_coeffs``), width first, then height; NEAREST reads the cell
    under each output pixel's centre, ``int((i + 0.5) * in / out)``. Like
    Pillow's 8-bit arithmetic it rounds each pass to a multiple of 1/255 (half
    up), so 8-bit inputs give the reference's output up to rare half-way cases
    of Pillow's fixed-point weights (the tests find none: identical at 224 x 224 and 67 x 45).
    Size: c is a ratio of resolutions, used as is at every size (``reference_size``
    is not used): scaling the cells with the image would make every level a
    no-op below 224 * c pixels, where the image is already coarser than the
    cells; at any size each level keeps the same share of the resolution
    (``imagecorruptions`` applied to larger images, e.g. COCO-C, does the same).
    No fractional severities: the number of cells is an integer, so an
    interpolated factor would jump between grids instead of moving continuously.
    """

    name = "pixelate"
    output_in_range = True  # averages of [0, 1] values, rounded to multiples of 1/255
    severity_meaning = {
        i + 1: f"resolution x {c} (cells of {1 / c:.1f} px), box average then nearest upscale"
        for i, c in enumerate(PIXELATE_FACTOR)
    }

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        c = PIXELATE_FACTOR[int(params.severity) - 1]
        h, w = images.shape[-2:]
        small_w, small_h = max(1, int(w * c)), max(1, int(h * c))
        device = images.device
        plan_w = [t.to(device) for t in _box_plan(w, small_w)]
        plan_h = [t.to(device) for t in _box_plan(h, small_h)]
        rows = _nearest_index(small_h, h).to(device)
        cols = _nearest_index(small_w, w).to(device)
        out = torch.empty_like(images)

        def chunk(sl: slice) -> None:  # a few images at a time (_each_chunk): every temporary stays in the cache
            # 2-D and 3-D views: index_select along the last axis of a 4-D tensor is several times slower.
            y = _box_downscale(images[sl].reshape(-1, w), plan_w)  # (N C H, w'): width first, as Pillow
            y = _box_downscale(y.view(-1, h, small_w), plan_h)  # (N C, h', w')
            y = y.index_select(1, rows)  # (N C, H, w')
            torch.index_select(y.view(-1, small_w), 1, cols, out=out[sl].view(-1, w))  # straight into the output

        _each_chunk(images, chunk, on_threads=True)
        return out


class JpegCompression(_ImageNetC):
    """ImageNet-C ``jpeg_compression``: a JPEG round trip at a low quality, through Pillow's encoder.

    Severity 1..5 is the JPEG quality 25, 18, 15, 10, 7 (Pillow's defaults
    otherwise: libjpeg's standard quantisation tables scaled by the quality,
    4:2:0 chroma subsampling). Each image is rounded to 8 bits
    (``round(255 * x)``: JPEG is an 8-bit codec), encoded and decoded by
    Pillow on the CPU, one image at a time (several at once on threads:
    Pillow releases the GIL while coding), and moved back to the images'
    device; this is the reference's own code path, so on 8-bit inputs the
    result is the reference's bit for bit. Not elementwise and not on the GPU.
    1-channel images go through RGB and back to L, as the reference does.
    Size: none (the codec's blocks are 8x8 pixels at every size).
    No fractional severities: the quality is an integer.
    """

    name = "jpeg_compression"
    severity_meaning = {i + 1: f"JPEG quality {q} (Pillow, 4:2:0)" for i, q in enumerate(JPEG_QUALITY)}

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        c = images.shape[1]
        if c not in (1, 3):
            raise StressorError(f"{self.name}: needs 1- or 3-channel images, got {c} channels")
        quality = JPEG_QUALITY[int(params.severity) - 1]
        x = images.detach().to("cpu").contiguous().numpy()
        out = np.empty_like(x)

        def one(i: int) -> None:
            # per image, so that the 8-bit copies stay small and in the cache
            levels = np.multiply(x[i], np.float32(255.0), out=out[i])
            np.rint(levels, out=levels)
            decoded = _jpeg_round_trip(levels.astype(np.uint8), quality).transpose(2, 0, 1)
            np.divide(decoded, np.float32(255.0), out=out[i], dtype=np.float32)

        _on_threads(one, range(len(x)))
        return torch.from_numpy(out).to(images.device)


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


# ------------------------------------------------------------------ helpers


def uniform_like(images: Tensor, seeds: Sequence[int], *, stream: int = 1) -> Tensor:
    """Uniform draws in [0, 1) with the shape of ``images``, per sample (as :func:`stressors.base.noise_like`).

    Shape:
        images: (N, C, H, W); returns (N, C, H, W) float32 on ``images.device``.
    """
    if len(seeds) != images.shape[0]:
        raise StressorError(f"uniform_like: {len(seeds)} seeds for a batch of {images.shape[0]}")
    out = np.empty(tuple(images.shape), dtype=np.float32)
    for i, s in enumerate(seeds):
        np.random.Generator(np.random.PCG64(stream_seed(s, stream))).random(dtype=np.float32, out=out[i])
    return torch.from_numpy(out).to(images.device)


def per_sample_numpy(
    images: Tensor,
    seeds: Sequence[int],
    kernel: Callable[[np.random.Generator, np.ndarray, np.ndarray], None],
    *,
    stream: int = 1,
) -> Tensor:
    """Corrupt each CPU image with numpy, one sample at a time, drawing from that sample's own generator.

    ``kernel(rng, x, out)`` receives the sample's generator (numpy PCG64 seeded with
    ``stream_seed(seed, stream)``, the stream of :func:`stressors.base.noise_like`), its
    float32 (C, H, W) image and the float32 output slot; the result is clipped to [0, 1].
    One sample's whole computation stays in the CPU cache (a batched torch version runs
    several passes over the batch in memory), and samples run on up to
    ``torch.get_num_threads()`` threads: numpy releases the GIL while it draws and
    computes, and each sample has its own generator and output, so the result does not
    depend on the threads or the batch.

    Shape:
        images: (N, C, H, W) float32 on the CPU; returns (N, C, H, W) float32.
    """
    if len(seeds) != images.shape[0]:
        raise StressorError(f"per_sample_numpy: {len(seeds)} seeds for a batch of {images.shape[0]}")
    x = images.detach().contiguous().numpy()
    out = np.empty_like(x)

    def one(i: int) -> None:
        kernel(np.random.Generator(np.random.PCG64(stream_seed(seeds[i], stream))), x[i], out[i])
        np.clip(out[i], 0.0, 1.0, out=out[i])

    _on_threads(one, range(len(seeds)))
    return torch.from_numpy(out)


def _in_chunks(images: Tensor, fn: Callable[[slice], Tensor], elements: int = _CACHE_ELEMENTS) -> Tensor:
    """``fn(batch slice)`` a few images at a time on the CPU (:func:`_each_chunk`), written into one output.

    Off the CPU, or when the batch fits in one chunk, ``fn`` runs once on the whole batch.
    """
    n = images.shape[0]
    if images.device.type != "cpu" or max(1, elements // max(1, images[0].numel())) >= n:
        return fn(slice(0, n))
    out = torch.empty_like(images)

    def chunk(sl: slice) -> None:
        out[sl] = fn(sl)

    _each_chunk(images, chunk, elements)
    return out


def _each_chunk(
    images: Tensor, fn: Callable[[slice], None], elements: int = _CACHE_ELEMENTS, *, on_threads: bool = False
) -> None:
    """``fn(sl)`` for consecutive slices ``sl`` of the batch that together cover it, each a few images on the CPU.

    Keeps every temporary of ``fn`` cache-sized: batch-sized temporaries are fresh memory
    (pages the kernel must fault in and zero), which on a busy machine costs more than the
    arithmetic. A slice holds about ``elements`` values (at least one image). The slices run one
    after the other on torch's threads, or with ``on_threads`` on ``torch.get_num_threads()``
    Python threads with one torch thread each (:func:`_on_threads`): faster for gathers
    (pixelate, 1.5x at two threads), which torch splits poorly between its threads, and slower
    for elementwise passes and FFTs (0.8-0.9x; ``benchmarks/README.md``). ``fn`` must treat every
    sample independently and write only its own slice of the output (all the stressors here
    do), so the result does not depend on the threads or the batch. Off the CPU ``fn`` runs once
    on the whole batch.
    """
    n = images.shape[0]
    if images.device.type != "cpu":
        fn(slice(0, n))
        return
    step = max(1, elements // max(1, images[0].numel()))
    slices = [slice(start, min(n, start + step)) for start in range(0, n, step)]
    if not on_threads:
        for sl in slices:
            fn(sl)
        return
    _on_threads(fn, slices)


def _on_threads(fn: Callable[[Any], None], items: Sequence[Any]) -> None:
    """``fn(item)`` for every item, on up to ``torch.get_num_threads()`` threads with one torch thread each.

    torch's thread count is process-wide state (``torch.set_num_threads`` sets it for the threads
    started later, and MKL's for everyone), so the calling thread's count is set back when the
    items are done; meanwhile the caller only waits.
    """
    workers = min(len(items), torch.get_num_threads())
    if workers <= 1:
        for item in items:
            fn(item)
        return
    before = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            list(pool.map(fn, items))
    finally:
        torch.set_num_threads(before)


def scipy_gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> Tensor:
    """``scipy.ndimage.gaussian_filter1d``'s kernel: the density at offsets up to ``int(truncate * sigma + 0.5)``, float64."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 / (sigma * sigma) * x**2)
    return k / k.sum()


def pillow_box_bounds(in_size: int, out_size: int) -> tuple[Tensor, Tensor]:
    """First and last + 1 input index that Pillow's ``BOX`` filter averages for each output pixel.

    Pillow (``Resample.c``, ``precompute_coeffs``) samples the box at input
    pixel centres: input pixel ``i`` belongs to output pixel ``j`` when
    ``-0.5 < (i - centre + 0.5) / scale <= 0.5`` with ``scale = in / out`` and
    ``centre = (j + 0.5) * scale``, among ``i`` in
    ``[int(centre - support + 0.5), int(centre + support + 0.5))``, support = scale / 2.
    The cells are contiguous, so each is a range. Computed in float64 as Pillow does.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    ss = 1.0 / filterscale
    lo, hi = [], []
    for j in range(out_size):
        centre = (j + 0.5) * scale
        xmin = max(0, int(centre - support + 0.5))
        xmax = min(in_size, int(centre + support + 0.5))
        inside = [i for i in range(xmin, xmax) if -0.5 < (i - centre + 0.5) * ss <= 0.5]
        if not inside:  # pragma: no cover - Pillow leaves such a row at zero; never with BOX
            inside = [min(in_size - 1, int(centre))]
        lo.append(inside[0])
        hi.append(inside[-1] + 1)
    return torch.tensor(lo), torch.tensor(hi)


@functools.lru_cache(maxsize=64)
def _box_plan(in_size: int, size: int) -> tuple[Tensor, ...]:
    """Pillow's ``BOX`` resize from ``in_size`` to ``size`` as taps: ``(scale, index_0, index_1, weight_1, ...)``.

    Output ``j`` is ``scale[j] * sum_k weight_k[j] * x[index_k[j]]`` (``weight_0`` is 1,
    ``scale`` is ``255 / count``); empty when ``size == in_size``. Cached: the same sizes
    come back batch after batch. CPU tensors; treat as read-only.
    """
    if size == in_size:
        return ()
    lo, hi = pillow_box_bounds(in_size, size)
    count = hi - lo
    plan = [255.0 / count.to(torch.float32)]
    for j in range(int(count.max())):
        plan.append(torch.minimum(lo + j, hi - 1))
        if j:
            plan.append((j < count).to(torch.float32))
    return tuple(plan)


def _box_downscale(images: Tensor, plan: Sequence[Tensor]) -> Tensor:
    """Pillow's 8-bit ``BOX`` resize of axis 1 of a 2-D or 3-D float32 tensor, as :func:`_box_plan` plans it.

    Each output is the mean of its cell's inputs, rounded half up to a multiple of 1/255 as
    Pillow's fixed-point arithmetic does (a tolerance of 1e-3 grey levels absorbs float32
    rounding, so that 8-bit inputs round as in Pillow).
    """
    if not plan:
        return images.clone()
    shape = (-1,) + (1,) * (images.ndim - 2)
    total = images.index_select(1, plan[1])
    for k in range(2, len(plan), 2):
        total = total.addcmul_(images.index_select(1, plan[k]), plan[k + 1].view(shape))
    return total.mul_(plan[0].view(shape)).add_(0.5 + 1e-3).floor_().div_(255.0)


@functools.lru_cache(maxsize=64)
def _nearest_index(in_size: int, out_size: int) -> Tensor:
    """The input index Pillow's ``NEAREST`` resize reads for each output pixel: ``int((j + 0.5) * in / out)``.

    Accumulated in float64 as Pillow's affine scaler walks the row (``ImagingScaleAffine``).
    """
    scale = in_size / out_size
    index, pos = [], 0.5 * scale
    for _ in range(out_size):
        index.append(min(in_size - 1, int(pos)))
        pos += scale
    return torch.tensor(index)


def _jpeg_round_trip(planes: np.ndarray, quality: int) -> np.ndarray:
    """One (C, H, W) uint8 image (C = 1 or 3) encoded by Pillow at ``quality`` and decoded, as (H, W, C)."""
    from PIL import Image  # only here: the other corruptions do not need Pillow

    grey = planes.shape[0] == 1
    # Pillow interleaves the planes itself (faster than a transposing copy in numpy).
    image = Image.merge("RGB", [Image.fromarray(planes[0 if grey else c]) for c in range(3)])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    decoded = Image.open(buffer)
    if grey:
        return np.asarray(decoded.convert("L"))[..., None]
    return np.asarray(decoded if decoded.mode == "RGB" else decoded.convert("RGB"))


__all__ = [
    "Brightness",
    "Contrast",
    "DefocusBlur",
    "GaussianBlur",
    "GaussianNoise",
    "ImpulseNoise",
    "JpegCompression",
    "MotionBlur",
    "Pixelate",
    "Saturate",
    "ShotNoise",
    "SpeckleNoise",
]
