"""The stressor contract as checks a plugin author can run (like scikit-learn's ``check_estimator``).

::

    from stressors.testing import check_stressor

    def test_my_rain_stressor():
        check_stressor(Rain())

:func:`check_stressor` runs every check that applies and raises
``AssertionError`` naming the stressor, the check and the severity at fault.
cvaudit's own tests run it over every entry of :func:`stressors.available`, so a
built-in and a plugin are held to the same contract:

- the interface: ``name``, a non-empty ``severities``, ``model_aware``, and
  ``sample_params``/``apply`` (image stressors) or ``perturb`` (attacks);
- the output contract at every severity: same shape, dtype and device, finite,
  in [0, 1]; float16/bfloat16 inputs keep their dtype and match float32;
- determinism: the same seed gives bit-identical images;
- batch and order invariance: a sample is stressed identically alone, in a
  reordered sub-batch or in the full batch (randomness keyed by sample id):
  bit for bit for image stressors; within 1e-5 for attacks, whose gradients
  through a batched forward pass may differ in the last float32 bit with the
  batch size (an L2 step normalises those gradients);
- recordable parameters (image stressors): ``params.record(i)`` is JSON;
- monotone difficulty (image stressors with two or more severities, unless the
  class sets ``monotone_severity = False``): the mean absolute change from the
  clean image grows strictly with severity on photo-like images;
- fractional severities (image stressors): a stressor that declares
  ``fractional_severities = True``, asked with ``sample_params(..., fractional=True)``,
  meets the output contract, determinism and
  batch invariance at fractional severities across its whole
  ``severity_range``, gives at an integer written as a float (``3.0``) exactly
  the image of the integer level, grows strictly in damage on a grid of
  half-levels on images of at least 96 px (unless ``monotone_severity = False``) and refuses a severity
  outside its range; without ``fractional=True`` (and for a stressor that does
  not declare it) a fractional severity is refused with a ``StressorError``;
- attacks: the perturbation stays inside the ε ball of the attack's norm;
- boxes (image stressors that declare ``moves_pixels``, :mod:`stressors.boxes`):
  :func:`~stressors.boxes.stress_with_boxes` gives the images of ``apply``; a
  photometric stressor keeps every box where it was; a geometric one is the
  identity at severity 0 (when its ``severity_range`` starts at 0), moves boxes
  with the pixels (a filled box drawn on a black frame, stressed: the bounding box
  of its connected component in the output is the moved box, within
  :data:`BOX_TOLERANCE` pixels, at every severity), deterministically and
  identically in a reordered sub-batch. A stressor that needs boxes
  (``needs_boxes``) gets, in every check, a few boxes derived from each sample id.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stressors.base import StressorError, sample_keys
from stressors.boxes import box_support, stress_with_boxes

__all__ = [
    "BOX_TOLERANCE",
    "check_batch_invariance",
    "check_box_conformance",
    "check_determinism",
    "check_fractional_severity",
    "check_interface",
    "check_low_precision",
    "check_monotone_severity",
    "check_output_contract",
    "check_params_recordable",
    "check_perturbation_bound",
    "check_stressor",
    "photo_like",
    "sample_boxes",
    "tiny_classifier",
]

_IDS = [f"conformance-{i}" for i in range(6)]
#: How far (pixels) a moved box may be from the bounding box of the moved pixels it describes:
#: bilinear resampling thresholded at half intensity moves an edge by up to half a pixel, the
#: pixel grid rounds it by up to one, and a rotated corner's tip loses up to about half a pixel more.
BOX_TOLERANCE = 2.0


def sample_boxes(ids: list[str], size: tuple[int, int]) -> list[Tensor]:
    """One to three boxes per sample, drawn from its id alone (so they follow the sample in any batch).

    Shape:
        returns one ``(K_i, 4)`` float64 xyxy tensor per id, inside the ``(H, W)`` frame.
    """
    height, width = size
    out = []
    for sid in ids:
        g = torch.Generator().manual_seed(int(sample_keys([sid])[0]) & 0x7FFFFFFF)
        k = int(torch.randint(1, 4, (1,), generator=g))
        wh = torch.rand(k, 2, generator=g, dtype=torch.float64) * 0.3 + 0.15  # 15..45 % of the frame
        xy = torch.rand(k, 2, generator=g, dtype=torch.float64) * (1 - wh)
        scale = torch.tensor([width, height], dtype=torch.float64)
        out.append(torch.cat([xy * scale, (xy + wh) * scale], dim=1))
    return out


def _box_kwargs(stressor: Any, ids: list[str], size: tuple[int, int]) -> dict[str, Any]:
    """``boxes=`` for a stressor that needs them (:func:`sample_boxes`), else nothing."""
    return {"boxes": sample_boxes(ids, size)} if getattr(stressor, "needs_boxes", False) else {}


def photo_like(n: int = 6, size: int = 32, *, channels: int = 3, seed: int = 0) -> Tensor:
    """Images with smooth structure and fine texture, like photographs (not white noise).

    Shape:
        returns (n, channels, size, size) float32 in [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 6, 6, generator=g)
    fine = torch.rand(n, 1, max(size // 4, 2), max(size // 4, 2), generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    t = F.interpolate(fine, size=(size, size), mode="bilinear", align_corners=False)
    return (0.6 * x + 0.4 * t).clamp(0, 1)


class _Tiny(nn.Module):
    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.head = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1))


