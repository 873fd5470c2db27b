"""Night: a low-light capture simulated in linear light (exposure, lamp colour, sensor noise)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from stressors.base import ImageStressor, Params, interpolate_level, noise_like
from stressors.filters import coordinate_grid, linear_to_srgb, srgb_to_linear

#: Per severity: (light lost in stops, camera gain in stops, sodium cast 0..1, desaturation 0..1,
#: vignetting 0..1, highlight compression 0..0.5).
LEVELS = (
    (2.0, 1.0, 0.30, 0.20, 0.15, 0.20),
    (3.0, 1.5, 0.45, 0.30, 0.20, 0.30),
    (4.0, 2.0, 0.60, 0.40, 0.25, 0.40),
    (5.0, 2.5, 0.75, 0.50, 0.30, 0.45),
    (6.0, 3.0, 0.90, 0.60, 0.35, 0.50),
)
#: Electrons collected by a pixel at full scale in daylight exposure, and read noise (e- rms):
#: typical of a small (phone / dash-cam) sensor.
FULL_WELL = 4000.0
READ_NOISE = 3.0
#: Relative spectral gains of high-pressure sodium street lighting (about 2000 K) on an sRGB camera.
SODIUM = (1.0, 0.55, 0.18)
_LUMA = (0.2126, 0.7152, 0.0722)


class Night(ImageStressor):
    """A night-time capture of the scene: less light, orange street lighting, sensor noise.

    The image is decoded to linear light (sRGB transfer function), lit by a
    mix of the original light and high-pressure sodium street lighting (colour
    cast toward orange and loss of saturation), under-exposed by a number of
    stops, recorded by a sensor with shot noise (Poisson, approximated as
    Gaussian with variance = signal in electrons; full well 4000 e-) and read
    noise (3 e- rms), pushed back up by the camera's gain (ISO), slightly
    vignetted (a lens wide open) and re-encoded with the sRGB tone curve. The
    noise is per channel (chroma noise) and spatially correlated over about two
    pixels, as demosaicing makes it. Because the gain only recovers part of the
    lost stops, the image gets darker *and* noisier with severity; the signal-to-noise
    ratio at mid-grey (18 % reflectance) is given below.

    ========  ==========  =========  ============  ===========  ===============
    severity  light lost  gain       net exposure  sodium cast  SNR at mid-grey
    ========  ==========  =========  ============  ===========  ===============
    1         2 stops     +1 stop    -1 stop       30 %         ~13 (dusk)
    2         3 stops     +1.5       -1.5 stops    45 %         ~9
    3         4 stops     +2         -2 stops      60 %         ~6
    4         5 stops     +2.5       -2.5 stops    75 %         ~4
    5         6 stops     +3         -3 stops      90 %         ~2.8 (deep night)
    ========  ==========  =========  ============  ===========  ===============

    Daylight highlights are also compressed (the sky is not lit at night) and
    saturation is reduced (20 % to 60 %) before the cast.

    Fractional severities (e.g. 2.75: 4.75 stops less light) interpolate every
    column of the table linearly; the noise field is that of the next integer level.

    Args:
        severities: subset of 1..5 to run.

    Shape:
        RGB images (N, 3, H, W); other channel counts get the noise and exposure
        but no colour cast.
    """

    name = "night"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"{ev:g} stops less light, +{g:g} stops gain (net {g - ev:g} EV), "
        f"{int(cast * 100)}% sodium-lamp cast, shot+read noise (SNR at mid-grey ~{_snr:.1f})"
        for i, ((ev, g, cast, *_), _snr) in enumerate(
            zip(
                LEVELS,
                [(0.18 * FULL_WELL / 2**ev) / (0.18 * FULL_WELL / 2**ev + READ_NOISE**2) ** 0.5 for ev, *_ in LEVELS],
            )
        )
    }

    def __init__(self, *, severities: Sequence[int] | None = None) -> None:
        super().__init__(severities=severities)

    def _sample(self, seeds: list[int], severity: float) -> dict[str, Tensor]:
        ev, gain, cast, *_ = interpolate_level(LEVELS, severity)
        n = len(seeds)
        return {
            "stops_lost": torch.full((n,), ev, dtype=torch.float64),
            "gain_stops": torch.full((n,), gain, dtype=torch.float64),
            "sodium_cast": torch.full((n,), cast, dtype=torch.float64),
        }

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        ev, gain, cast, desat, vignette, compress = interpolate_level(LEVELS, params.severity)
        _n, c, h, w = images.shape
        lin = srgb_to_linear(images)
        if c == 3:
            lin = _street_lighting(lin, cast, desat)
        # Daylight highlights (sky, sunlit walls) are not lit at night: compress them (monotone for <= 0.5).
        lin = lin.addcmul_(lin, lin, value=-compress)
        # Electrons collected: exposure, vignetting and full well folded into one (H, W) map.
        electrons = lin.mul_(_vignette(h, w, vignette, images.device).mul_(FULL_WELL * 2.0**-ev))
        sigma = electrons.add(READ_NOISE**2).sqrt_()
        noisy = electrons.addcmul_(sigma, _demosaic_correlate(noise_like(images, params.seeds)))
        return linear_to_srgb(noisy.mul_(2.0**gain / FULL_WELL))  # digital gain, then the tone curve


def _street_lighting(lin: Tensor, cast: float, desat: float) -> Tensor:
    """Desaturate toward luminance, then tint toward sodium light at constant luminance.

    Both steps are linear in RGB, so they are applied as one 3x3 colour matrix.
    """
    luma = torch.tensor(_LUMA, dtype=torch.float64)
    gains = 1.0 + cast * (torch.tensor(SODIUM, dtype=torch.float64) - 1.0)
    gains = gains / (gains * luma).sum()
    mix = (1.0 - desat) * torch.eye(3, dtype=torch.float64) + desat * luma[None, :].expand(3, 3)
    matrix = gains[:, None] * mix
    n, c, h, w = lin.shape
    return torch.matmul(matrix.to(lin), lin.reshape(n, c, h * w)).view(n, c, h, w)  # BLAS; a 1x1 conv is slower


def _vignette(h: int, w: int, strength: float, device: torch.device) -> Tensor:
    """Radial fall-off 1 - strength * r^2, r = distance from the centre / half-diagonal."""
    ys, xs = coordinate_grid(h, w, device)
    cy, cx = h / (2 * min(h, w)), w / (2 * min(h, w))
    r2 = ((ys - cy) ** 2 + (xs - cx) ** 2) / (cy**2 + cx**2)
    return 1.0 - strength * r2


def _demosaic_correlate(noise: Tensor) -> Tensor:
    """Correlate white noise over ~2 px with a separable [1, 2, 1] / 4 filter, keeping unit variance.

    Written as shifted sums (a 3-tap depthwise ``conv2d`` is several times slower on the CPU).
    """
    x = F.pad(noise, (1, 1, 1, 1), mode="reflect")
    x = x[..., :, :-2] + 2 * x[..., :, 1:-1] + x[..., :, 2:]
    x = x[..., :-2, :] + 2 * x[..., 1:-1, :] + x[..., 2:, :]
    return x * (1 / (16 * 0.375))  # 2-D variance of the normalised filter: (0.25^2 + 0.5^2 + 0.25^2)^2 = 0.375^2
