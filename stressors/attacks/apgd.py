"""APGD-CE, APGD-T (DLR) and the AutoAttack ensemble (Croce & Hein 2020), in plain torch.

Reference: F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020, and its code (``autoattack``,
``autopgd_base.py``). The defaults are the reference's ``standard`` version:

- ``n_iter`` 100 iterations per run, ``n_restarts`` 1, initial step size 2ε;
- momentum 0.75 (the first step has none);
- checkpoints ``p_j``: the first after ``ceil``-free ``int(0.22·n_iter)`` iterations, then
  intervals shrinking by ``int(0.03·n_iter)`` down to ``int(0.06·n_iter)`` (each at least 1),
  i.e. ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``;
- at a checkpoint a sample's step size is halved, and it restarts from its best point, when
  the loss rose in at most ``rho`` = 0.75 of the steps since the last checkpoint, or when the
  step size was not halved at the last checkpoint and the best loss has not improved since;
- APGD-CE maximises the cross-entropy; APGD-DLR the Difference of Logits Ratio
  ``-(z_y - max_{i≠y} z_i) / (z_π1 - z_π3)``; APGD-T the targeted DLR
  ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)`` over the ``n_target_classes`` = 9 most likely
  classes after the top one (one run per target class, on the samples still robust);
- a sample is fooled if any iterate of any run misclassifies it, and that iterate is returned;
  samples the model already misclassifies are not attacked (they count as fooled).

Randomised models (the reference's ``rand`` version): with ``eot: auto`` (default) every batch
is first passed twice through the model; if the outputs differ, the model is treated as
randomised and every gradient is the mean over ``eot_samples`` = 20 forward/backward passes
(expectation over transformation, Athalye et al. 2018). ``eot: always`` / ``never`` force it on / off
(the check runs in every mode, so a randomised model attacked without EoT is still reported).
The model's own randomness then comes from torch's global generator, forked and seeded per
batch from the samples' keys (deterministic for a given batch, but not batch-size invariant:
a randomised model's draws depend on its batch). Which mode ran is in ``last_details``.

Contract (as every attack, :class:`stressors.attacks.common.Attack`): ε in pixel units of
[0, 1] (L∞) or of the whole image (L2); per-sample random starts keyed by
(seed, name, ε, sample id, run); every step is per sample (the loss is a sum of per-sample
terms), so a deterministic model gives the same images whatever the batch size or order;
everything runs on the images' device; one batch's gradients are held at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from audit.contract.seeds import derive_seed
from stressors.attacks.common import (
    Attack,
    _forked_rng,
    apgd_starts,
    batch_seed,
    is_randomised,
    positive_float,
    positive_int,
    predict,
    reject_unknown,
    resolve_epsilons,
)
from stressors.attacks.fab import FABT, FABTL2
from stressors.attacks.square import DEFAULT_P_INIT, DEFAULT_QUERIES, Square, SquareL2
from stressors.base import StressorError, per_sample_seeds

DEFAULT_N_ITER = 100
DEFAULT_RESTARTS = 1
DEFAULT_RHO = 0.75
MOMENTUM = 0.75
INITIAL_STEP_FACTOR = 2.0
FIRST_CHECKPOINT_SHARE = 0.22
MIN_INTERVAL_SHARE = 0.06
INTERVAL_DECREASE_SHARE = 0.03
DEFAULT_TARGET_CLASSES = 9
DEFAULT_EOT_SAMPLES = 20
EOT_MODES = ("auto", "always", "never")
#: The members of the reference's standard ensemble, in its order.
REFERENCE_MEMBERS = ("apgd-ce", "apgd-t", "fab-t", "square")
#: Members that exist here (L∞), in the order they run: the reference's order, with ``apgd-dlr``
#: (the second member of the reference's ``rand`` version) after ``apgd-ce``.
MEMBERS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
#: Reference members not built here (none since FAB-T, :mod:`stressors.attacks.fab`).
NOT_BUILT: tuple[str, ...] = ()
#: Under L2 the same members; ``fab-t`` and ``square`` are then their L2 versions.
MEMBERS_L2 = MEMBERS
NOT_BUILT_L2 = NOT_BUILT
#: The default members of ``autoattack``: the two APGD members (FAB-T's 9 target classes and Square's
#: 5000 queries per robust sample dominate a run's time); ``members_not_run`` then names fab-t and square.
DEFAULT_MEMBERS = ("apgd-ce", "apgd-t")


# ------------------------------------------------------------------------------- losses


def ce_loss(logits: Tensor, labels: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-sample cross-entropy. Shape: (N, K), (N,) -> (N,)."""
    return F.cross_entropy(logits, labels, reduction="none")