def tiny_classifier(channels: int = 3, classes: int = 4, *, seed: int = 0) -> nn.Module:
    """A small deterministic CNN (fixed seeded weights, eval mode) for checking attacks."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = _Tiny(channels, classes).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    return model


def _name(stressor: Any) -> str:
    return str(getattr(stressor, "name", type(stressor).__name__))


def _fail(stressor: Any, check: str, message: str) -> AssertionError:
    return AssertionError(f"stressor {_name(stressor)!r}: {check}: {message}")


def _run(
    stressor: Any,
    images: Tensor,
    ids: list[str],
    severity: Any,
    *,
    seed: int,
    model: nn.Module | None,
    fractional: bool = False,
) -> Tensor:
    keys = sample_keys(ids)
    if fractional:
        boxes = _box_kwargs(stressor, ids, tuple(images.shape[-2:]))
        return stressor.apply(images, stressor.sample_params(keys, severity, seed=seed, fractional=True, **boxes))
    if getattr(stressor, "model_aware", False):
        with torch.no_grad():
            labels = model(images.float()).argmax(dim=1)
        with torch.enable_grad():
            return stressor.perturb(model, images, labels, severity=severity, sample_ids=keys, seed=seed)
    boxes = _box_kwargs(stressor, ids, tuple(images.shape[-2:]))
    return stressor.apply(images, stressor.sample_params(keys, severity, seed=seed, **boxes))


def _fit(stressor: Any, images: Tensor, model: nn.Module, *, seed: int) -> None:
    """Fit a fitted attack (trait ``needs_fit``) on ``images`` with the model's own predictions as labels."""
    keys = sample_keys(_IDS[: images.shape[0]])
    with torch.no_grad():
        labels = model(images.float()).argmax(dim=1)
    stressor.fit(model, lambda: iter([(images.float(), labels, keys)]), seed=seed)


def check_interface(stressor: Any) -> None:
    """``name``, non-empty ``severities``, ``model_aware`` and the methods of its kind."""
    name = getattr(stressor, "name", None)
    if not isinstance(name, str) or not name:
        raise _fail(stressor, "interface", "'name' must be a non-empty string")
    severities = list(getattr(stressor, "severities", ()) or ())
    if not severities:
        raise _fail(stressor, "interface", "'severities' must be a non-empty sequence")
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in severities):
        raise _fail(stressor, "interface", f"severities must be finite numbers, got {severities}")
    if not isinstance(getattr(stressor, "model_aware", None), bool):
        raise _fail(stressor, "interface", "'model_aware' must be a bool")
    needed = ("perturb",) if stressor.model_aware else ("sample_params", "apply")
    missing = [m for m in needed if not callable(getattr(stressor, m, None))]
    if missing:
        raise _fail(stressor, "interface", f"missing method(s) {missing}")


