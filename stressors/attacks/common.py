"""Shared pieces of the adversarial attacks: option checks, seeding, the gradient probe.

Every attack is a thin class over foolbox 3 (``foolbox.PyTorchModel(model,
bounds=(0, 1))``; the model's mean/std normalisation is already inside it, so
ε is in pixel units of [0, 1]). The class holds settings only; the work is done
by small pure functions here and in the attack modules.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar

import foolbox as fb
import torch
from torch import Tensor

from audit.contract.seeds import derive_seed, stream_seed
from stressors.base import StressorError, check_images, check_severity, generator, per_sample_seeds

#: Stream offsets for independent per-sample draws (random starts, HSJ inits).


@dataclass(frozen=True)
class AttackResult:
    """What one attack call produced for a batch.

    Attributes:
        images: adversarial images, same shape, dtype and device as the input, in [0, 1].
        fooled: (N,) bool on the CPU: the model misclassifies ``images[i]``
            (clean errors count as fooled, as in robust accuracy).
        failed_starts: (N,) bool on the CPU: the attack could not start from
            sample i (HopSkipJump found no adversarial starting point); such a
            sample is returned unchanged and is NOT fooled. Always False for
            gradient attacks.
    """

    images: Tensor
    fooled: Tensor
    failed_starts: Tensor


# --------------------------------------------------------------------- option checks


def reject_unknown(name: str, unknown: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Raise :class:`StressorError` if any option in ``unknown`` was given."""
    if unknown:
        key = sorted(unknown)[0]
        raise StressorError(f"{name}: unknown option {key!r}; expected one of {sorted(allowed)}")


def resolve_epsilons(
    name: str,
    epsilons: Sequence[float] | None,
    severities: Sequence[float] | None,
    default: Sequence[float],
    *,
    upper: float | None = 1.0,
) -> tuple[float, ...]:
    """Validate the attack's epsilons (``severities`` is accepted as an alias).

    Args:
        name: the stressor name, for messages.
        epsilons: the ``epsilons`` option, or None.
        severities: the ``severities`` option (alias), or None.
        default: used when neither is given.
        upper: largest allowed ε (1.0 for L∞ in pixel units); None for no bound.

    Returns:
        The epsilons as a tuple of floats, in the given order.

    Raises:
        StressorError: both options given, an empty list, a non-number, a
            negative, non-finite or too large ε, or duplicates.
    """
    if epsilons is not None and severities is not None:
        raise StressorError(f"{name}: give 'epsilons' or 'severities', not both")
    option = "epsilons" if severities is None else "severities"
    values = default if epsilons is None and severities is None else (epsilons if severities is None else severities)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise StressorError(f"{name}: option {option!r} must be a non-empty list of numbers, got {values!r}")
    out = []
    for eps in values:
        if isinstance(eps, bool) or not isinstance(eps, Real) or not math.isfinite(float(eps)):
            raise StressorError(f"{name}: option {option!r}: {eps!r} is not a finite number")
        if eps < 0 or (upper is not None and eps > upper):
            bound = f"[0, {upper:g}]" if upper is not None else "[0, inf)"
            raise StressorError(f"{name}: option {option!r}: epsilon {eps!r} outside {bound} (pixel units of [0, 1])")
        out.append(float(eps))
    if len(set(out)) != len(out):
        raise StressorError(f"{name}: option {option!r} lists an epsilon twice: {out}")
    return tuple(out)


