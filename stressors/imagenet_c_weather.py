"""ImageNet-C ``snow``, ``frost``, ``fog`` and ``spatter``, batched in torch.

Formulas, constants and random draws are those of ``imagecorruptions`` 1.1.2
(``imagecorruptions/corruptions.py``, the maintained packaging of Hendrycks &
Dietterich's ImageNet-C code). Every random quantity is drawn per sample from
its seed (:mod:`stressors.base`), with numpy's PCG64 generator on the CPU, and
has the reference's distribution; given the same draws the result equals the
reference's float output up to float32 rounding (tests/stressors/test_imagenet_c_weather_reference.py).

Image size (``reference_size``, default 224, as in :mod:`stressors.imagenet_c`):
``s = min(H, W) / reference_size``; ``reference_size=None`` (or a 224 px image)
runs the reference's pixel values verbatim. Each class docstring says what scales.

Frost textures: the six images of ``imagecorruptions`` 1.1.2 (``frost1.png`` ...
``frost6.jpg``, Apache License 2.0), vendored unchanged in ``stressors/data/frost``
(see the NOTICE.md there); as in the reference only the first five are ever drawn.
"""

from __future__ import annotations

import functools
import math
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from audit.contract.seeds import stream_seed
from stressors.base import Params, interpolate_level, uniform
from stressors.filters import correlate
from stressors.imagenet_c import _CACHE_ELEMENTS, _ImageNetC, imagenet_c_motion_kernels
from stressors.imagenet_c_warp import gaussian_filter

# Constants of imagecorruptions 1.1.2, corruptions.py (severity 1..5).
#: snow: (mean, std of the flake field, zoom, threshold, streak radius, streak sigma, image weight).
SNOW = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)
#: frost: (image weight, frost weight).
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
#: fog: (strength, wibble decay of the plasma fractal).
FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
#: spatter: (mean, std of the liquid field, its blur sigma, threshold, intensity or mud blur sigma, mud).
SPATTER = (
    (0.65, 0.3, 4, 0.69, 0.6, 0),
    (0.65, 0.3, 3, 0.68, 0.6, 0),
    (0.65, 0.3, 2, 0.68, 0.5, 0),
    (0.65, 0.3, 1, 0.65, 1.5, 1),
    (0.67, 0.4, 1, 0.65, 1.5, 1),
)
#: The reference draws one of the first five textures (``np.random.randint(5)``); frost6 is never used.
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
FROST_DRAWN = 5
#: sRGB luma weights: OpenCV's RGB2GRAY (snow) and the reference's ``rgb2gray`` (grey frost).
_CV_GRAY = (0.299, 0.587, 0.114)
_REF_GRAY = (0.2989, 0.5870, 0.1140)
#: Water (spatter 1-3) is pale turquoise, mud (4-5) brown, in the image's channel order as the reference.
WATER = (175 / 255, 238 / 255, 238 / 255)
MUD = (63 / 255, 42 / 255, 20 / 255)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(stream_seed(seed, stream)))