def check_output_contract(stressor: Any, images: Tensor, *, seed: int = 0, model: nn.Module | None = None) -> None:
    """At every severity: same shape, dtype and device; finite values in [0, 1]."""
    ids = _IDS[: images.shape[0]]
    for severity in stressor.severities:
        out = _run(stressor, images, ids, severity, seed=seed, model=model)
        where = f"severity {severity}"
        if not isinstance(out, Tensor):
            raise _fail(stressor, "output", f"{where}: returned {type(out).__name__}, not a Tensor")
        if out.shape != images.shape or out.dtype != images.dtype or out.device != images.device:
            raise _fail(
                stressor,
                "output",
                f"{where}: got {tuple(out.shape)} {out.dtype} on {out.device}, "
                f"expected {tuple(images.shape)} {images.dtype} on {images.device}",
            )
        if not torch.isfinite(out).all():
            raise _fail(stressor, "output", f"{where}: NaN or inf in the output")
        if out.numel() and (float(out.min()) < 0 or float(out.max()) > 1):
            raise _fail(stressor, "output", f"{where}: values outside [0, 1]")


def check_determinism(stressor: Any, images: Tensor, *, seed: int = 0, model: nn.Module | None = None) -> None:
    """The same seed and sample ids give bit-identical images, at every severity."""
    ids = _IDS[: images.shape[0]]
    for severity in stressor.severities:
        a = _run(stressor, images, ids, severity, seed=seed, model=model)
        b = _run(stressor, images, ids, severity, seed=seed, model=model)
        if not torch.equal(a, b):
            raise _fail(stressor, "determinism", f"severity {severity}: two calls with seed {seed} differ")


def check_batch_invariance(stressor: Any, images: Tensor, *, seed: int = 0, model: nn.Module | None = None) -> None:
    """A sample comes out the same alone, in a reordered sub-batch and in the whole batch.

    Image stressors must match bit for bit; attacks within 1e-5 (module docstring).
    """
    ids = _IDS[: images.shape[0]]
    attack = bool(getattr(stressor, "model_aware", False))

    def same(a: Tensor, b: Tensor) -> bool:
        return torch.allclose(a, b, rtol=0, atol=1e-5) if attack else torch.equal(a, b)

    for severity in stressor.severities:
        full = _run(stressor, images, ids, severity, seed=seed, model=model)
        order = [i for i in (4, 1, 5, 0) if i < images.shape[0]]
        sub = _run(stressor, images[order], [ids[i] for i in order], severity, seed=seed, model=model)
        if not same(sub, full[order]):
            raise _fail(stressor, "batch invariance", f"severity {severity}: a reordered sub-batch differs")
        single = _run(stressor, images[2:3], ids[2:3], severity, seed=seed, model=model)
        if not same(single[0], full[2]):
            raise _fail(stressor, "batch invariance", f"severity {severity}: a sample alone differs from in the batch")


def check_low_precision(stressor: Any, images: Tensor, *, seed: int = 0, model: nn.Module | None = None) -> None:
    """float16 and bfloat16 inputs keep their dtype and match the float32 result (image stressors)."""
    if getattr(stressor, "model_aware", False):
        return
    ids = _IDS[:2]
    severity = stressor.severities[-1]
    for dtype in (torch.float16, torch.bfloat16):
        x = images[:2].to(dtype)
        out = _run(stressor, x, ids, severity, seed=seed, model=model)
        if out.dtype != dtype:
            raise _fail(stressor, "low precision", f"{dtype} input came back as {out.dtype}")
        reference = _run(stressor, x.float(), ids, severity, seed=seed, model=model)
        if not torch.allclose(out.float(), reference, atol=2e-2):
            worst = float((out.float() - reference).abs().max())
            raise _fail(stressor, "low precision", f"{dtype} differs from float32 by {worst:.3g}")


def check_params_recordable(stressor: Any, *, seed: int = 0) -> None:
    """``sample_params(...).record(i)``, where present, is JSON-serialisable (image stressors)."""
    if getattr(stressor, "model_aware", False):
        return
    boxes = _box_kwargs(stressor, _IDS[:2], (32, 32))
    params = stressor.sample_params(sample_keys(_IDS[:2]), stressor.severities[0], seed=seed, **boxes)
    record = getattr(params, "record", None)
    if record is None:
        return
    try:
        json.dumps(record(1))
    except (TypeError, ValueError) as exc:
        raise _fail(stressor, "recordable params", f"record(1) is not JSON: {exc}") from None