def dlr_loss(logits: Tensor, labels: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-sample DLR loss (reference ``dlr_loss``), larger = closer to misclassified. Needs K >= 3."""
    z_sorted, ind_sorted = logits.sort(dim=1)
    top_is_true = (ind_sorted[:, -1] == labels).to(logits.dtype)
    z_y = logits.gather(1, labels[:, None])[:, 0]
    other = z_sorted[:, -2] * top_is_true + z_sorted[:, -1] * (1.0 - top_is_true)
    return -(z_y - other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)


def dlr_targeted_loss(logits: Tensor, labels: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-sample targeted DLR loss (reference ``dlr_loss_targeted``). Needs K >= 4."""
    assert target is not None
    z_sorted, _ = logits.sort(dim=1)
    z_y = logits.gather(1, labels[:, None])[:, 0]
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


# ----------------------------------------------------------------------- the schedule


def checkpoints(n_iter: int) -> list[int]:
    """The iterations (1-based counts) after which APGD checks its step size.

    >>> checkpoints(100)
    [22, 41, 57, 70, 80, 87, 93, 99]
    """
    first = max(int(FIRST_CHECKPOINT_SHARE * n_iter), 1)
    least = max(int(MIN_INTERVAL_SHARE * n_iter), 1)
    decrease = max(int(INTERVAL_DECREASE_SHARE * n_iter), 1)
    out, k, at = [], first, 0
    while at + k <= n_iter:
        at += k
        out.append(at)
        k = max(k - decrease, least)
    return out


def _flat_norm(d: Tensor) -> Tensor:
    return d.flatten(1).norm(dim=1).view(-1, *([1] * (d.ndim - 1)))


def _project(x: Tensor, candidate: Tensor, eps: float, norm: str) -> Tensor:
    """``candidate`` projected onto the ε-ball around ``x`` (in ``norm``) and onto [0, 1]."""
    if norm == "linf":
        return torch.minimum(torch.maximum(candidate, x - eps), x + eps).clamp(0.0, 1.0)
    d = candidate - x
    length = _flat_norm(d)
    return (x + d / (length + 1e-12) * torch.clamp(length, max=eps)).clamp(0.0, 1.0)


GradFn = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor, Tensor]]


