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
- attacks: the perturbation stays inside the ε ball of the attack's norm.
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

__all__ = [
    "check_batch_invariance",
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
    "tiny_classifier",
]

_IDS = [f"conformance-{i}" for i in range(6)]


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
        return stressor.apply(images, stressor.sample_params(keys, severity, seed=seed, fractional=True))
    if getattr(stressor, "model_aware", False):
        with torch.no_grad():
            labels = model(images.float()).argmax(dim=1)
        with torch.enable_grad():
            return stressor.perturb(model, images, labels, severity=severity, sample_ids=keys, seed=seed)
    return stressor.apply(images, stressor.sample_params(keys, severity, seed=seed))


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
    params = stressor.sample_params(sample_keys(_IDS[:2]), stressor.severities[0], seed=seed)
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
    try:
        stressor.sample_params(keys, probe, seed=seed)
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
            stressor.sample_params(keys, bad, seed=seed, fractional=True)
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
    every = (
        check_output_contract,
        check_determinism,
        check_batch_invariance,
        check_low_precision,
        check_perturbation_bound,
    )
    for check in checks or every + (check_params_recordable, check_monotone_severity, check_fractional_severity):
        if check is check_params_recordable:
            check(stressor, seed=seed)
        elif check in (check_monotone_severity, check_fractional_severity):
            check(stressor, x, seed=seed)
        else:
            check(stressor, x, seed=seed, model=model)
