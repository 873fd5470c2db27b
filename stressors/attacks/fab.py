"""FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein 2020), L∞ and L2, in plain torch.

References: F. Croce and M. Hein, "Minimally distorted adversarial examples with a fast adaptive
boundary attack", ICML 2020, and "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020 (AutoAttack, whose third member FAB-T is); their code
(``autoattack/fab_base.py``, ``fab_pt.py``, ``fab_projections.py``). The defaults are AutoAttack's
``standard`` version: ``n_target_classes`` 9, ``n_restarts`` 1, ``n_iter`` 100, ``alpha_max`` 0.1,
``eta`` 1.05, ``beta`` 0.9.

FAB looks for the *smallest* adversarial perturbation, not for the worst loss inside the ε-ball. For a
target class t (the clean logits' 2nd, 3rd, ... most likely classes, one run each on the samples still
robust), each iteration:

1. linearises the decision boundary between the true class y and t at the iterate x₁:
   ``f(x) = z_t(x) - z_y(x) ≈ f(x₁) + ∇f(x₁)·(x - x₁) = 0`` (one backward pass);
2. projects both x₁ and the clean image x₀ onto that hyperplane intersected with the box [0, 1]^d, in the
   attack's norm (``projection_linf`` / ``projection_l2``, the reference's exact projections): δ₁, δ₂;
3. moves to ``((x₁ + η δ₁)(1 - α) + (x₀ + η δ₂) α)`` clipped to [0, 1], with
   ``α = min(|δ₁| / (|δ₁| + |δ₂|), α_max)`` (biased towards the clean image, overshoot η);
4. if the new point is misclassified it is kept when its distance to x₀ is the smallest so far, and the
   iterate steps back towards x₀: ``x₁ = x₀ + β (x₁ - x₀)``.

The first run starts at x₀; a restart starts at ``x₀ + ε/2 · t / |t|`` (L∞: t uniform in [-1, 1]^d; L2: t
standard normal), clipped to [0, 1]. A sample is fooled when its smallest adversarial perturbation has
norm ≤ ε; that point is returned, else the clean image. Samples the model already misclassifies are not
attacked (they count as fooled).

Differences from the reference, none of which changes which samples are fooled: a sample stops iterating
once it has an adversarial point within ε (the reference keeps shrinking it; the fooled set is the same);
restart draws come from per-sample generators keyed by (seed, name, ε, sample id, run) instead of the
global RNG; sorts inside the projections are stable (the reference's order of exactly tied coordinates is
unspecified).

Contract (as every attack, :class:`stressors.attacks.common.Attack`): ε in pixel units of [0, 1] (L∞) or of
the whole image (L2); every step is per sample (the targeted logit difference is a sum of per-sample terms
and the projections work row by row), so a deterministic model gives the same images whatever the batch
size or order, up to float rounding of the model's batched outputs; everything runs on the images' device;
one batch's gradients are held at a time. FAB has no expectation over transformation (the reference's
``rand`` version leaves it out): on a randomised model its steps follow one draw each, seeded per batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

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
from stressors.base import StressorError

#: AutoAttack's standard budget for FAB-T (``autoattack.py``: n_iter 100, restarts 1, 9 target classes).
DEFAULT_N_ITER = 100
DEFAULT_RESTARTS = 1
DEFAULT_TARGET_CLASSES = 9
DEFAULT_ALPHA_MAX = 0.1
DEFAULT_ETA = 1.05
DEFAULT_BETA = 0.9
#: A restart's random start has this share of ε (the reference's ``* 0.5``).
RESTART_SHARE = 0.5
_STREAM = 3000


# --------------------------------------------------------------------- projections


def projection_linf(points: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The smallest L∞ step δ per row with ``w·(p + δ) = b`` and ``p + δ`` in [0, 1]^d (reference).

    Where the hyperplane does not meet the box, the step towards it as far as the box allows. Rows are
    independent. Shape: points, w (M, d); b (M,) -> (M, d).
    """
    t, w, b = points, w.clone(), b.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).to(t.dtype)
    d = (a - t) * (w != 0).to(t.dtype)
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1, stable=True)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = -ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0:1]).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (~c_l)
    lb = torch.zeros(int(c2.sum()), device=t.device, dtype=t.dtype)
    ub = torch.full_like(lb, w.shape[1] - 1)
    indp_, sb_, s_, p_, b_ = indp[c2], sb[c2], s[c2], p[c2], b[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):  # bisection over the sorted coordinates
        mid = torch.floor((lb + ub) / 2)
        mid2 = mid.long().unsqueeze(1)
        indcurr = indp_.gather(1, indp_.size(1) - 1 - mid2)
        b2 = (sb_.gather(1, mid2) - s_.gather(1, mid2) * p_.gather(1, indcurr)).squeeze(1)
        c = b_ - b2 > 0
        lb = torch.where(c, mid, lb)
        ub = torch.where(c, ub, mid)
    lb = lb.long()
    if c_l.any():
        lmbd = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lmbd
    lmbd = torch.clamp_min((b[c2] - sb[c2, lb]) / (-s[c2, lb]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lmbd, d[c2]) * a[c2] + torch.max(-lmbd, d[c2]) * (1 - a[c2])
    return d * (w != 0).to(t.dtype)


def projection_l2(points: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The smallest L2 step δ per row with ``w·(p + δ) = b`` and ``p + δ`` in [0, 1]^d (reference).

    Rows are independent. Shape: points, w (M, d); b (M,) -> (M, d).
    """
    t, w = points, w.clone()
    c = (w * t).sum(1) - b
    ind2 = 2 * (c >= 0) - 1
    w.mul_(ind2.unsqueeze(1))
    c = c * ind2
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r.masked_fill_(w.abs() < 1e-8, 1e12)
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1, stable=True)
    rs2 = torch.nn.functional.pad(rs[:, 1:], (0, 1))
    rs.masked_fill_(rs == 1e12, 0)
    rs2.masked_fill_(rs2 == 1e12, 0)
    w3s = (w**2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).to(t.dtype))
    s = torch.cat((-w5 * rs[:, 0:1], torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0:1]), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~(c4 | c3)
    lb = torch.zeros(int(c2.sum()), device=t.device, dtype=t.dtype)
    ub = torch.full_like(lb, w.shape[1] - 1)
    s_, c_ = s[c2], c[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        mid = torch.floor((lb + ub) / 2)
        above = s_.gather(1, mid.long().unsqueeze(1)).squeeze(1) + c_ > 0
        lb = torch.where(above, mid, lb)
        ub = torch.where(above, ub, mid)
    lb = lb.long()
    if c4.any():
        alpha = c[c4] / w5[c4].squeeze(-1)
        d[c4] = -alpha.unsqueeze(-1) * w[c4]
    if c2.any():
        alpha = (s[c2, lb] + c[c2]) / ws[c2, lb] + rs[c2, lb]
        alpha[ws[c2, lb] == 0] = 0
        c5 = (alpha.unsqueeze(-1) > r[c2]).to(t.dtype)
        d[c2] = d[c2] * c5 - alpha.unsqueeze(-1) * w[c2] * (1 - c5)
    return d * (w.abs() > 1e-8).to(t.dtype)


def _norm(d: Tensor, norm: str) -> Tensor:
    """Per-row L∞ or L2 norm of (M, ...) -> (M,)."""
    flat = d.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def targeted_difference(model: torch.nn.Module, x: Tensor, y: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``f = z_t - z_y`` per sample and its input gradient (reference ``get_diff_logits_grads_batch_targeted``).

    Shape: x (M, C, H, W); y, target (M,) -> (M,), (M, C, H, W).
    """
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        rows = torch.arange(x.shape[0], device=x.device)
        diff = logits[rows, target] - logits[rows, y]
        (grad,) = torch.autograd.grad(diff.sum(), xg)
    return diff.detach(), grad.detach()


def fab_run(
    model: torch.nn.Module,
    x0: Tensor,
    y: Tensor,
    target: Tensor,
    start: Tensor,
    *,
    eps: float,
    norm: str,
    n_iter: int,
    alpha_max: float = DEFAULT_ALPHA_MAX,
    eta: float = DEFAULT_ETA,
    beta: float = DEFAULT_BETA,
) -> tuple[Tensor, Tensor, Tensor]:
    """One targeted FAB run (the reference's ``attack_single_run`` with ``is_targeted``), per sample.

    Returns:
        ``(adversarial, fooled, zero_gradient)``: per sample the misclassified iterate closest to ``x0``
        (``x0`` where none was found); ``fooled`` (M,) bool: that point is within ε; ``zero_gradient`` (M,)
        bool: the gradient at the start was all zero or not finite. A sample stops once fooled.

    Shape:
        x0, start: (M, C, H, W) samples the model classifies correctly; y, target: (M,).
    """
    m = x0.shape[0]
    project = projection_linf if norm == "linf" else projection_l2
    best = x0.clone()
    best_norm = torch.full((m,), math.inf, device=x0.device, dtype=x0.dtype)
    zero = torch.zeros(m, dtype=torch.bool, device=x0.device)
    x1 = start.clone()
    for it in range(n_iter):
        active = (best_norm > eps).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        xa, x0a, ya, ta = x1[active], x0[active], y[active], target[active]
        k = active.numel()
        diff, grad = targeted_difference(model, xa, ya, ta)
        if it == 0:
            flat = grad.flatten(1)
            zero[active] = ~torch.isfinite(flat).all(dim=1) | ~(flat.abs().amax(dim=1) > 0)
        with torch.no_grad():
            # the hyperplane w·x = b on which the linearised f = z_t - z_y is 0: w = ∇f, b = ∇f·x₁ - f(x₁)
            w = grad.reshape(k, -1)
            b = -diff + (w * xa.reshape(k, -1)).sum(dim=1)
            steps = project(torch.cat((xa.reshape(k, -1), x0a.reshape(k, -1))), torch.cat((w, w)), torch.cat((b, b)))
            d1, d2 = steps[:k].view_as(xa), steps[k:].view_as(xa)
            a0 = _norm(steps, norm).clamp(min=1e-8)
            a1, a2 = a0[:k], a0[k:]
            alpha = (a1 / (a1 + a2)).clamp(min=0.0, max=alpha_max).view(-1, *([1] * (xa.ndim - 1)))
            xa = ((xa + eta * d1) * (1 - alpha) + (x0a + eta * d2) * alpha).clamp(0.0, 1.0)
            adversarial = predict(model, xa) != ya
            dist = _norm(xa - x0a, norm)
            closer = adversarial & (dist < best_norm[active])
            best[active[closer]] = xa[closer]
            best_norm[active[closer]] = dist[closer]
            xa = torch.where(adversarial.view(-1, *([1] * (xa.ndim - 1))), x0a + (xa - x0a) * beta, xa)
            x1[active] = xa
    return best, best_norm <= eps, zero


def fab_starts(images: Tensor, seeds: Sequence[int], eps: float, norm: str, *, run: int) -> Tensor:
    """A restart's start ``x + ε/2 · t/|t|`` per sample (L∞: t uniform in [-1, 1]^d; L2: normal), in [0, 1]."""
    return apgd_starts(images, seeds, RESTART_SHARE * eps, norm, stream=_STREAM + run)


# ---------------------------------------------------------------------------- attacks


class FABT(Attack):
    """FAB-T: the targeted Fast Adaptive Boundary attack (Croce & Hein 2020), L∞; AutoAttack's third member.

    A minimal-perturbation attack: per target class (the 2nd, 3rd, ... most likely classes of the clean
    image) it walks along linearised decision boundaries towards the closest misclassified point, and a
    sample counts as fooled when that point is within ε (module docstring). It needs no step size and
    finds adversarial examples APGD's loss-driven steps can miss when the loss is badly scaled, but it
    needs gradients: on masked gradients use ``square``.

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``); default (0, 1/255, 2/255,
            4/255, 8/255).
        n_target_classes: target classes, at most the number of classes - 1; default 9 (reference).
        n_iter: iterations per run; default 100 (reference).
        restarts: runs per target class (the second and later from a random start within ε/2);
            default 1 (reference standard).
        alpha_max: largest weight of the clean image's projection in a step, in (0, 1]; default 0.1.
        eta: overshoot of the projection step, >= 1; default 1.05.
        beta: backward step towards the clean image after a success, in (0, 1]; default 0.9.

    Raises:
        StressorError: a bad or unknown option.
    """

    name: ClassVar[str] = "fab_t"
    norm: ClassVar[str] = "linf"
    iterative: ClassVar[bool] = True
    bisectable: ClassVar[bool] = True
    _epsilon_upper: ClassVar[float | None] = 1.0

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        n_target_classes: int = DEFAULT_TARGET_CLASSES,
        n_iter: int = DEFAULT_N_ITER,
        restarts: int = DEFAULT_RESTARTS,
        alpha_max: float = DEFAULT_ALPHA_MAX,
        eta: float = DEFAULT_ETA,
        beta: float = DEFAULT_BETA,
        **unknown: Any,
    ):
        reject_unknown(self.name, unknown, list(self._option_names()))
        self.severities = resolve_epsilons(
            self.name, epsilons, severities, self.default_epsilons, upper=self._epsilon_upper
        )
        self.n_target_classes = positive_int(self.name, "n_target_classes", n_target_classes)
        self.n_iter = positive_int(self.name, "n_iter", n_iter)
        self.restarts = positive_int(self.name, "restarts", restarts)
        self.alpha_max = positive_float(self.name, "alpha_max", alpha_max, upper=1.0)
        self.beta = positive_float(self.name, "beta", beta, upper=1.0)
        ok = not isinstance(eta, bool) and isinstance(eta, (int, float)) and math.isfinite(eta) and eta >= 1
        if not ok:
            raise StressorError(f"{self.name}: option 'eta' must be a number >= 1, got {eta!r}")
        self.eta = float(eta)
        self.last_details: dict[str, Any] | None = None

    @staticmethod
    def _option_names() -> tuple[str, ...]:
        return ("epsilons", "severities", "n_target_classes", "n_iter", "restarts", "alpha_max", "eta", "beta")

    @property
    def options(self) -> dict[str, Any]:
        return {
            "epsilons": list(self.severities),
            "n_target_classes": self.n_target_classes,
            "n_iter": self.n_iter,
            "restarts": self.restarts,
            "alpha_max": self.alpha_max,
            "eta": self.eta,
            "beta": self.beta,
        }

    def check_classes(self, num_classes: int) -> None:
        """Raise :class:`StressorError` if the model has fewer than 2 classes (no target)."""
        if num_classes < 2:
            raise StressorError(f"{self.name}: a targeted attack needs >= 2 classes, the model has {num_classes}")

    def run_member(
        self, model, images: Tensor, labels: Tensor, epsilon: float, seeds: list[int], eot_samples: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """All runs on a batch: ``(adversarial, fooled, zero_gradient)`` per sample (the ensemble's interface).

        Only samples the model classifies correctly are attacked; each run (target class, then restart)
        attacks only the samples still robust. Unfooled samples are returned unchanged. ``eot_samples``
        is ignored (FAB has no EoT).

        Raises:
            StressorError: images that are not float32 or float64 (the projections' bisection needs the
                precision: in float16 it does not converge).
        """
        if images.dtype not in (torch.float32, torch.float64):
            raise StressorError(f"{self.name}: needs float32 or float64 images, got {str(images.dtype).split('.')[-1]}")
        n = images.shape[0]
        with torch.no_grad():
            clean_logits = model(images)
        fooled = clean_logits.argmax(1) != labels
        zero = torch.zeros(n, dtype=torch.bool, device=images.device)
        adv = images.clone()
        if epsilon == 0:
            return adv, fooled, zero
        ranking = clean_logits.sort(dim=1)[1]
        targets = min(self.n_target_classes, clean_logits.shape[1] - 1)
        run = 0
        for rank in range(2, targets + 2):
            for restart in range(self.restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if todo.numel() == 0:
                    return adv, fooled, zero
                x, y = images[todo], labels[todo]
                start = (
                    x if restart == 0 else fab_starts(x, [seeds[i] for i in todo.tolist()], epsilon, self.norm, run=run)
                )
                x_adv, hit, zero_grad = fab_run(
                    model,
                    x,
                    y,
                    ranking[todo, -rank],
                    start,
                    eps=epsilon,
                    norm=self.norm,
                    n_iter=self.n_iter,
                    alpha_max=self.alpha_max,
                    eta=self.eta,
                    beta=self.beta,
                )
                adv[todo[hit]] = x_adv[hit]
                fooled[todo] |= hit
                zero[todo] |= zero_grad
                run += 1
        return adv, fooled, zero

    def _run(self, model, images, labels, epsilon, seeds, sample_ids, seed):
        start = time.perf_counter()
        bseed = batch_seed(seeds)
        randomised = is_randomised(model, images, bseed)
        with _forked_rng(images.device, bseed):
            with torch.no_grad():
                self.check_classes(int(model(images[:1]).shape[1]))
            adv, _, zero = self.run_member(model, images, labels, epsilon, seeds, 1)
            final = predict(model, adv) != labels
        self.last_details = {
            "randomised_model": randomised,
            "eot_samples": 1,
            "zero_gradient_samples": int(zero.sum()),
            "members": [
                {
                    "member": "fab-t",
                    "attacked": images.shape[0],
                    "robust": int((~final).sum()),
                    "seconds": time.perf_counter() - start,
                }
            ],
        }
        return adv, final, torch.zeros(images.shape[0], dtype=torch.bool)


class FABTL2(FABT):
    """FAB-T under an L2 bound (options as :class:`FABT`): the reference's L2 projection and restarts.

    ε bounds the L2 norm of the whole perturbation (pixel units of [0, 1]) and may exceed 1; default
    epsilons (0, 0.25, 0.5, 1.0) (0.5 is RobustBench's CIFAR-10 L2 threat model).
    """

    name: ClassVar[str] = "fab_t_l2"
    norm: ClassVar[str] = "l2"
    zero_accuracy_epsilon: ClassVar[float] = 10.0
    default_epsilons: ClassVar[tuple[float, ...]] = (0.0, 0.25, 0.5, 1.0)
    _epsilon_upper: ClassVar[float | None] = None


__all__ = ["FABT", "FABTL2", "fab_run", "fab_starts", "projection_l2", "projection_linf", "targeted_difference"]