def make_grad_fn(
    model: torch.nn.Module, loss: Callable[..., Tensor], eot_samples: int
) -> Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor, Tensor]]:
    """``f(x, y, target) -> (logits, per-sample loss, input gradient)``, the gradient averaged
    over ``eot_samples`` passes (1 for a deterministic model); logits and loss of the last pass."""

    def grad_fn(x: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        total = torch.zeros_like(x)
        for _ in range(eot_samples):
            xg = x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                logits = model(xg)
                per_sample = loss(logits, y, target)
                (grad,) = torch.autograd.grad(per_sample.sum(), xg)
            total += grad.detach()
        return logits.detach(), per_sample.detach(), total / eot_samples

    return grad_fn


def apgd_run(
    grad_fn: GradFn,
    x: Tensor,
    y: Tensor,
    start: Tensor,
    *,
    eps: float,
    norm: str,
    n_iter: int,
    rho: float = DEFAULT_RHO,
    target: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One APGD run (the reference's ``attack_single_run``), every quantity per sample.

    Returns:
        ``(adversarial, fooled, zero_gradient)``: per sample, the first iterate that fooled the
        model (else the start point's clean-side best, unused); ``fooled`` (N,) bool; and
        ``zero_gradient`` (N,) bool: the gradient at the start was all zero or not finite.

    Shape:
        x, start: (N, C, H, W); y, target: (N,).
    """
    n = x.shape[0]
    view = (n, *([1] * (x.ndim - 1)))
    x_adv = start.clone()
    logits, loss_now, grad = grad_fn(x_adv, y, target)
    flat = grad.flatten(1)
    zero_gradient = ~torch.isfinite(flat).all(dim=1) | ~(flat.abs().amax(dim=1) > 0)
    fooled = logits.argmax(1) != y
    x_fooled = x_adv.clone()
    x_best, grad_best = x_adv.clone(), grad.clone()
    loss_best = loss_now.clone()
    step = torch.full(view, INITIAL_STEP_FACTOR * eps, device=x.device, dtype=x.dtype)
    x_old = x_adv.clone()
    checks = set(checkpoints(n_iter))
    previous_check = 0
    history = [loss_now.clone()]  # losses f(x^(0)), f(x^(1)), ...
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones(n, dtype=torch.bool, device=x.device)
    for i in range(n_iter):
        with torch.no_grad():
            momentum_term = x_adv - x_old
            x_old = x_adv.clone()
            a = MOMENTUM if i > 0 else 1.0
            if norm == "linf":
                z = _project(x, x_adv + step * grad.sign(), eps, norm)
            else:
                z = _project(x, x_adv + step * grad / (_flat_norm(grad) + 1e-12), eps, norm)
            x_adv = _project(x, x_adv + a * (z - x_adv) + (1 - a) * momentum_term, eps, norm)
        logits, loss_now, grad = grad_fn(x_adv, y, target)
        wrong = logits.argmax(1) != y
        newly = wrong & ~fooled
        x_fooled[newly] = x_adv[newly]
        fooled |= wrong
        history.append(loss_now.clone())
        better = loss_now > loss_best
        x_best[better], grad_best[better], loss_best[better] = x_adv[better], grad[better], loss_now[better]
        if i + 1 in checks:
            k = i + 1 - previous_check
            rises = sum((history[j] > history[j - 1]).to(torch.int64) for j in range(i + 2 - k, i + 2))
            oscillating = rises <= k * rho
            stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)
            reduce = oscillating | stalled
            reduced_last_check, loss_best_last_check = reduce.clone(), loss_best.clone()
            if reduce.any():
                step[reduce] /= 2.0
                x_adv[reduce], grad[reduce] = x_best[reduce], grad_best[reduce]
            previous_check = i + 1
    return x_fooled, fooled, zero_gradient


# ------------------------------------------------------------------------ randomness


# ---------------------------------------------------------------------------- attacks


class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020) under an L∞ bound, untargeted, with CE (APGD-CE) or DLR loss.

    A step-size-free PGD: it starts at step 2ε and halves a sample's step when its loss stops
    rising (module docstring), with momentum 0.75. Stronger than fixed-step PGD on models whose
    loss surface is flat or badly scaled; the first member of ``autoattack``.

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``);
            default (0, 1/255, 2/255, 4/255, 8/255).
        loss: ``ce`` (default, APGD-CE) or ``dlr`` (APGD-DLR; needs >= 3 classes).
        n_iter: iterations per run; default 100 (reference).
        restarts: random restarts on the samples still robust; default 1 (reference standard).
        rho: the checkpoint condition's share of rising steps; default 0.75 (reference).
        eot: ``auto`` (default: EoT when the model is randomised), ``always`` or ``never``.
        eot_samples: gradient samples per step under EoT; default 20 (reference ``rand``).

    Raises:
        StressorError: a bad or unknown option.
    """

    name: ClassVar[str] = "apgd"
    norm: ClassVar[str] = "linf"
    iterative: ClassVar[bool] = True
    stronger_than_single_step: ClassVar[bool] = True
    bisectable: ClassVar[bool] = True
    _epsilon_upper: ClassVar[float | None] = 1.0
    _losses: ClassVar[tuple[str, ...]] = ("ce", "dlr")
    _targeted: ClassVar[bool] = False

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        loss: str = "ce",
        n_iter: int = DEFAULT_N_ITER,
        restarts: int = DEFAULT_RESTARTS,
        rho: float = DEFAULT_RHO,
        eot: str = "auto",
        eot_samples: int = DEFAULT_EOT_SAMPLES,
        **unknown: Any,
    ):
        reject_unknown(self.name, unknown, list(self._option_names()))
        self.severities = resolve_epsilons(
            self.name, epsilons, severities, self.default_epsilons, upper=self._epsilon_upper
        )
        if loss not in self._losses:
            raise StressorError(f"{self.name}: option 'loss' must be one of {list(self._losses)}, got {loss!r}")
        self.loss = loss
        self.n_iter = positive_int(self.name, "n_iter", n_iter)
        self.restarts = positive_int(self.name, "restarts", restarts)
        self.rho = positive_float(self.name, "rho", rho, upper=1.0)
        if eot not in EOT_MODES:
            raise StressorError(f"{self.name}: option 'eot' must be one of {list(EOT_MODES)}, got {eot!r}")
        self.eot = eot
        self.eot_samples = positive_int(self.name, "eot_samples", eot_samples)
        self.last_details: dict[str, Any] | None = None

    def _option_names(self) -> tuple[str, ...]:
        return ("epsilons", "severities", "loss", "n_iter", "restarts", "rho", "eot", "eot_samples")

    @property
    def options(self) -> dict[str, Any]:
        return {
            "epsilons": list(self.severities),
            "loss": self.loss,
            "n_iter": self.n_iter,
            "restarts": self.restarts,
            "rho": self.rho,
            "momentum": MOMENTUM,
            "initial_step": f"{INITIAL_STEP_FACTOR:g}*epsilon",
            "eot": self.eot,
            "eot_samples": self.eot_samples,
        }

    # ---- shared by the ensemble

    def eot_for(self, model: torch.nn.Module, images: Tensor, seed: int) -> tuple[bool, int]:
        """``(randomised, gradient samples per step)`` for this model and batch."""
        randomised = is_randomised(model, images, seed)  # also under eot: never (the flag then fails)
        use = self.eot == "always" or (self.eot == "auto" and randomised)
        return randomised, self.eot_samples if use else 1

    def run_member(
        self, model, images: Tensor, labels: Tensor, epsilon: float, seeds: list[int], eot_samples: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """All runs of this attack on a batch: ``(adversarial, fooled, zero_gradient)`` per sample.

        Only samples the model classifies correctly are attacked; each later run (restart or
        target class) attacks only the samples still robust. Unfooled samples are returned unchanged.
        """
        n = images.shape[0]
        with torch.no_grad():
            clean_logits = model(images)
        fooled = clean_logits.argmax(1) != labels
        zero = torch.zeros(n, dtype=torch.bool, device=images.device)
        adv = images.clone()
        if epsilon == 0:
            return adv, fooled, zero
        loss_fn = {"ce": ce_loss, "dlr": dlr_loss, "dlr-targeted": dlr_targeted_loss}[self._loss_name()]
        grad_fn = make_grad_fn(model, loss_fn, eot_samples)
        for run, target_rank in enumerate(self._runs(clean_logits)):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            x, y = images[todo], labels[todo]
            sub_seeds = [seeds[i] for i in todo.tolist()]
            start = apgd_starts(x, sub_seeds, epsilon, self.norm, stream=run + 1)
            target = None
            if target_rank is not None:
                target = clean_logits[todo].sort(dim=1)[1][:, -target_rank]
            x_adv, hit, zero_grad = apgd_run(
                grad_fn, x, y, start, eps=epsilon, norm=self.norm, n_iter=self.n_iter, rho=self.rho, target=target
            )
            adv[todo[hit]] = x_adv[hit]
            fooled[todo] |= hit
            if run == 0:
                zero[todo] = zero_grad
        return adv, fooled, zero

    def _loss_name(self) -> str:
        return self.loss

    def _runs(self, clean_logits: Tensor) -> list[int | None]:
        """One entry per run: the target's rank in the clean logits (2 = runner-up), or None."""
        return [None] * self.restarts

    def check_classes(self, num_classes: int) -> None:
        """Raise :class:`StressorError` if the loss needs more classes than the model has."""
        if self.loss == "dlr" and num_classes < 3:
            raise StressorError(f"{self.name}: the DLR loss needs >= 3 classes, the model has {num_classes}")

    def _run(self, model, images, labels, epsilon, seeds, sample_ids, seed):
        start = time.perf_counter()
        bseed = batch_seed(seeds)
        randomised, eot_samples = self.eot_for(model, images, bseed)
        with _forked_rng(images.device, bseed):
            with torch.no_grad():
                self.check_classes(int(model(images[:1]).shape[1]))
            adv, _, zero = self.run_member(model, images, labels, epsilon, seeds, eot_samples)
            final = predict(model, adv) != labels
        self.last_details = {
            "randomised_model": randomised,
            "eot_samples": eot_samples,
            "zero_gradient_samples": int(zero.sum()),
            "members": [
                {
                    "member": self._member_name(),
                    "attacked": images.shape[0],
                    "robust": int((~final).sum()),
                    "seconds": time.perf_counter() - start,
                }
            ],
        }
        return adv, final, torch.zeros(images.shape[0], dtype=torch.bool)

    def _member_name(self) -> str:
        return "apgd-ce" if self.loss == "ce" else "apgd-dlr"


class APGDL2(APGD):
    """APGD-CE / APGD-DLR under an L2 bound (same options and defaults as :class:`APGD`).

    ε bounds the L2 norm of the whole perturbation (pixel units of [0, 1]) and may exceed 1;
    default epsilons (0, 0.25, 0.5, 1.0) (0.5 is RobustBench's CIFAR-10 L2 threat model).
    """

    name: ClassVar[str] = "apgd_l2"
    norm: ClassVar[str] = "l2"
    zero_accuracy_epsilon: ClassVar[float] = 10.0
    default_epsilons: ClassVar[tuple[float, ...]] = (0.0, 0.25, 0.5, 1.0)
    _epsilon_upper: ClassVar[float | None] = None


class APGDT(APGD):
    """Targeted APGD with the targeted DLR loss (APGD-T, Croce & Hein 2020), L∞.

    One run per target class: the 2nd, 3rd, ... most likely classes of the clean image, up to
    ``n_target_classes`` (default 9, reference standard; at most the number of classes - 1),
    each on the samples still robust, each ``restarts`` times. Needs >= 4 classes.

    Args:
        n_target_classes: default 9. Other options as :class:`APGD` (no ``loss``).
    """

    name: ClassVar[str] = "apgd_t"
    _losses: ClassVar[tuple[str, ...]] = ("dlr-targeted",)

    def __init__(self, *, n_target_classes: int = DEFAULT_TARGET_CLASSES, **options: Any):
        if "loss" in options:
            raise StressorError(f"{self.name}: unknown option 'loss' (APGD-T always uses the targeted DLR loss)")
        super().__init__(loss="dlr-targeted", **options)
        self.n_target_classes = positive_int(self.name, "n_target_classes", n_target_classes)

    def _option_names(self) -> tuple[str, ...]:
        return (*super()._option_names(), "n_target_classes")

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "n_target_classes": self.n_target_classes}

    def _runs(self, clean_logits: Tensor) -> list[int | None]:
        targets = min(self.n_target_classes, clean_logits.shape[1] - 1)
        return [rank for rank in range(2, targets + 2) for _ in range(self.restarts)]

    def check_classes(self, num_classes: int) -> None:
        if num_classes < 4:
            raise StressorError(f"{self.name}: the targeted DLR loss needs >= 4 classes, the model has {num_classes}")

    def _member_name(self) -> str:
        return "apgd-t"


class APGDTL2(APGDT):
    """APGD-T under an L2 bound (options as :class:`APGDT`, epsilons as :class:`APGDL2`)."""

    name: ClassVar[str] = "apgd_t_l2"
    norm: ClassVar[str] = "l2"
    zero_accuracy_epsilon: ClassVar[float] = 10.0
    default_epsilons: ClassVar[tuple[float, ...]] = (0.0, 0.25, 0.5, 1.0)
    _epsilon_upper: ClassVar[float | None] = None


class AutoAttack(Attack):
    """The AutoAttack ensemble (Croce & Hein 2020), L∞: a sample is robust only if it survives
    every member; members run in the reference's order, each on the samples still robust.

    Members that exist here: ``apgd-ce`` (APGD, CE loss), ``apgd-t`` (APGD-T, 9 target classes),
    ``fab-t`` (:class:`stressors.attacks.fab.FABT`, 9 target classes; under L2
    :class:`stressors.attacks.fab.FABTL2`), ``square`` (:class:`stressors.attacks.square.Square`,
    gradient-free; under L2 :class:`stressors.attacks.square.SquareL2`) and ``apgd-dlr``
    (untargeted DLR, the second member of the reference's ``rand`` version). They run in the
    order apgd-ce, apgd-dlr, apgd-t, fab-t, square (the reference's). Each member keys its
    random draws by its own stressor name (``apgd``, ``apgd_t``, ``fab_t``, ``square``; under L2
    ``apgd_l2``, ``apgd_t_l2``, ``fab_t_l2``, ``square_l2``), so on the samples it attacks it
    gives exactly the stand-alone stressor's result. ``members: [apgd-ce, apgd-t, fab-t, square]``
    is the reference's standard version. The default ``members: [apgd-ce, apgd-t]`` leaves FAB-T
    and Square out (FAB-T's 9 targeted runs and Square's 5000 queries per robust sample dominate
    the run time): the default can only overstate robust accuracy relative to the full standard
    version (it is never reported as "AutoAttack standard"; ``options.members_not_run`` names the
    missing ones). Budgets per member (reference standard): APGD ``n_iter`` 100, ``restarts`` 1,
    ``n_target_classes`` 9; FAB-T ``n_iter`` 100, ``restarts`` 1, ``n_target_classes`` 9,
    ``alpha_max`` 0.1, ``eta`` 1.05, ``beta`` 0.9; Square ``n_queries`` 5000, ``p_init`` 0.8,
    ``restarts`` 1; under EoT every APGD member uses ``eot_samples`` = 20 gradient samples per step
    (FAB-T and Square use none).

    Args:
        epsilons: radii (alias ``severities``), as :class:`APGD` / :class:`APGDL2`.
        members: the members to run, in any order given (they run in the reference's order);
            default ``[apgd-ce, apgd-t]``.
        n_iter, rho, eot, eot_samples: as :class:`APGD`, for every APGD member (``n_iter`` also FAB-T's).
        restarts: as :class:`APGD`, for every member (FAB-T and Square included).
        n_target_classes: APGD-T's and FAB-T's target classes; default 9.
        n_queries, p_init: Square's budget (as :class:`stressors.attacks.square.Square`);
            default 5000 and 0.8 (AutoAttack's standard budget under both norms).

    Raises:
        StressorError: a bad or unknown option, an unknown member or one not built here.
    """

    name: ClassVar[str] = "autoattack"
    norm: ClassVar[str] = "linf"
    iterative: ClassVar[bool] = True
    stronger_than_single_step: ClassVar[bool] = True
    bisectable: ClassVar[bool] = True
    #: An ensemble: it must be at least as strong as every other attack of its norm
    #: (``adversarial.ensemble_at_least_as_strong``).
    ensemble: ClassVar[bool] = True
    _epsilon_upper: ClassVar[float | None] = 1.0
    _single: ClassVar[type] = APGD
    _targeted: ClassVar[type] = APGDT
    _members: ClassVar[tuple[str, ...]] = MEMBERS
    _not_built: ClassVar[tuple[str, ...]] = NOT_BUILT
    _square: ClassVar[type] = Square

    _fab: ClassVar[type] = FABT

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        members: Sequence[str] = DEFAULT_MEMBERS,
        n_iter: int = DEFAULT_N_ITER,
        restarts: int = DEFAULT_RESTARTS,
        rho: float = DEFAULT_RHO,
        n_target_classes: int = DEFAULT_TARGET_CLASSES,
        eot: str = "auto",
        eot_samples: int = DEFAULT_EOT_SAMPLES,
        **unknown: Any,
    ):
        names = ["epsilons", "severities", "members", "n_iter", "restarts", "rho", "n_target_classes", "eot"]
        names += ["eot_samples"] + (["n_queries", "p_init"] if "square" in self._members else [])
        square_budget = {k: unknown.pop(k) for k in ("n_queries", "p_init") if k in unknown and k in names}
        reject_unknown(self.name, unknown, names)
        self.severities = resolve_epsilons(
            self.name, epsilons, severities, self.default_epsilons, upper=self._epsilon_upper
        )
        if isinstance(members, (str, bytes)) or not isinstance(members, Sequence) or not members:
            raise StressorError(f"{self.name}: option 'members' must be a non-empty list, got {members!r}")
        available = list(self._members)
        for m in members:
            if m in self._not_built:
                raise StressorError(
                    f"{self.name}: member {m!r} is not built in this cvaudit version; available {available}"
                )
            if m not in self._members:
                raise StressorError(f"{self.name}: unknown member {m!r}; expected some of {available}")
        if len(set(members)) != len(members):
            raise StressorError(f"{self.name}: option 'members' lists a member twice: {list(members)}")
        self.members = tuple(m for m in self._members if m in members)
        common = {"epsilons": self.severities, "n_iter": n_iter, "restarts": restarts, "rho": rho}
        common |= {"eot": eot, "eot_samples": eot_samples}
        try:
            self._attacks = {
                "apgd-ce": self._single(loss="ce", **common),
                "apgd-dlr": self._single(loss="dlr", **common),
                "apgd-t": self._targeted(n_target_classes=n_target_classes, **common),
            }
            if "fab-t" in self.members:
                self._attacks["fab-t"] = self._fab(
                    epsilons=self.severities, n_iter=n_iter, restarts=restarts, n_target_classes=n_target_classes
                )
            if "square" in self._members:
                self._attacks["square"] = self._square(epsilons=self.severities, restarts=restarts, **square_budget)
        except StressorError as err:
            raise StressorError(f"{self.name}: {str(err).split(': ', 1)[1]}") from None
        square = self._attacks.get("square")
        self.n_queries = square.n_queries if square else DEFAULT_QUERIES
        self.p_init = square.p_init if square else DEFAULT_P_INIT
        self._attacks = {m: a for m, a in self._attacks.items() if m in self.members}
        self.n_iter, self.restarts, self.rho = n_iter, restarts, float(rho)
        self.n_target_classes, self.eot, self.eot_samples = n_target_classes, eot, eot_samples
        self.last_details: dict[str, Any] | None = None

    @property
    def options(self) -> dict[str, Any]:
        budgets: dict[str, dict[str, Any]] = {}
        for m in self.members:
            if m == "square":
                budgets[m] = {"n_queries": self.n_queries, "p_init": self.p_init, "restarts": self.restarts}
            else:
                budgets[m] = {"n_iter": self.n_iter, "restarts": self.restarts}
        for m in ("apgd-t", "fab-t"):
            if m in budgets:
                budgets[m]["n_target_classes"] = self.n_target_classes
        if "fab-t" in budgets:
            fab = self._attacks["fab-t"]
            budgets["fab-t"] |= {"alpha_max": fab.alpha_max, "eta": fab.eta, "beta": fab.beta}
        return {
            "epsilons": list(self.severities),
            "members": list(self.members),
            "members_not_run": [m for m in REFERENCE_MEMBERS if m not in self.members],
            "budgets": budgets,
            "rho": self.rho,
            "momentum": MOMENTUM,
            "eot": self.eot,
            "eot_samples": self.eot_samples,
        }

    def _run(self, model, images, labels, epsilon, seeds, sample_ids, seed):
        n = images.shape[0]
        bseed = batch_seed(seeds)
        randomised = is_randomised(model, images, bseed)  # also under eot: never (the flag then fails)
        use_eot = self.eot == "always" or (self.eot == "auto" and randomised)
        eot_samples = self.eot_samples if use_eot else 1
        adv = images.clone()
        with _forked_rng(images.device, bseed), torch.no_grad():
            num_classes = int(model(images[:1]).shape[1])
            robust = predict(model, images) == labels
        for attack in self._attacks.values():
            attack.check_classes(num_classes)
        rows, zero = [], torch.zeros(n, dtype=torch.bool, device=images.device)
        for member, attack in self._attacks.items():
            start = time.perf_counter()
            todo = robust.nonzero().squeeze(1)
            if todo.numel():
                # each member keys its draws by its own name: the ensemble's member = the stand-alone attack
                member_seeds = per_sample_seeds(sample_ids[todo.cpu()], seed=seed, name=attack.name, severity=epsilon)
                with _forked_rng(images.device, derive_seed(bseed, member)):
                    x_adv, hit, zero_grad = attack.run_member(
                        model, images[todo], labels[todo], epsilon, member_seeds, eot_samples
                    )
                adv[todo[hit]] = x_adv[hit]
                robust[todo[hit]] = False
                zero[todo] |= zero_grad
            rows.append(
                {
                    "member": member,
                    "attacked": int(todo.numel()),
                    "robust": int(robust.sum()),
                    "seconds": time.perf_counter() - start,
                }
            )
        with _forked_rng(images.device, bseed):
            final = predict(model, adv) != labels
        self.last_details = {
            "randomised_model": randomised,
            "eot_samples": eot_samples,
            "zero_gradient_samples": int(zero.sum()),
            "members": rows,
        }
        return adv, final, torch.zeros(n, dtype=torch.bool)


class AutoAttackL2(AutoAttack):
    """The AutoAttack ensemble under an L2 bound (options as :class:`AutoAttack`, epsilons as :class:`APGDL2`)."""

    name: ClassVar[str] = "autoattack_l2"
    norm: ClassVar[str] = "l2"
    zero_accuracy_epsilon: ClassVar[float] = 10.0
    default_epsilons: ClassVar[tuple[float, ...]] = (0.0, 0.25, 0.5, 1.0)
    _epsilon_upper: ClassVar[float | None] = None
    _single: ClassVar[type] = APGDL2
    _targeted: ClassVar[type] = APGDTL2
    _members: ClassVar[tuple[str, ...]] = MEMBERS_L2
    _not_built: ClassVar[tuple[str, ...]] = NOT_BUILT_L2
    _square: ClassVar[type] = SquareL2

    _fab: ClassVar[type] = FABTL2


__all__ = [
    "APGD",
    "APGDL2",
    "APGDT",
    "APGDTL2",
    "DEFAULT_MEMBERS",
    "MEMBERS",
    "MEMBERS_L2",
    "NOT_BUILT",
    "NOT_BUILT_L2",
    "REFERENCE_MEMBERS",
    "AutoAttack",
    "AutoAttackL2",
    "apgd_run",
    "apgd_starts",
    "checkpoints",
    "dlr_loss",
    "dlr_targeted_loss",
    "is_randomised",
]