def check_monotone_severity(stressor: Any, images: Tensor, *, seed: int = 0) -> None:
    """The mean absolute change from clean grows strictly with severity (image stressors)."""
    if getattr(stressor, "model_aware", False) or not getattr(stressor, "monotone_severity", True):
        return
    levels = sorted(stressor.severities)
    if len(levels) < 2:
        return
    ids = _IDS[: images.shape[0]]
    damage = [float((_run(stressor, images, ids, s, seed=seed, model=None) - images).abs().mean()) for s in levels]
    if damage[0] <= 0 or not all(b > a for a, b in zip(damage, damage[1:])):
        shown = ", ".join(f"{s}: {d:.4g}" for s, d in zip(levels, damage))
        raise _fail(stressor, "monotone difficulty", f"mean |stressed - clean| does not grow with severity ({shown})")


def fractional_grid(stressor: Any, step: float = 0.5) -> list[float]:
    """Severities from the lowest to the highest level of ``stressor.severity_range`` in ``step``s.

    >>> class S: severity_range = (1, 3)
    >>> fractional_grid(S())
    [1.0, 1.5, 2.0, 2.5, 3.0]
    """
    lo, hi = stressor.severity_range
    count = round((hi - lo) / step)
    return [lo + k * step for k in range(count + 1)]


def check_fractional_severity(stressor: Any, images: Tensor, *, seed: int = 0) -> None:
    """Fractional severities are either supported under the same rules or refused (module docstring)."""
    if getattr(stressor, "model_aware", False) or not callable(getattr(stressor, "sample_params", None)):
        return
    ids = _IDS[: images.shape[0]]
    keys = sample_keys(ids)
    probe = sorted(stressor.severities)[0] + 0.5
    boxes = _box_kwargs(stressor, ids, tuple(images.shape[-2:]))
    try:
        stressor.sample_params(keys, probe, seed=seed, **boxes)
    except StressorError:
        pass
    else:
        raise _fail(stressor, "fractional severity", f"severity {probe} was accepted without fractional=True")
    if not getattr(stressor, "fractional_severities", False):
        return
    grid = fractional_grid(stressor, 0.25)
    lo, hi = grid[0], grid[-1]
    for bad in (lo - 0.5, hi + 0.5, float("nan")):
        try:
            stressor.sample_params(keys, bad, seed=seed, fractional=True, **boxes)
        except StressorError:
            continue
        raise _fail(stressor, "fractional severity", f"severity {bad} outside [{lo:g}, {hi:g}] was accepted")
    order = [i for i in (4, 1, 5, 0) if i < images.shape[0]]
    run = functools.partial(_run, stressor, seed=seed, model=None, fractional=True)
    for severity in grid:
        out = run(images, ids, severity)
        where = f"severity {severity:g}"
        if out.shape != images.shape or out.dtype != images.dtype or out.device != images.device:
            raise _fail(stressor, "fractional severity", f"{where}: shape, dtype or device changed")
        if not torch.isfinite(out).all() or float(out.min()) < 0 or float(out.max()) > 1:
            raise _fail(stressor, "fractional severity", f"{where}: values not finite or outside [0, 1]")
        if not torch.equal(out, run(images, ids, severity)):
            raise _fail(stressor, "fractional severity", f"{where}: two calls with seed {seed} differ")
        sub = run(images[order], [ids[i] for i in order], severity)
        if not torch.equal(sub, out[order]):
            raise _fail(stressor, "fractional severity", f"{where}: a reordered sub-batch differs")
        if float(severity).is_integer() and int(severity) in stressor.severities:
            exact = _run(stressor, images, ids, int(severity), seed=seed, model=None)
            if not torch.equal(out, exact):
                raise _fail(
                    stressor, "fractional severity", f"{where}: {severity!r} differs from level {int(severity)}"
                )
    if getattr(stressor, "monotone_severity", True):
        # at least 96 px: a blur of a fraction of a pixel (defocus level 1 at 32 px) changes nothing
        if min(images.shape[-2:]) < 96:
            images = F.interpolate(images.float(), size=(96, 96), mode="bilinear", align_corners=False).to(images.dtype)
        half = fractional_grid(stressor, 0.5)
        damage = [float((run(images, ids, s) - images).abs().mean()) for s in half]
        if not all(b > a for a, b in zip(damage, damage[1:])):
            shown = ", ".join(f"{s:g}: {d:.4g}" for s, d in zip(half, damage))
            raise _fail(stressor, "fractional severity", f"mean |stressed - clean| does not grow ({shown})")


