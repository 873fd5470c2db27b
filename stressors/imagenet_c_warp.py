"""ImageNet-C ``glass_blur``, ``zoom_blur`` and ``elastic_transform``, batched in torch.

Formulas, constants and random draws are those of ``imagecorruptions`` 1.1.2
(``imagecorruptions/corruptions.py``, the maintained packaging of Hendrycks &
Dietterich's ImageNet-C code). Every random quantity is drawn per sample from
its seed (:mod:`stressors.base`), with numpy's PCG64 generator on the CPU, and
has the reference's distribution; given the same draws the result equals the
reference's float output up to float32 rounding (tests/stressors/test_imagenet_c_warp_reference.py).

Image size (``reference_size``, default 224, as in :mod:`stressors.imagenet_c`):
``s = min(H, W) / reference_size``; ``reference_size=None`` (or a 224 px image)
runs the reference's pixel values verbatim.

- ``glass_blur``: the Gaussian sigma is multiplied by ``s``, the largest pixel
  displacement by ``s`` (rounded, at least 1 px); the number of passes is kept.
- ``zoom_blur``: size-independent (the zooms crop a fraction of the image).
- ``elastic_transform``: the reference already scales its smoothing (1 % of
  each side) and its field amplitude (0.5 % of the height) with the size, which
  leaves the displacement a constant number of pixels; here it is multiplied by
  ``s`` so that a severity moves the same fraction of the picture at every size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from audit.contract.seeds import stream_seed
from stressors.base import Params, interpolate_level
from stressors.imagenet_c import _CACHE_ELEMENTS, _ImageNetC

# Constants of imagecorruptions 1.1.2, corruptions.py (severity 1..5).
#: glass_blur: (Gaussian sigma, largest displacement in px, passes of the pixel shuffle).
GLASS_SIGMA_DELTA_ITERATIONS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
#: zoom_blur: the zoom factors averaged with the image, np.arange(1, stop, step) as in the reference.
ZOOM_FACTORS = tuple(
    tuple(float(z) for z in np.arange(1, stop, step))
    for stop, step in ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))
)
#: elastic_transform: the displacement field's gain alpha.
ELASTIC_ALPHA = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(stream_seed(seed, stream)))


# ------------------------------------------------------------------ scipy-style Gaussian filter


def scipy_gaussian_kernel(sigma: float, truncate: float = 4.0) -> Tensor:
    """``scipy.ndimage``'s 1-D Gaussian: sampled at integers, radius ``int(truncate * sigma + 0.5)``, float64."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * x**2 / max(sigma, 1e-12) ** 2)
    return k / k.sum()