def _cache_chunks(images: Tensor) -> list[slice]:
    """Batch slices of about 2 MB on the CPU (elementwise passes then stay in the cache), one slice elsewhere."""
    n = images.shape[0]
    if images.device.type != "cpu":
        return [slice(0, n)]
    step = max(1, _CACHE_ELEMENTS // max(1, images[0].numel()))
    return [slice(start, start + step) for start in range(0, n, step)]


def _gray(images: Tensor, weights: tuple[float, float, float]) -> Tensor:
    """(N, 1, H, W) luma of RGB images; a 1-channel (or other) image is its own mean."""
    if images.shape[1] == 3:
        out = images[:, 0:1] * weights[0]
        out.add_(images[:, 1:2], alpha=weights[1]).add_(images[:, 2:3], alpha=weights[2])
        return out
    return images.mean(dim=1, keepdim=True)


# ------------------------------------------------------------------ snow


def snow_field(seed: int, height: int, width: int) -> np.ndarray:
    """One image's standard-normal flake field, float32 (H, W) (the reference's ``np.random.normal``)."""
    return _rng(seed, 1).standard_normal((height, width), dtype=np.float32)


class Snow(_ImageNetC):
    """ImageNet-C ``snow``: zoomed, thresholded noise streaked by motion blur, over a whitened image.

    Severity 1..5 sets (mean, std, zoom, threshold, streak radius, streak sigma, image
    weight) = (0.1, 0.3, 3, 0.5, 10, 4, 0.8) ... (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55). As
    the reference: a Gaussian field of that mean and std, the centre ``1 / zoom`` of it
    zoomed bilinearly (:func:`stressors.imagenet_c_warp.clipped_zoom`), values under the
    threshold set to 0, clipped to [0, 1], motion-blurred (ImageNet-C's line kernel, angle
    uniform in [-135, -45] degrees, replicated edges), rounded to 8 bits and cut to the
    image; the image becomes ``w x + (1 - w) max(x, 1.5 grey + 0.5)`` and the layer and its
    180-degree rotation are added. Random per sample: the field and the angle.

    Size: the zoom, the streak radius and sigma are multiplied by ``s`` (so flakes and
    streaks are the same fraction of the picture; when ``zoom * s < 1`` a larger field is
    drawn and sampled). Integer severities only: the seven parameters change together,
    the streak radius is an integer and the zoom sets a crop.
    """

    name = "snow"
    #: The reference's levels are not ordered by damage: mean |stressed - clean| at 224 px,
    #: 24 photos, imagecorruptions itself: 0.173, 0.281, 0.277, 0.331, 0.393 (level 3 < level 2).
    monotone_severity = False
    severity_meaning = {
        i + 1: f"snow: flakes mean {m}, threshold {t}, zoom {z}, streak radius {r} px at 224 px, image weight {w}"
        for i, (m, _, z, t, r, _, w) in enumerate(SNOW)
    }

    def _sample(self, seeds: list[int], severity: int) -> dict[str, Tensor]:
        return {"angle_deg": uniform(seeds, stream=2) * 90.0 - 135.0}

    def layer(self, images: Tensor, params: Params) -> Tensor:
        """The snow layer before the 180-degree copy is added, (N, 1, H, W) float32 on the images' device."""
        n, _, h, w = images.shape
        mean, std, zoom, threshold, radius, sigma, _ = SNOW[int(params.severity) - 1]
        scale = self._scale(images)
        z = zoom * scale
        fh, fw = max(h, math.ceil(h / z)), max(w, math.ceil(w / z))
        fields = np.stack([snow_field(s, fh, fw) for s in params.seeds]) if n else np.zeros((0, fh, fw), np.float32)
        # float64: the layer is rounded to 8 bits, and float32 sums flip a rounding now and then
        field = (torch.from_numpy(fields).to(images.device, torch.float64) * std + mean)[:, None]
        # the reference's clipped_zoom (a field of the image's size unless zoom * s < 1)
        ch0, ch1 = math.ceil(h / z), math.ceil(w / z)
        top, left = (fh - ch0) // 2, (fw - ch1) // 2
        region = field[..., top : top + ch0, left : left + ch1]
        size = (round(ch0 * z), round(ch1 * z))
        layer = F.interpolate(region, size=size, mode="bilinear", align_corners=True)
        layer = torch.where(layer < threshold, 0.0, layer).clamp_(0.0, 1.0)
        kernels = imagenet_c_motion_kernels(
            max(0, round(radius * scale)), max(sigma * scale, 1e-3), params["angle_deg"], layer.shape[-2:]
        )
        layer = correlate(layer, kernels, border="replicate")
        layer = torch.round(layer * 255.0) / 255.0
        return layer[..., :h, :w].to(torch.float32)

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        weight = SNOW[int(params.severity) - 1][6]
        layer = self.layer(images, params)
        layer = layer + layer.flip(-2, -1)
        out = torch.empty_like(images)
        for sl in _cache_chunks(images):  # w x + (1 - w) max(x, 1.5 grey + 0.5) + layer
            x = images[sl]
            whitened = _gray(x, _CV_GRAY).mul_(1.5).add_(0.5)
            torch.maximum(x, whitened, out=out[sl]).mul_(1 - weight).add_(x, alpha=weight).add_(layer[sl])
        return out


# ------------------------------------------------------------------ frost


def frost_texture_path(index: int) -> resources.abc.Traversable:
    """The vendored texture ``FROST_FILES[index]`` (package data)."""
    return resources.files("stressors") / "data" / "frost" / FROST_FILES[index]


@functools.lru_cache(maxsize=8)
def _frost_texture(index: int) -> np.ndarray:
    """A texture as (H, W, 3) uint8 RGB, decoded by OpenCV as the reference does."""
    import cv2  # OpenCV comes with albumentations; imported here to keep `import stressors` light

    data = np.frombuffer(frost_texture_path(index).read_bytes(), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:  # pragma: no cover - a damaged installation
        raise FileNotFoundError(f"frost texture {FROST_FILES[index]} could not be decoded")
    return np.ascontiguousarray(bgr[..., ::-1])


@functools.lru_cache(maxsize=16)
def frost_resized(index: int, new_width: int, new_height: int) -> Tensor:
    """A texture resized by OpenCV's bicubic ``cv2.resize`` (as the reference), float32 (3, H, W) in [0, 1]."""
    import cv2

    resized = cv2.resize(_frost_texture(index), dsize=(new_width, new_height), interpolation=cv2.INTER_CUBIC)
    return torch.from_numpy(resized).permute(2, 0, 1).float().div_(255.0)


def frost_scale(texture_hw: tuple[int, int], image_hw: tuple[int, int], scale: float) -> float:
    """The texture's resize factor: ``1.1 * max(scale, H / th, W / tw)``.

    The reference's rule is ``1.1 * max(1, H / th, W / tw)`` (keep the texture's pixels,
    enlarge it only to cover the image): the same with ``scale = 1``.
    """
    (th, tw), (h, w) = texture_hw, image_hw
    return 1.1 * max(scale, h / th, w / tw)


class Frost(_ImageNetC):
    """ImageNet-C ``frost``: blend the image with a crop of a photographed frost texture.

    Severity 1..5 is (image weight, frost weight): (1, 0.4), (0.8, 0.6), (0.7, 0.7),
    (0.65, 0.7), (0.6, 0.75); out = a x + b frost. As the reference: one of the textures
    ``frost1`` to ``frost5`` is drawn uniformly (``frost6`` is shipped but never drawn, as
    in the reference), resized by ``1.1 * max(1, H / th, W / tw)`` with OpenCV's bicubic
    filter, and a crop at a uniformly drawn position is blended in (grey for non-RGB
    images, the reference's ``rgb2gray``). Random per sample: the texture and the crop position.

    Size: the resize factor becomes ``1.1 * max(s, H / th, W / tw)``, so the frost
    crystals are the same fraction of the picture at every size above 224 px (the
    reference keeps their pixel size, so a small image sees a few magnified crystals;
    ``reference_size=None`` does that). Fractional severities interpolate both weights.
    Textures: ``stressors/data/frost`` (Apache-2.0, from imagecorruptions 1.1.2).
    """

    name = "frost"
    #: The reference's levels are not ordered by damage: mean |stressed - clean| at 224 px,
    #: 24 photos, imagecorruptions itself: 0.248, 0.285, 0.274, 0.286, 0.285 (3 < 2, 5 < 4).
    monotone_severity = False
    fractional_severities = True
    severity_meaning = {i + 1: f"frost texture: {a} x image + {b} x frost" for i, (a, b) in enumerate(FROST)}

    def _sample(self, seeds: list[int], severity: float) -> dict[str, Tensor]:
        u = uniform(seeds, 3, stream=1)
        return {"texture": (u[:, 0] * FROST_DRAWN).floor().long(), "crop_u": u[:, 1:]}

    def crops(self, images: Tensor, params: Params) -> Tensor:
        """The frost crop of every sample, float32 (N, 3, H, W) in [0, 1] on the images' device."""
        n, _, h, w = images.shape
        scale = self._scale(images)
        out = torch.empty(n, 3, h, w, device=images.device)
        for i in range(n):
            index = int(params["texture"][i])
            th, tw = _frost_texture(index).shape[:2]
            factor = frost_scale((th, tw), (h, w), scale)
            new_w, new_h = math.ceil(tw * factor), math.ceil(th * factor)
            texture = frost_resized(index, new_w, new_h)
            x0 = math.floor(float(params["crop_u"][i, 0]) * (new_h - h))
            y0 = math.floor(float(params["crop_u"][i, 1]) * (new_w - w))
            out[i] = texture[:, x0 : x0 + h, y0 : y0 + w].to(images.device)
        return out

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        a, b = interpolate_level(FROST, params.severity)
        frost = self.crops(images, params)
        if images.shape[1] != 3:
            frost = _gray(frost, _REF_GRAY)
        for sl in _cache_chunks(images):  # a x + b frost, in place on the crops
            frost[sl].mul_(b).add_(images[sl], alpha=a)
        return frost


# ------------------------------------------------------------------ fog


def next_power_of_2(x: int) -> int:
    """The reference's ``next_power_of_2``: 1 for 0, else the smallest power of two >= x."""
    return 1 if x == 0 else 2 ** (x - 1).bit_length()


def plasma_draw_count(mapsize: int) -> int:
    """How many uniform numbers one plasma fractal of side ``mapsize`` draws (3 per step's grid points)."""
    total, step = 0, mapsize
    while step >= 2:
        total += 3 * (mapsize // step) ** 2
        step //= 2
    return total


def plasma_draws(seed: int, mapsize: int) -> np.ndarray:
    """One image's unit-uniform draws for :func:`plasma_fractal`, float32, in the reference's order."""
    return _rng(seed, 1).random(plasma_draw_count(mapsize), dtype=np.float32)


def plasma_fractal(draws: Tensor, mapsize: int, decay: float) -> Tensor:
    """The reference's ``plasma_fractal`` (diamond-square), batched, in [0, 1].

    Each step's ``np.random.uniform(-wibble, wibble, shape)`` is ``wibble * (2 u - 1)``
    with ``u`` taken in order from ``draws`` (N, :func:`plasma_draw_count`).

    Returns:
        (N, mapsize, mapsize), the draws' dtype and device.
    """
    n = draws.shape[0]
    # The map at stride `step` is kept compact (k x k corners, k = mapsize / step); each step
    # computes the centres C, the points between horizontal neighbours L and between vertical
    # neighbours T exactly as the reference's strided slices, then interleaves [[G, L], [T, C]]
    # into the 2k x 2k map of the next stride (contiguous tensors only).
    grid = torch.zeros(n, 1, 1, dtype=draws.dtype, device=draws.device)
    step, wibble, used = mapsize, 100.0, 0

    def wibbled_mean(total: Tensor) -> Tensor:
        nonlocal used
        k = total.shape[-2] * total.shape[-1]
        u = draws[:, used : used + k].reshape(total.shape)
        used += k
        # total / 4 + wibble * uniform(-wibble, wibble), in place on the fresh `total`
        w2 = wibble * wibble
        return total.mul_(0.25).add_(u, alpha=2 * w2).sub_(w2)

    while step >= 2:
        k = grid.shape[-1]
        squares = grid + torch.roll(grid, -1, dims=1)
        centres = wibbled_mean(squares + torch.roll(squares, -1, dims=2))
        left = wibbled_mean(centres + torch.roll(centres, 1, dims=1) + grid + torch.roll(grid, -1, dims=2))
        top = wibbled_mean(centres + torch.roll(centres, 1, dims=2) + grid + torch.roll(grid, -1, dims=1))
        even = torch.stack([grid, left], dim=-1).reshape(n, k, 2 * k)
        odd = torch.stack([top, centres], dim=-1).reshape(n, k, 2 * k)
        grid = torch.stack([even, odd], dim=2).reshape(n, 2 * k, 2 * k)
        step //= 2
        wibble /= decay
    flat = grid.reshape(n, -1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    flat = flat / flat.amax(dim=1, keepdim=True)
    return flat.reshape(n, mapsize, mapsize)


class Fog(_ImageNetC):
    """ImageNet-C ``fog``: add a plasma fractal, rescale by the image's maximum.

    Severity 1..5 is (strength c, wibble decay d): (1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5),
    (3, 1.4); out = (x + c P) max(x) / (max(x) + c), with P the reference's diamond-square
    fractal in [0, 1] (side the next power of two of the longer side, 256 at 224 px, cut from
    the top left; a smaller decay keeps more fine detail). Random per sample: the fractal's
    uniform draws. Fractional severities interpolate c and d linearly (same draws).

    Size: the fractal is made for the image's size in reference pixels (``H / s`` by
    ``W / s``: 256 for any square image) and resized bilinearly to the image, so the fog's
    blobs are the same fraction of the picture at every size; the reference (and
    ``reference_size=None``) makes a map of ``next_power_of_2(max(H, W))`` instead.
    """

    name = "fog"
    #: Levels 3 and 4 differ in the fractal's decay only: mean |stressed - clean| at 224 px,
    #: 24 photos, imagecorruptions itself: 0.135, 0.149, 0.165, 0.165, 0.171, so a few images
    #: (or another fractal per level) order them either way.
    monotone_severity = False
    fractional_severities = True
    severity_meaning = {
        i + 1: f"fog: plasma fractal of strength {c}, wibble decay {d} (smaller: finer)" for i, (c, d) in enumerate(FOG)
    }

    def fractal(self, images: Tensor, params: Params) -> Tensor:
        """The fog layer P, (N, 1, H, W) float32 on the images' device."""
        n, _, h, w = images.shape
        _, decay = interpolate_level(FOG, params.severity)
        scale = self._scale(images)
        rh, rw = (h, w) if scale == 1.0 else (max(1, round(h / scale)), max(1, round(w / scale)))
        mapsize = next_power_of_2(max(rh, rw))
        count = plasma_draw_count(mapsize)
        draws = (
            np.stack([plasma_draws(s, mapsize) for s in params.seeds]) if n else np.zeros((0, count), dtype=np.float32)
        )
        draws_t = torch.from_numpy(draws).to(images.device, torch.float32)
        # On the CPU a few maps at a time (about 2 MB): the fractal's passes then stay in the cache.
        chunk = n if images.device.type != "cpu" else max(1, _CACHE_ELEMENTS // (mapsize * mapsize))
        layer = torch.empty(n, 1, rh, rw, device=images.device)
        for start in range(0, n, chunk):
            plasma = plasma_fractal(draws_t[start : start + chunk], mapsize, decay)
            layer[start : start + chunk, 0] = plasma[:, :rh, :rw]
        if (rh, rw) != (h, w):
            layer = F.interpolate(layer, size=(h, w), mode="bilinear", align_corners=False)
        return layer

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        strength, _ = interpolate_level(FOG, params.severity)
        top = images.amax(dim=(1, 2, 3), keepdim=True)
        gain = top / (top + strength)
        fractal = self.fractal(images, params)
        out = torch.empty_like(images)
        for sl in _cache_chunks(images):  # (x + c P) max / (max + c) = x * gain + P * (c * gain)
            torch.mul(images[sl], gain[sl], out=out[sl]).addcmul_(fractal[sl], gain[sl] * strength)
        return out


# ------------------------------------------------------------------ spatter


def spatter_field(seed: int, height: int, width: int) -> np.ndarray:
    """One image's standard-normal liquid field, float32 (H, W) (the reference's ``np.random.normal``)."""
    return _rng(seed, 1).standard_normal((height, width), dtype=np.float32)


def _water_mask(liquid: np.ndarray, truncation: float) -> np.ndarray:
    """The reference's water drops (spatter 1-3): OpenCV edges, distance, equalisation; float32 (H, W).

    ``liquid`` is the thresholded liquid layer of one image (float64). Runs OpenCV on the
    CPU, as the reference does, and returns ``liquid_u8 * dist / max`` (0 where the
    layer is empty).
    """
    import cv2

    # the reference's (liquid * 255).astype(np.uint8); clipped here (the reference wraps above 255)
    layer = np.clip(liquid * 255, 0, 255).astype(np.uint8)
    dist = 255 - cv2.Canny(layer, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, truncation, truncation, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = cv2.filter2D(dist, cv2.CV_8U, ker)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    m = layer * dist
    top = float(m.max())
    return m / top if top > 0 else np.zeros_like(m)


class Spatter(_ImageNetC):
    """ImageNet-C ``spatter``: water drops (severity 1-3) or mud (4-5) on the lens.

    Severity 1..5 is (mean, std, blur sigma, threshold, intensity or mud sigma, mud):
    (0.65, 0.3, 4, 0.69, 0.6, water), (0.65, 0.3, 3, 0.68, 0.6, water), (0.65, 0.3, 2,
    0.68, 0.5, water), (0.65, 0.3, 1, 0.65, 1.5, mud), (0.67, 0.4, 1, 0.65, 1.5, mud). As
    the reference: a Gaussian liquid field of that mean and std, blurred (skimage
    ``gaussian``, edges repeated), values under the threshold set to 0. Water: the drops'
    rims from OpenCV's Canny edges, distance transform (truncated at 20 px), histogram
    equalisation and an emboss filter, run per image on the CPU with OpenCV exactly as the
    reference (:func:`_water_mask`); pale turquoise (175, 238, 238) is added with that
    weight times the intensity. Mud: the drops (liquid above the threshold) blurred by the
    mud sigma, weights under 0.8 dropped, and the image covered by brown (63, 42, 20) with
    that weight. The colours go to channels 0, 1, 2 in order, as in the reference. Random
    per sample: the liquid field.

    Size: the blur sigmas and the distance truncation are multiplied by ``s``; the edge
    detector and the 3x3 filters are kept per pixel. Integer severities only: levels 1-3
    and 4-5 are different processes.
    """

    name = "spatter"
    #: Ordered at 224 px (mean |stressed - clean|, 24 photos, imagecorruptions itself: 0.003,
    #: 0.018, 0.031, 0.037, 0.062) but not on small images, where the first levels' drops
    #: depend on a handful of pixels.
    monotone_severity = False
    severity_meaning = {
        i + 1: (
            f"{'mud' if mud else 'water'} spatter: liquid mean {m}, std {sd}, blur {sg} px at 224 px, threshold {t}"
        )
        for i, (m, sd, sg, t, _, mud) in enumerate(SPATTER)
    }

    def liquid(self, images: Tensor, params: Params) -> Tensor:
        """The thresholded liquid layer, (N, 1, H, W) float32 on the images' device."""
        n, _, h, w = images.shape
        mean, std, sigma, threshold, _, _ = SPATTER[int(params.severity) - 1]
        fields = np.stack([spatter_field(s, h, w) for s in params.seeds]) if n else np.zeros((0, h, w), np.float32)
        liquid = torch.from_numpy(fields).to(images.device)[:, None].mul_(std).add_(mean)
        liquid = gaussian_filter(liquid, sigma * self._scale(images), mode="nearest")
        return torch.where(liquid < threshold, 0.0, liquid)

    def _apply(self, images: Tensor, params: Params) -> Tensor:
        _, _, _, threshold, intensity, mud = SPATTER[int(params.severity) - 1]
        scale = self._scale(images)
        liquid = self.liquid(images, params)
        c = images.shape[1]
        if not mud:
            mask = np.stack([_water_mask(layer[0], min(255.0, 20.0 * scale)) for layer in liquid.cpu().numpy()])
            weight = torch.from_numpy(mask).to(images.device)[:, None] * intensity
            color = torch.tensor(WATER, device=images.device)
            if c == 3:
                return torch.addcmul(images, weight, color.view(1, 3, 1, 1))
            # the reference adds the grey of the clipped colour layer to a grey image
            tint = (weight * color.view(1, 3, 1, 1)).clamp(0, 1)
            return images + _gray(tint, _REF_GRAY)
        drops = (liquid > threshold).to(torch.float32)
        m = gaussian_filter(drops, intensity * scale, mode="nearest")
        m = torch.where(m < 0.8, 0.0, m)
        color = torch.tensor(MUD, device=images.device).view(1, 3, 1, 1)
        if c != 3:
            color = _gray(color, _REF_GRAY)
        # x (1 - m) + colour m, in one pass
        return torch.lerp(images, color.expand_as(images), m)


__all__ = ["Fog", "Frost", "Snow", "Spatter", "plasma_fractal"]