def check_perturbation_bound(stressor: Any, images: Tensor, *, seed: int = 0, model: nn.Module | None = None) -> None:
    """An attack's perturbation stays within ε in its norm (``norm``: ``linf`` or ``l2``)."""
    if not getattr(stressor, "model_aware", False):
        return
    norm = getattr(stressor, "norm", None)
    if norm not in ("linf", "l2"):
        return
    ids = _IDS[: images.shape[0]]
    for eps in stressor.severities:
        delta = (_run(stressor, images, ids, eps, seed=seed, model=model) - images).flatten(1).float()
        size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
        if float(size.max()) > eps * (1 + 1e-4) + 1e-5:
            raise _fail(stressor, "perturbation bound", f"eps {eps}: {norm} perturbation {float(size.max()):.4g} > eps")


def _drawn_boxes(ids: list[str], n: int, size: int) -> tuple[Tensor, list[Tensor]]:
    """One filled white box per sample on a black frame, placed from its id in the central 30-70 % region."""
    images = torch.zeros(n, 3, size, size)
    boxes = []
    for i, sid in enumerate(ids[:n]):
        g = torch.Generator().manual_seed(int(sample_keys([sid])[0]) & 0x7FFFFFFF)
        w, h = (int(v) for v in torch.randint(size // 6, size // 3, (2,), generator=g))
        x0 = int(torch.randint(int(0.3 * size), int(0.7 * size) - w + 1, (1,), generator=g))
        y0 = int(torch.randint(int(0.3 * size), int(0.7 * size) - h + 1, (1,), generator=g))
        images[i, :, y0 : y0 + h, x0 : x0 + w] = 1.0
        boxes.append(torch.tensor([[x0, y0, x0 + w, y0 + h]], dtype=torch.float64))
    return images, boxes


def _mask_box(mask: Tensor, centre: tuple[float, float]) -> list[float] | None:
    """The bounding box (continuous pixel frame) of the connected component of ``mask`` at ``centre``."""
    from scipy import ndimage  # scikit-learn's dependency; only the box check needs it

    labels, _count = ndimage.label(mask.numpy())
    cy = min(max(int(centre[1]), 0), mask.shape[0] - 1)
    cx = min(max(int(centre[0]), 0), mask.shape[1] - 1)
    label = labels[cy, cx]
    if label == 0:
        return None
    ys, xs = (labels == label).nonzero()
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def check_box_conformance(stressor: Any, images: Tensor, *, seed: int = 0) -> None:
    """Boxes go through the stressor as the pixels do (see the module docstring).

    Skipped for attacks and for a stressor that does not declare ``moves_pixels`` (a
    classifier-only plugin, which a detection audit refuses).
    """
    if getattr(stressor, "model_aware", False) or not isinstance(getattr(stressor, "moves_pixels", None), bool):
        return
    kind = box_support(stressor)
    ids = _IDS[: images.shape[0]]
    keys = sample_keys(ids)
    size = tuple(images.shape[-2:])
    boxes = sample_boxes(ids, size)
    order = [i for i in (4, 1, 5, 0) if i < images.shape[0]]
    for severity in stressor.severities:
        where = f"severity {severity}"
        batch = stress_with_boxes(stressor, images, boxes, sample_ids=keys, severity=severity, seed=seed)
        if not torch.equal(batch.images, _run(stressor, images, ids, severity, seed=seed, model=None)):
            raise _fail(stressor, "boxes", f"{where}: stress_with_boxes gives other images than apply")
        if kind == "invariant":
            for i, (b, out) in enumerate(zip(boxes, batch.boxes)):
                if not torch.equal(b, out) or not bool(batch.kept[i].all()):
                    raise _fail(
                        stressor, "boxes", f"{where}: a photometric stressor moved or dropped the boxes of image {i}"
                    )
            continue
        again = stress_with_boxes(stressor, images, boxes, sample_ids=keys, severity=severity, seed=seed)
        if any(not torch.equal(a, b) for a, b in zip(batch.boxes, again.boxes)):
            raise _fail(stressor, "boxes", f"{where}: two calls with seed {seed} move the boxes differently")
        sub = stress_with_boxes(
            stressor, images[order], [boxes[i] for i in order], sample_ids=keys[order], severity=severity, seed=seed
        )
        for pos, i in enumerate(order):
            if not torch.equal(sub.boxes[pos], batch.boxes[i]):
                raise _fail(stressor, "boxes", f"{where}: image {i}'s boxes differ in a reordered sub-batch")
    if kind == "invariant":
        return
    lo = getattr(stressor, "severity_range", (1, 1))[0]
    if getattr(stressor, "fractional_severities", False) and lo <= 0:
        batch = stress_with_boxes(stressor, images, boxes, sample_ids=keys, severity=0, seed=seed, fractional=True)
        if float((batch.images.float() - images.float()).abs().max()) > 1e-5:
            raise _fail(stressor, "boxes", "severity 0 changes the images")
        if any(float((a - b).abs().max(initial=0.0)) > 1e-6 for a, b in zip(boxes, batch.boxes)):
            raise _fail(stressor, "boxes", "severity 0 moves the boxes")
    frame = 96
    drawn, truth = _drawn_boxes(ids, images.shape[0], frame)
    drawn_keys = sample_keys(ids[: drawn.shape[0]])
    for severity in stressor.severities:
        params = stressor.sample_params(drawn_keys, severity, seed=seed, **_box_kwargs(stressor, ids, (frame, frame)))
        out = stressor.apply(drawn, params)
        moved = stressor.transform_boxes(truth, params, (frame, frame))
        for i, box in enumerate(moved):
            b = box[0].tolist()
            if b[0] < 0 or b[1] < 0 or b[2] > frame or b[3] > frame or min(b[2] - b[0], b[3] - b[1]) < 4:
                continue  # partly out of view or tiny: the clipped mask says nothing exact about the box
            found = _mask_box(out[i].float().mean(0) > 0.5, ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))
            if found is None or max(abs(x - y) for x, y in zip(found, b)) > BOX_TOLERANCE:
                raise _fail(
                    stressor,
                    "boxes follow the pixels",
                    f"severity {severity}, image {i}: the moved box is {[round(v, 1) for v in b]} but the moved "
                    f"pixels span {found} (tolerance {BOX_TOLERANCE} px)",
                )


def check_stressor(
    stressor: Any,
    *,
    images: Tensor | None = None,
    model: nn.Module | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    checks: tuple[Callable[..., None], ...] | None = None,
) -> None:
    """Run every conformance check that applies to ``stressor`` (see the module docstring).

    Args:
        stressor: an instance, e.g. ``stressors.get("night")`` or ``Rain()``.
        images: the test batch (at least 3 images); default :func:`photo_like` (6 x 3 x 32 x 32).
        model: the model attacks run against; default :func:`tiny_classifier`.
        device: where the images (and the model) live.
        seed: the audit seed used for every call.
        checks: run only these check functions (default: all).

    Raises:
        AssertionError: the first check that fails, naming the stressor, the
            check and the severity.
    """
    __tracebackhide__ = True
    check_interface(stressor)
    x = (images if images is not None else photo_like()).to(device)
    if x.shape[0] < 3:
        raise ValueError("check_stressor needs a batch of at least 3 images")
    if getattr(stressor, "model_aware", False) and model is None:
        model = tiny_classifier(channels=x.shape[1])
    if model is not None:
        model = model.to(device)
    if getattr(stressor, "needs_fit", False):  # a fitted attack (universal, patch): fitted on this batch first
        _fit(stressor, x, model, seed=seed)
    every = (
        check_output_contract,
        check_determinism,
        check_batch_invariance,
        check_low_precision,
        check_perturbation_bound,
    )
    rest = (check_params_recordable, check_monotone_severity, check_fractional_severity, check_box_conformance)
    for check in checks or every + rest:
        if check is check_params_recordable:
            check(stressor, seed=seed)
        elif check in (check_monotone_severity, check_fractional_severity, check_box_conformance):
            check(stressor, x, seed=seed)
        else:
            check(stressor, x, seed=seed, model=model)
