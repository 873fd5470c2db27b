"""Kernels and fast batched filtering shared by the blur-type stressors.

Large-kernel convolution in torch on the CPU is slow (a 21x21 depthwise
``conv2d`` runs at ~80 images/s at 224x224 on two cores). Every blur here goes
through :func:`fft_filter` instead: the image is padded at its borders (reflect
or replicate, as OpenCV does), both image and kernel are transformed with a
real FFT of a size whose prime factors are 2, 3 and 5, multiplied and
transformed back. The cost does not depend on the kernel size, and per-sample
kernels (a motion blur with a different angle per image) cost nothing extra.
The result equals a direct spatial correlation up to float32 rounding.

Kernels with few non-zero taps (motion streaks) are cheaper as that direct
correlation: :func:`sparse_filter` sums one shifted view of the image per tap.
:func:`correlate` picks, per sample, whichever of the two is cheaper on the CPU.

Kernels are built on the CPU in float64 (they are tiny) and moved to the
images' device by :func:`fft_filter`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Largest number of complex values one FFT chunk may hold (bounds memory at large sizes).
_CHUNK_ELEMENTS = 1 << 25


def fast_fft_size(n: int) -> int:
    """The smallest even integer >= ``n`` whose prime factors are all 2, 3 or 5.

    >>> fast_fft_size(230), fast_fft_size(256), fast_fft_size(241)
    (240, 256, 250)
    """
    m = max(2, n)
    while True:
        if m % 2 == 0:
            k = m
            for p in (2, 3, 5):
                while k % p == 0:
                    k //= p
            if k == 1:
                return m
        m += 1


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> Tensor:
    """A normalised 1-D Gaussian, integrated over each pixel's width.

    Integrating (rather than sampling the density at pixel centres) keeps
    sub-pixel sigmas meaningful, so a blur of sigma 0.4 px at 48 px matches a
    blur of sigma 1.6 px at 192 px followed by downscaling.

    Args:
        sigma: standard deviation in pixels (> 0).
        radius: half-width; default ``ceil(4 * sigma) + 1``.

    Returns:
        float64 tensor of shape (2 * radius + 1,) summing to 1.
    """
    if radius is None:
        radius = math.ceil(4.0 * sigma) + 1
    edges = (torch.arange(-radius, radius + 2, dtype=torch.float64) - 0.5) / (sigma * math.sqrt(2.0))
    cdf = torch.special.erf(edges)
    k = cdf[1:] - cdf[:-1]
    return k / k.sum()


def gaussian_kernel2d(sigma: float, radius: int | None = None) -> Tensor:
    """A normalised isotropic 2-D Gaussian, shape (2r + 1, 2r + 1), float64."""
    k = gaussian_kernel1d(sigma, radius)
    return torch.outer(k, k)


def disk_kernel(radius: float) -> Tensor:
    """A normalised anti-aliased disk (a defocused lens' point-spread function).

    A pixel's weight is the fraction of it inside the circle, approximated by
    ``clamp(radius + 0.5 - distance, 0, 1)``, so the kernel grows smoothly with
    ``radius`` instead of jumping at integer radii.

    Args:
        radius: disk radius in pixels (>= 0; 0 gives the identity kernel).

    Returns:
        float64 tensor of shape (2R + 1, 2R + 1), R = ceil(radius + 0.5), summing to 1.
    """
    half = math.ceil(radius + 0.5)
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    dist = torch.sqrt(x[:, None] ** 2 + x[None, :] ** 2)
    k = (radius + 0.5 - dist).clamp(0.0, 1.0)
    return k / k.sum()


def line_kernels(length: float, angles_deg: Tensor) -> Tensor:
    """Normalised anti-aliased line kernels (linear motion blur), one per angle.

    The segment is centred, ``length`` pixels long, at ``angle`` degrees
    counter-clockwise from the x axis; it is sampled every quarter pixel and
    splatted bilinearly, so short and oblique lines keep their length.

    Args:
        length: segment length in pixels (>= 0; below 1 gives the identity).
        angles_deg: angles in degrees, shape (N,).

    Returns:
        float64 tensor of shape (N, K, K), K = 2 * ceil(length / 2) + 3, each summing to 1.
    """
    n = angles_deg.shape[0]
    half = math.ceil(length / 2) + 1
    size = 2 * half + 1
    steps = max(2, math.ceil(length * 4) + 1)
    t = torch.linspace(-length / 2, length / 2, steps, dtype=torch.float64)
    theta = torch.deg2rad(angles_deg.to(torch.float64))[:, None]
    xs = half + t[None, :] * torch.cos(theta)
    ys = half - t[None, :] * torch.sin(theta)  # image rows grow downwards
    return _splat(xs, ys, size, n)


def _splat(xs: Tensor, ys: Tensor, size: int, n: int) -> Tensor:
    """Bilinearly accumulate unit masses at (xs, ys) into n (size, size) grids, normalised."""
    x0, y0 = xs.floor(), ys.floor()
    fx, fy = xs - x0, ys - y0
    out = torch.zeros(n, size * size, dtype=torch.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi = (x0 + dx).long().clamp(0, size - 1)
        yi = (y0 + dy).long().clamp(0, size - 1)
        out.scatter_add_(1, yi * size + xi, w)
    out = out.view(n, size, size)
    return out / out.sum(dim=(1, 2), keepdim=True)


def fft_filter(images: Tensor, kernels: Tensor, *, border: str = "reflect") -> Tensor:
    """Correlate every image with a kernel (the same for all, or one per sample), via FFT.

    Equivalent to ``cv2.filter2D`` with the kernel's centre at ``(kh // 2, kw // 2)``
    and, for ``border="reflect"``, OpenCV's default ``BORDER_REFLECT_101``.

    Args:
        images: float32 images.
        kernels: one kernel (kh, kw) or (1, kh, kw) for the whole batch, or one
            per sample (N, kh, kw); kh and kw odd. Any float dtype, any device.
        border: ``"reflect"`` (reflect-101) or ``"replicate"`` (edge pixels repeated).
            Reflection falls back to replication when the kernel is larger than the image.

    Returns:
        the filtered images, float32, on ``images.device``.

    Shape:
        images: (N, C, H, W); returns (N, C, H, W).
    """
    if kernels.ndim == 2:
        kernels = kernels[None]
    n, c, h, w = images.shape
    kh, kw = kernels.shape[-2:]
    if kh == 1 and kw == 1:
        return images * kernels.reshape(-1, 1, 1, 1).to(images)
    ry, rx = kh // 2, kw // 2
    mode = border if (border == "replicate" or (ry < h and rx < w)) else "replicate"
    hp, wp = h + 2 * ry, w + 2 * rx
    hf, wf = fast_fft_size(hp), fast_fft_size(wp)
    kernels = kernels.to(device=images.device, dtype=torch.float32)
    # Flip and wrap the kernel so that circular convolution performs a centred correlation.
    kpad = torch.zeros(kernels.shape[0], hf, wf, device=images.device, dtype=torch.float32)
    kpad[:, :kh, :kw] = kernels.flip(-2, -1)
    kpad = torch.roll(kpad, shifts=(-ry, -rx), dims=(-2, -1))
    kspec = torch.fft.rfft2(kpad)
    per_sample = kernels.shape[0] != 1
    chunk = max(1, _CHUNK_ELEMENTS // max(1, c * hf * (wf // 2 + 1)))
    outs = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        x = images[start:stop]
        x = F.pad(x, (rx, rx, ry, ry), mode=mode) if (rx or ry) else x
        x = F.pad(x, (0, wf - wp, 0, hf - hp))
        spec = torch.fft.rfft2(x)
        ks = kspec[start:stop] if per_sample else kspec
        y = torch.fft.irfft2(spec * ks[:, None], s=(hf, wf))
        outs.append(y[..., ry : ry + h, rx : rx + w])
    return torch.cat(outs) if len(outs) > 1 else outs[0]


#: One FFT "unit" (hf * wf * log2(hf * wf), per image) costs about as much as this many
#: direct taps per image pixel (measured at 224x224 on one CPU core); :func:`correlate` uses it to choose.
_FFT_VS_TAP = 3.4


def correlate(images: Tensor, kernels: Tensor, *, border: str = "reflect") -> Tensor:
    """:func:`fft_filter`, or :func:`sparse_filter` for the samples whose kernel has few taps.

    On the CPU each sample whose kernel has few enough non-zero taps that the
    direct sum is cheaper than the FFT goes through :func:`sparse_filter`, the
    others through :func:`fft_filter`. The choice is made per sample from its
    own kernel and the image size only, so a sample's result does not depend on
    the rest of the batch. Off the CPU everything goes through the FFT.

    Shape:
        images: (N, C, H, W); kernels: (kh, kw), (1, kh, kw) or (N, kh, kw); returns (N, C, H, W).
    """
    if kernels.ndim == 2:
        kernels = kernels[None]
    if images.device.type != "cpu" or images.shape[0] == 0:
        return fft_filter(images, kernels, border=border)
    _n, _, h, w = images.shape
    kh, kw = kernels.shape[-2:]
    hf, wf = fast_fft_size(h + 2 * (kh // 2)), fast_fft_size(w + 2 * (kw // 2))
    budget = _FFT_VS_TAP * hf * wf * math.log2(hf * wf) / (h * w)
    taps = (kernels != 0).flatten(1).sum(dim=1)
    direct = taps <= budget
    if kernels.shape[0] == 1 or bool(direct.all()) or not bool(direct.any()):
        if bool(direct.all()):
            return sparse_filter(images, kernels, border=border)
        return fft_filter(images, kernels, border=border)
    out = torch.empty_like(images)
    fast = torch.nonzero(direct).flatten()
    slow = torch.nonzero(~direct).flatten()
    out[fast] = sparse_filter(images[fast], kernels[fast], border=border)
    out[slow] = fft_filter(images[slow], kernels[slow], border=border)
    return out


def sparse_filter(images: Tensor, kernels: Tensor, *, border: str = "reflect") -> Tensor:
    """:func:`fft_filter` computed directly, as a weighted sum of shifted images (one per non-zero tap).

    Same arguments, borders and result (up to float32 rounding) as :func:`fft_filter`,
    for kernels with few non-zero taps (motion streaks: a 61x61 one-sided ImageNet-C
    kernel holds 31 taps). Each sample is accumulated separately from its own taps,
    in a fixed order, so its result does not depend on the rest of the batch. The
    batch is padded once by the bounding box of all non-zero taps (not the full
    kernel): the values read are the same as with full padding.

    :func:`correlate` chooses between the two: the cost here grows with the number
    of taps, the FFT's does not (at 224x224 on one CPU core the direct sum wins
    below roughly 80 taps).

    Shape:
        images: (N, C, H, W); kernels: (kh, kw), (1, kh, kw) or (N, kh, kw); returns (N, C, H, W).
    """
    if kernels.ndim == 2:
        kernels = kernels[None]
    n, _c, h, w = images.shape
    kh, kw = kernels.shape[-2:]
    ry, rx = kh // 2, kw // 2
    mode = border if (border == "replicate" or (ry < h and rx < w)) else "replicate"
    kernels = kernels.detach().to(device="cpu", dtype=torch.float64)
    support = (kernels != 0).any(dim=0)
    if not bool(support.any()):
        return torch.zeros_like(images)
    rows = torch.nonzero(support.any(dim=1)).flatten()
    cols = torch.nonzero(support.any(dim=0)).flatten()
    top, bottom = max(0, ry - int(rows[0])), max(0, int(rows[-1]) - ry)
    left, right = max(0, rx - int(cols[0])), max(0, int(cols[-1]) - rx)
    padded = F.pad(images, (left, right, top, bottom), mode=mode) if (top or bottom or left or right) else images
    out = torch.empty_like(images)
    per_sample = kernels.shape[0] != 1
    taps = [_taps(k) for k in kernels]
    for i in range(n):
        x = padded[i]
        acc = out[i]
        first = True
        for dy, dx, weight in taps[i if per_sample else 0]:
            y0, x0 = top + dy - ry, left + dx - rx
            view = x[:, y0 : y0 + h, x0 : x0 + w]
            if first:
                torch.mul(view, weight, out=acc)
                first = False
            else:
                acc.add_(view, alpha=weight)
        if first:
            acc.zero_()
    return out


def _taps(kernel: Tensor) -> list[tuple[int, int, float]]:
    """Non-zero taps of one (kh, kw) float64 kernel as (row, column, weight), row-major."""
    idx = torch.nonzero(kernel)
    return [(int(r), int(q), float(kernel[r, q])) for r, q in idx.tolist()]


def coordinate_grid(height: int, width: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates normalised by the shorter side.

    Returns:
        ``(y, x)`` float32 tensors of shape (H, W) on ``device``: ``x`` runs from
        ``0.5 / s`` to ``(W - 0.5) / s`` with ``s = min(H, W)``, so distances in
        these units are fractions of the shorter side whatever the size.
    """
    s = float(min(height, width))
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / s
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / s
    return ys[:, None].expand(height, width), xs[None, :].expand(height, width)


def srgb_to_linear(x: Tensor) -> Tensor:
    """The sRGB transfer function, inverted (IEC 61966-2-1): encoded [0, 1] -> linear light."""
    # exp(2.4 * log(.)) is several times faster than ``**`` on the CPU, with the same result in float32.
    return torch.where(x <= 0.04045, x / 12.92, torch.exp(2.4 * torch.log((x.clamp(min=0.04045) + 0.055) / 1.055)))


def linear_to_srgb(x: Tensor) -> Tensor:
    """The sRGB transfer function: linear light -> encoded [0, 1] (input clamped to [0, 1])."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * torch.exp(torch.log(x.clamp(min=0.0031308)) / 2.4) - 0.055)