def _border_index(n: int, radius: int, mode: str, device: torch.device) -> Tensor:
    i = torch.arange(-radius, n + radius, device=device)
    if mode == "nearest":
        return i.clamp(0, n - 1)
    # scipy's "reflect" (half-sample symmetric: d c b a | a b c d | d c b a), any radius
    i = i.remainder(2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _filter_axis(x: Tensor, kernel: Tensor, dim: int, mode: str) -> Tensor:
    radius = kernel.shape[0] // 2
    if radius == 0:
        return x * float(kernel[0])
    n = x.shape[dim]
    padded = x.index_select(dim, _border_index(n, radius, mode, x.device))
    weights = kernel.tolist()
    out = padded.narrow(dim, 0, n) * weights[0]
    for k in range(1, len(weights)):
        out.add_(padded.narrow(dim, k, n), alpha=weights[k])
    return out


def gaussian_filter(
    x: Tensor, sigma: float | tuple[float, float], *, truncate: float = 4.0, mode: str = "nearest"
) -> Tensor:
    """``skimage.filters.gaussian`` / ``scipy.ndimage.gaussian_filter`` over the last two axes.

    Args:
        x: (..., H, W) float tensor.
        sigma: one sigma, or (sigma_rows, sigma_columns), in pixels.
        truncate: the kernel's radius in sigmas (scipy's rule ``int(truncate * sigma + 0.5)``).
        mode: ``"nearest"`` (edge pixels repeated, skimage's default) or ``"reflect"``
            (half-sample symmetric, scipy's ``reflect``).
    """
    sy, sx = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    ky, kx = scipy_gaussian_kernel(sy, truncate), scipy_gaussian_kernel(sx, truncate)
    if x.device.type != "cpu" or x.ndim < 3 or x.numel() <= _CACHE_ELEMENTS:
        return _filter_axis(_filter_axis(x, ky, x.ndim - 2, mode), kx, x.ndim - 1, mode)
    # On the CPU, a few planes at a time: the shifted sums then stay in the cache.
    planes = x.reshape(-1, *x.shape[-2:])
    out = torch.empty_like(planes)
    chunk = max(1, _CACHE_ELEMENTS // max(1, planes[0].numel()))
    for start in range(0, planes.shape[0], chunk):
        part = planes[start : start + chunk]
        out[start : start + chunk] = _filter_axis(_filter_axis(part, ky, 1, mode), kx, 2, mode)
    return out.reshape(x.shape)


# ------------------------------------------------------------------ glass blur


def glass_draws(seed: int, height: int, width: int, delta: int, iterations: int) -> np.ndarray:
    """The reference's ``np.random.randint(-delta, delta, size=(2,))`` draws of one image, in loop order.

    Returns:
        int64 array (iterations, H - 2 delta, W - 2 delta, 2) holding (dx, dy) per visited
        pixel; entry ``[t, i, j]`` belongs to row ``H - delta - i``, column ``W - delta - j``
        (the reference visits rows and columns in decreasing order).
    """
    nh, nw = max(0, height - 2 * delta), max(0, width - 2 * delta)
    return _rng(seed, 1).integers(-delta, delta, size=(iterations, nh, nw, 2), dtype=np.int64)


def glass_source_index(draws: Tensor, height: int, width: int, delta: int) -> Tensor:
    """Where each output pixel of the reference's pixel "swap" loop takes its value from.

    The reference loops ``for h in range(H - delta, delta, -1): for w in range(W - delta,
    delta, -1)`` and runs ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an (H, W, 3)
    array, whose right-hand side holds *views*: the statement copies pixel (h', w') into
    (h, w) and leaves (h', w') as it was. Sequentially, the value copied is the one
    (h', w') holds at that moment: its new value if the loop visited it earlier in the
    pass (it lies in the visited region at a larger raster index), its value from before
    the pass otherwise. Those references point only to larger raster indices, so they
    form a forest, resolved exactly by pointer doubling (log2 of the longest chain
    rounds of one gather each): the result is the sequential loop's, vectorised.

    Args:
        draws: int64 (N, passes, H - 2 delta, W - 2 delta, 2) of (dx, dy), see :func:`glass_draws`.

    Returns:
        int64 (N, H * W): output pixel p takes the input's pixel ``index[p]`` (row-major).
    """
    n, passes, nh, nw = draws.shape[:4]
    hw = height * width
    device = draws.device
    source = torch.arange(hw, device=device).expand(n, hw).clone()
    if nh == 0 or nw == 0:
        return source
    rows = torch.arange(height - delta, delta, -1, device=device)
    cols = torch.arange(width - delta, delta, -1, device=device)
    a = (rows[:, None] * width + cols[None, :]).reshape(-1)  # visited positions, in draw order
    for t in range(passes):
        dx, dy = draws[:, t, ..., 0].reshape(n, -1), draws[:, t, ..., 1].reshape(n, -1)
        hb = rows[None, :, None].expand(n, nh, nw).reshape(n, -1) + dy
        wb = cols[None, None, :].expand(n, nh, nw).reshape(n, -1) + dx
        b = hb * width + wb
        visited_before = (hb > delta) & (hb <= height - delta) & (wb > delta) & (wb <= width - delta) & (b > a)
        pointer = torch.arange(hw, device=device).expand(n, hw).clone()
        pointer[:, a] = torch.where(visited_before, b, a)
        root_value = source.clone()
        root_value[:, a] = torch.where(visited_before, 0, source.gather(1, b))
        for _ in range(64):  # pointer doubling: at most log2(H * W) rounds
            nxt = pointer.gather(1, pointer)
            if torch.equal(nxt, pointer):
                break
            pointer = nxt
        source = root_value.gather(1, pointer)
    return source


class GlassBlur(_ImageNetC):
    """ImageNet-C ``glass_blur``: Gaussian blur, a local pixel shuffle, Gaussian blur again.

    Severity 1..5 is (sigma, largest displacement, passes) at 224 px: (0.7, 1, 2),
    (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2). As the reference: blur (skimage
    ``gaussian``, edges repeated, radius 4 sigma), quantise to 8 bits (``np.uint8``,
    truncation), shuffle (:func:`glass_source_index`: each visited pixel takes the value
    of a pixel displaced by (dx, dy), both uniform integers in [-delta, delta - 1], in the
    reference's sequential order, exactly), blur again. The displacements are drawn per
    sample. Integer severities only: the displacement and the number of passes are integers.
    """

    name = "glass_blur"
    #: The reference's levels are not ordered by damage: mean |stressed - clean| at 224 px,
    #: 4 photos, imagecorruptions itself: 0.0492, 0.0489, 0.0544, 0.0527, 0.0534 (level 2 has
    #: one pass, level 1 two; level 3 three passes, level 4 two).
    monotone_severity = False
    severity_meaning = {
        i + 1: f"glass: blur sigma {s} px, pixels shuffled up to {d} px, {k} pass(es) at 224 px"
        for i, (s, d, k) in enumerate(GLASS_SIGMA_DELTA_ITERATIONS)
    }

    def _settings(self, images: Tensor, severity: float) -> tuple[float, int, int]:
        sigma, delta, passes = GLASS_SIGMA_DELTA_ITERATIONS[int(severity) - 1]
        scale = self._scale(images)
        return sigma * scale, max(1, round(delta * scale)), passes

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        n, c, h, w = images.shape
        sigma, delta, passes = self._settings(images, params.severity)
        x = gaussian_filter(images, sigma, mode="nearest")
        x = torch.floor(x.clamp(0.0, 1.0) * 255.0) / 255.0
        draws = np.stack([glass_draws(s, h, w, delta, passes) for s in params.seeds]) if n else None
        if draws is not None and draws.size:
            index = glass_source_index(torch.from_numpy(draws).to(images.device), h, w, delta)
            x = x.reshape(n, c, h * w).gather(2, index[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)
        return gaussian_filter(x, sigma, mode="nearest")


# ------------------------------------------------------------------ zoom blur


def clipped_zoom(x: Tensor, zoom: float, *, crop: bool = True) -> Tensor:
    """The reference's ``clipped_zoom``: crop the centre ``ceil(side / zoom)``, zoom it bilinearly.

    ``scipy.ndimage.zoom(order=1)`` maps output pixel i to input ``i * (n_in - 1) / (n_out - 1)``
    with ``n_out = round(n_in * zoom)``: ``F.interpolate(..., align_corners=True)``.
    With ``crop`` the result is cut to the input's size from the top left, as the reference does.

    Shape:
        x: (N, C, H, W); returns (N, C, H, W) with ``crop``, else (N, C, round(ch0 * zoom), round(ch1 * zoom)).
    """
    h, w = x.shape[-2:]
    ch0, ch1 = math.ceil(h / zoom), math.ceil(w / zoom)
    top0, top1 = (h - ch0) // 2, (w - ch1) // 2
    region = x[..., top0 : top0 + ch0, top1 : top1 + ch1]
    size = (round(ch0 * zoom), round(ch1 * zoom))
    out = F.interpolate(region, size=size, mode="bilinear", align_corners=True)
    return out[..., :h, :w] if crop else out


class ZoomBlur(_ImageNetC):
    """ImageNet-C ``zoom_blur``: the mean of the image and centre zooms of it.

    Severity 1..5 averages the image with its centre zooms by 1, 1.01, ... up to 1.10,
    1.15, 1.20, 1.25, 1.30 (steps 0.01, 0.01, 0.02, 0.02, 0.03; the reference's
    ``np.arange``), each a bilinear zoom of the central ``ceil(side / z)`` crop
    (:func:`clipped_zoom`). Size-independent. Integer severities only: each level is a
    different list of zooms.
    """

    name = "zoom_blur"
    severity_meaning = {
        i + 1: f"mean of {len(z)} centre zooms from 1 to {z[-1]:.2f} and the image" for i, z in enumerate(ZOOM_FACTORS)
    }

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        zooms = ZOOM_FACTORS[int(params.severity) - 1]
        out = images.clone()
        for z in zooms:
            out.add_(clipped_zoom(images, z))
        return out.div_(len(zooms) + 1)


# ------------------------------------------------------------------ elastic transform


def elastic_fields(seed: int, height: int, width: int) -> np.ndarray:
    """One image's two unit-uniform fields (float32, (2, H, W)): the reference's dx, then dy draw."""
    return _rng(seed, 1).random((2, height, width), dtype=np.float32)


class ElasticTransform(_ImageNetC):
    """ImageNet-C ``elastic_transform``: a smooth random displacement field, bilinear resampling.

    As the reference: two fields uniform in [-m, m], m = 0.005 H, each smoothed by a Gaussian
    of sigma (0.01 H, 0.01 W) (radius 3 sigma, symmetric borders) and multiplied by alpha =
    12.5, 16.25, 21.25, 25, 30 for severity 1..5, displace the sampling point of every pixel
    (dx along columns, dy along rows); the image is read bilinearly with symmetric
    reflection outside (``map_coordinates(order=1, mode='reflect')``). At 224 px the
    displacement's standard deviation is about 0.08 alpha px (1 to 2.4 px). The uniform
    fields are drawn per sample. Fractional severities interpolate alpha linearly (the
    fields are those of the next level). Size: alpha is multiplied by ``s`` (module docstring).
    """

    name = "elastic_transform"
    fractional_severities = True
    severity_meaning = {
        i + 1: f"elastic warp, gain alpha {a:g} on a field smoothed over 1% of the side"
        for i, a in enumerate(ELASTIC_ALPHA)
    }

    def displacement(self, images: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        """The (dx, dy) fields in pixels, float32 (N, H, W), on the images' device."""
        n, _, h, w = images.shape
        fields = (
            np.stack([elastic_fields(s, h, w) for s in params.seeds]) if n else np.zeros((0, 2, h, w), dtype=np.float32)
        )
        u = torch.from_numpy(fields).to(images.device)
        amplitude = h * 0.005
        alpha = interpolate_level(ELASTIC_ALPHA, params.severity) * self._scale(images)
        smooth = gaussian_filter(u * (2 * amplitude) - amplitude, (h * 0.01, w * 0.01), truncate=3.0, mode="reflect")
        d = smooth * alpha
        return d[:, 0], d[:, 1]

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        h, w = images.shape[-2:]
        dx, dy = self.displacement(images, params)
        ys = torch.arange(h, device=images.device, dtype=torch.float32)[None, :, None]
        xs = torch.arange(w, device=images.device, dtype=torch.float32)[None, None, :]
        # grid_sample's reflection with align_corners=False mirrors at -0.5 and side - 0.5 and
        # clamps to the border pixels: scipy's half-sample symmetric "reflect" for order 1.
        gx = (xs + dx + 0.5) * (2.0 / w) - 1.0
        gy = (ys + dy + 0.5) * (2.0 / h) - 1.0
        grid = torch.stack([gx, gy], dim=-1)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


__all__ = [
    "ElasticTransform",
    "GlassBlur",
    "ZoomBlur",
    "clipped_zoom",
    "gaussian_filter",
    "glass_source_index",
]