def positive_int(name: str, option: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1, else raise :class:`StressorError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StressorError(f"{name}: option {option!r} must be an integer >= 1, got {value!r}")
    return value


def positive_float(name: str, option: str, value: Any, *, upper: float | None = None) -> float:
    """Return ``value`` as float if it is a finite number in (0, upper], else raise."""
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(float(value)) and value > 0
    if not ok or (upper is not None and value > upper):
        bound = f"(0, {upper:g}]" if upper is not None else "> 0"
        raise StressorError(f"{name}: option {option!r} must be a number {bound}, got {value!r}")
    return float(value)


def check_flag(name: str, option: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, else raise :class:`StressorError`."""
    if not isinstance(value, bool):
        raise StressorError(f"{name}: option {option!r} must be true or false, got {value!r}")
    return value


# ----------------------------------------------------------------------- batch checks


def check_batch(name: str, images: Tensor, labels: Tensor, sample_ids: Tensor) -> None:
    """Raise :class:`StressorError` unless images, labels and sample ids fit together.

    Shape:
        images: (N, C, H, W) float in [0, 1]; labels: (N,) integer; sample_ids: (N,) int64.
    """
    check_images(images, name)
    n = images.shape[0]
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.is_floating_point():
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise StressorError(f"{name}: labels must be an integer tensor of shape ({n},), got {got}")
    if not isinstance(sample_ids, Tensor) or sample_ids.shape != (n,) or sample_ids.dtype != torch.int64:
        got = tuple(sample_ids.shape) if isinstance(sample_ids, Tensor) else type(sample_ids).__name__
        raise StressorError(f"{name}: sample_ids must be an int64 tensor of shape ({n},), got {got}")
    if labels.device != images.device:
        raise StressorError(f"{name}: labels are on {labels.device} but images on {images.device}")


def require_gradients(name: str, model: torch.nn.Module, images: Tensor, labels: Tensor, *, probe: int = 8) -> None:
    """Raise :class:`StressorError` unless input gradients flow through ``model``.

    The probe is one forward and backward pass on the first ``probe`` samples
    with a fixed linear functional of the logits (not the cross-entropy, which
    can saturate to an exactly zero gradient on confident samples).

    Raises:
        StressorError: ``has_gradients`` is False (names ``hopskipjump``, the
            gradient-free alternative), the forward pass detaches its output,
            or the input gradient is None, non-finite or all zero.
    """
    if not getattr(model, "has_gradients", True):
        raise StressorError(
            f"{name}: the model has no gradients (has_gradients=False, e.g. an ONNX model); "
            "use the gradient-free attack 'hopskipjump' instead"
        )
    x = images[:probe].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        if not isinstance(logits, Tensor) or not logits.requires_grad:
            raise StressorError(
                f"{name}: the model's forward pass detaches its output from the input "
                "(no_grad, .detach(), numpy or a non-differentiable preprocessing); "
                "gradient attacks cannot run, use 'hopskipjump'"
            )
        weights = torch.linspace(-1.0, 1.0, logits.shape[-1], device=logits.device, dtype=logits.dtype)
        (grad,) = torch.autograd.grad((logits * weights).sum(), x, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all() or not grad.abs().amax() > 0:
        what = "None" if grad is None else ("not finite" if not torch.isfinite(grad).all() else "all zero")
        raise StressorError(
            f"{name}: the input gradient of the model is {what} on a probe batch; its preprocessing "
            "breaks gradients (e.g. rounding, quantisation, argmax), so a gradient attack would "
            "overstate robustness; use 'hopskipjump'"
        )


# ---------------------------------------------------------------------------- seeding


def linf_starts(images: Tensor, seeds: Sequence[int], epsilon: float, *, stream: int) -> Tensor:
    """Random starts uniform in the L∞ ball of radius ``epsilon``, one generator per sample.

    Shape:
        images: (N, C, H, W); returns (N, C, H, W) on ``images.device``, clipped to [0, 1].
    """
    shape = images.shape[1:]
    noise = [torch.rand(shape, generator=generator(stream_seed(s, stream))) for s in seeds]
    delta = (torch.stack(noise) * 2 - 1).to(images.device, images.dtype) * epsilon
    return (images + delta).clamp_(0, 1)


def l2_starts(images: Tensor, seeds: Sequence[int], epsilon: float, *, stream: int) -> Tensor:
    """Random starts uniform in the L2 ball of radius ``epsilon`` (Voelker et al. 2017, as foolbox).

    Shape:
        images: (N, C, H, W); returns (N, C, H, W) on ``images.device``, clipped to [0, 1].
    """
    d = images[0].numel()
    rows = []
    for s in seeds:
        g = torch.randn(d + 2, generator=generator(stream_seed(s, stream)))
        rows.append((g / g.norm())[:d])
    delta = torch.stack(rows).view(images.shape).to(images.device, images.dtype) * epsilon
    return (images + delta).clamp_(0, 1)


def batch_seed(seeds: Sequence[int]) -> int:
    """One seed for a whole batch, independent of the order of its samples."""
    return derive_seed("batch", *sorted(seeds))


# ---------------------------------------------------------------------------- helpers


def foolbox_model(model: torch.nn.Module, device: torch.device) -> fb.PyTorchModel:
    """Wrap ``model`` for foolbox with bounds (0, 1) and no extra preprocessing."""
    return fb.PyTorchModel(model, bounds=(0, 1), device=device)


@torch.no_grad()
def predict(model: torch.nn.Module, images: Tensor) -> Tensor:
    """Top-1 predictions of ``model``. Shape: (N, C, H, W) -> (N,) int64 on images.device."""
    return model(images).argmax(dim=-1)


class LastBatchCache:
    """Remembers the minimal adversarials of the last batch (a minimisation attack is
    run once per batch, then clipped to every ε).

    Only one batch is held, so memory does not grow with the dataset. A hit needs
    the same model object with unchanged parameters, seed, sample ids, images and labels.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._model: weakref.ReferenceType | None = None
        self._images: Tensor | None = None
        self._labels: Tensor | None = None
        self._value: tuple | None = None

    @staticmethod
    def _key_of(model: torch.nn.Module, seed: int, sample_ids: Tensor) -> tuple:
        versions = tuple(p._version for p in model.parameters())
        return (seed, tuple(sample_ids.tolist()), versions)

    def get(
        self, model: torch.nn.Module, images: Tensor, labels: Tensor, sample_ids: Tensor, seed: int
    ) -> tuple | None:
        """The cached value for this batch, or None."""
        if self._model is None or self._model() is not model or self._key != self._key_of(model, seed, sample_ids):
            return None
        if not (torch.equal(self._images, images) and torch.equal(self._labels, labels)):
            return None
        return self._value

    def put(
        self, model: torch.nn.Module, images: Tensor, labels: Tensor, sample_ids: Tensor, seed: int, value: tuple
    ) -> None:
        """Remember ``value`` for this batch (replacing the previous one)."""
        self._key = self._key_of(model, seed, sample_ids)
        self._model = weakref.ref(model)
        self._images, self._labels, self._value = images.detach().clone(), labels.clone(), value


# ----------------------------------------------------- shared by APGD and FAB-T

#: Two forward passes differ by more than this (on L2-normalised logits): a randomised model (reference).
RANDOMISED_TOLERANCE = 1e-6


def apgd_starts(images: Tensor, seeds: Sequence[int], eps: float, norm: str, *, stream: int) -> Tensor:
    """APGD's random start, one generator per sample (the reference's draw, keyed per sample).

    L∞: ``x + ε · t / max|t|`` with t uniform in [-1, 1]^d; L2: ``x + ε · g / ||g||`` with g
    standard normal. Both clipped to [0, 1]. Shape: (N, C, H, W) -> (N, C, H, W) on images.device.
    """
    shape = images.shape[1:]
    rows = []
    for s in seeds:
        g = generator(stream_seed(s, stream))
        if norm == "linf":
            t = torch.rand(shape, generator=g) * 2 - 1
            rows.append(t / (t.abs().max() + 1e-12))
        else:
            t = torch.randn(shape, generator=g)
            rows.append(t / (t.norm() + 1e-12))
    delta = torch.stack(rows).to(images.device, images.dtype) * eps
    return (images + delta).clamp(0.0, 1.0)


def is_randomised(model: torch.nn.Module, images: Tensor, seed: int) -> bool:
    """True when two identical forward passes (no grad) give different outputs (reference check).

    The outputs are compared after L2 normalisation per row; a different predicted class or a
    difference above :data:`RANDOMISED_TOLERANCE` counts. The global RNG is left as it was.
    """
    with _forked_rng(images.device, seed), torch.no_grad():
        a, b = model(images), model(images)
    if not torch.equal(a.argmax(1), b.argmax(1)):
        return True
    a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
    b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
    return bool((a - b).abs().amax() > RANDOMISED_TOLERANCE)


class _forked_rng:
    """Fork torch's global RNG (CPU and the images' CUDA device) and seed it; restore on exit."""

    def __init__(self, device: torch.device, seed: int):
        self._device = device
        self._fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        self._seed = seed % (1 << 63)

    def __enter__(self) -> None:
        self._fork.__enter__()
        torch.default_generator.manual_seed(self._seed)
        if self._device.type == "cuda":
            with torch.cuda.device(self._device):
                torch.cuda.manual_seed(self._seed)

    def __exit__(self, *exc: object) -> None:
        self._fork.__exit__(*exc)


# ------------------------------------------------------------------------ base class


class Attack:
    """Base class of the built-in attacks: holds settings, checks input, keeps the last result.

    Subclasses set ``name``, ``norm``, ``needs_gradients``, ``default_epsilons``
    and implement :meth:`_run`.

    Attributes:
        severities: the epsilons (floats, pixel units of [0, 1]).
        last_result: the :class:`AttackResult` of the latest :meth:`perturb` call.
    """

    name: ClassVar[str] = ""
    model_aware: ClassVar[bool] = True
    devices: ClassVar[str] = "cpu, cuda"
    norm: ClassVar[str] = "linf"
    needs_gradients: ClassVar[bool] = True
    #: A minimisation attack (DeepFool, HopSkipJump) runs once for all ε of a batch,
    #: so its randomness must not depend on ε: its per-sample seeds use severity -1.
    minimisation: ClassVar[bool] = False
    # Traits: every caller (runner, evaluator, report) reads these, never the attack's name.
    #: A multi-step attack: at a very large ε it is expected to drive accuracy to about 0
    #: (the gradient-masking probe of ``adversarial.large_epsilon_zero_accuracy``).
    iterative: ClassVar[bool] = False
    #: The smallest ε (in the attack's own norm) that counts as "very large" for that probe.
    zero_accuracy_epsilon: ClassVar[float] = 0.3
    #: The iterative form of a single-step attack of the same norm (PGD of FGSM): it must be
    #: at least as strong as every non-iterative attack of that norm at a shared ε
    #: (``adversarial.iterative_stronger_than_single_step``).
    stronger_than_single_step: ClassVar[bool] = False
    #: A sample's breaking ε can be refined by bisection between grid points (``breaking_points``).
    bisectable: ClassVar[bool] = False
    #: When set, the breaking ε is the size of the attack's own minimal perturbation, and this is
    #: the ``method`` recorded for it in results.json (``breaking_points[].method``).
    minimal_perturbation_method: ClassVar[str | None] = None
    default_epsilons: ClassVar[tuple[float, ...]] = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)

    severities: tuple[float, ...]
    last_result: AttackResult | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The effective settings (JSON-serialisable), recorded in results.json."""
        return {"epsilons": list(self.severities)}

    @property
    def severity_meaning(self) -> dict[float, str]:
        """What each ε means physically."""
        if self.norm == "linf":
            return {
                e: f"L-inf perturbation <= {e:.4g} per pixel ({e * 255:.3g}/255 grey levels)" for e in self.severities
            }
        return {e: f"L2 norm of the perturbation <= {e:.4g} (pixel units of [0, 1])" for e in self.severities}

    @property
    def last_failed_starts(self) -> Tensor | None:
        """(N,) bool on the CPU for the latest batch: samples the attack could not start from."""
        return None if self.last_result is None else self.last_result.failed_starts

    def perturb(
        self,
        model: torch.nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        severity: float,
        sample_ids: Tensor,
        seed: int,
    ) -> Tensor:
        """Adversarial images for one ε (see :meth:`attack`; this returns ``.images``).

        The full result (fooled mask, failed starts) is kept in ``last_result``.

        Shape:
            images: (N, C, H, W) in [0, 1]; labels, sample_ids: (N,). Returns (N, C, H, W).
        """
        self.last_result = self.attack(model, images, labels, severity=severity, sample_ids=sample_ids, seed=seed)
        return self.last_result.images

    def attack(
        self,
        model: torch.nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        severity: float,
        sample_ids: Tensor,
        seed: int,
    ) -> AttackResult:
        """Attack a batch at ε = ``severity``.

        Args:
            model: maps [0, 1] images to logits; normalisation inside; on ``images.device``.
            images: clean images in [0, 1].
            labels: true classes.
            severity: the ε, one of ``severities``.
            sample_ids: per-sample int64 keys; all randomness is keyed by them.
            seed: the audit seed.

        Returns:
            An :class:`AttackResult`.

        Raises:
            StressorError: ε not configured, malformed batch, or (gradient
                attacks) a model without usable gradients.

        Shape:
            images: (N, C, H, W); labels, sample_ids: (N,).
        """
        check_severity(severity, self.severities, self.name)
        check_batch(self.name, images, labels, sample_ids)
        n = images.shape[0]
        if n == 0:
            none = torch.zeros(0, dtype=torch.bool)
            return AttackResult(images.clone(), none, none)
        if self.needs_gradients and model not in self._probed_models():
            require_gradients(self.name, model, images, labels)
            self._probed.add(model)
        key_severity = -1.0 if self.minimisation else float(severity)
        seeds = per_sample_seeds(sample_ids, seed=seed, name=self.name, severity=key_severity)
        adv, fooled, failed = self._run(model, images.detach(), labels, float(severity), seeds, sample_ids, seed)
        return AttackResult(adv.detach().clamp(0, 1).to(images.dtype), fooled.cpu(), failed.cpu())

    def _probed_models(self) -> weakref.WeakSet:
        """Models whose gradients this attack has already probed (probe once per model)."""
        if "_probed" not in self.__dict__:
            self._probed = weakref.WeakSet()
        return self._probed

    def _run(
        self,
        model: torch.nn.Module,
        images: Tensor,
        labels: Tensor,
        epsilon: float,
        seeds: list[int],
        sample_ids: Tensor,
        seed: int,
    ) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
