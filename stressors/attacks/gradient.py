"""Gradient attacks: FGSM, PGD (L∞), PGD (L2) and DeepFool (L∞), on foolbox 3.

Defaults and their sources:

- FGSM: one signed-gradient step of size ε, no random start (Goodfellow et al.
  2015, "Explaining and Harnessing Adversarial Examples").
- PGD: random start uniform in the ε-ball, 20 steps, absolute step size
  2.5·ε/steps (Madry et al. 2018, "Towards Deep Learning Models Resistant to
  Adversarial Attacks"; the same rule is the default of their ``robustness``
  library), 1 restart, 5 restarts with ``thorough: true``. A sample counts as
  fooled if ANY restart fools it (worst case per sample, as in Madry et al. and
  Croce & Hein 2020), and the image from a successful restart is returned.
  foolbox's own ``LinfPGD`` default (``rel_stepsize=0.01/0.3``) is never used:
  with few steps it cannot leave a small part of the ball and overstates robust
  accuracy badly (FACTS.md: 71% vs 14%).
- DeepFool: 50 steps, the 10 most likely classes, overshoot 0.02
  (Moosavi-Dezfooli et al. 2016; foolbox defaults). It is a minimisation attack:
  it runs once per batch and the minimal perturbation is clipped to every ε.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import eagerpy as ep
import foolbox.attacks as fa
import torch
from torch import Tensor

from stressors.attacks.common import (
    Attack,
    LastBatchCache,
    check_batch,
    check_flag,
    foolbox_model,
    l2_starts,
    linf_starts,
    positive_float,
    positive_int,
    predict,
    reject_unknown,
    require_gradients,
    resolve_epsilons,
)
from stressors.base import StressorError

#: Madry et al. 2018: step size 2.5·ε/steps reaches the ball's boundary from any start.
DEFAULT_STEP_SIZE_FACTOR = 2.5
DEFAULT_STEPS = 20
THOROUGH_RESTARTS = 5


class _StartedLinfPGD(fa.LinfProjectedGradientDescentAttack):
    """foolbox L∞ PGD whose random start is given (drawn per sample by the caller)."""

    def __init__(self, *, start: Tensor, **kwargs: Any):
        super().__init__(**kwargs)
        self._start = start

    def get_random_start(self, x0: ep.Tensor, epsilon: float) -> ep.Tensor:
        return ep.astensor(self._start)


class _StartedL2PGD(fa.L2ProjectedGradientDescentAttack):
    """foolbox L2 PGD whose random start is given (drawn per sample by the caller)."""

    def __init__(self, *, start: Tensor, **kwargs: Any):
        super().__init__(**kwargs)
        self._start = start

    def get_random_start(self, x0: ep.Tensor, epsilon: float) -> ep.Tensor:
        return ep.astensor(self._start)


def _no_failed_starts(images: Tensor) -> Tensor:
    return torch.zeros(images.shape[0], dtype=torch.bool)


class FGSM(Attack):
    """Fast Gradient Sign Method (L∞): one step of size ε along the gradient's sign.

    Single-step, so it is a weak attack: use it as a baseline next to ``pgd``
    (the sanity checks flag a PGD weaker than FGSM).

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``);
            default (0, 1/255, 2/255, 4/255, 8/255).

    Raises:
        StressorError: a bad or unknown option.
    """

    name: ClassVar[str] = "fgsm"
    bisectable: ClassVar[bool] = True

    def __init__(
        self, *, epsilons: Sequence[float] | None = None, severities: Sequence[float] | None = None, **unknown: Any
    ):
        reject_unknown(self.name, unknown, ["epsilons", "severities"])
        self.severities = resolve_epsilons(self.name, epsilons, severities, self.default_epsilons)

    def _run(self, model, images, labels, epsilon, seeds, sample_ids, seed):
        attack = fa.LinfFastGradientAttack(random_start=False)
        _, adv, success = attack(foolbox_model(model, images.device), images, labels, epsilons=epsilon)
        return adv, success, _no_failed_starts(images)


class PGD(Attack):
    """Projected Gradient Descent under an L∞ bound (Madry et al. 2018).

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``);
            default (0, 1/255, 2/255, 4/255, 8/255).
        steps: gradient steps per restart; default 20.
        restarts: random restarts; default 1, or 5 with ``thorough``. A sample is
            fooled if any restart fools it.
        thorough: use 5 restarts unless ``restarts`` is given.
        step_size: absolute step size in pixel units, the same for every ε;
            default None, i.e. ``step_size_factor * ε / steps``.
        step_size_factor: default 2.5 (Madry et al. 2018).
        random_start: start uniformly in the ε-ball (default True); per-sample
            draws keyed by (seed, name, ε, sample id, restart).

    Raises:
        StressorError: a bad or unknown option.
    """

    name: ClassVar[str] = "pgd"
    norm: ClassVar[str] = "linf"
    iterative: ClassVar[bool] = True
    stronger_than_single_step: ClassVar[bool] = True
    bisectable: ClassVar[bool] = True
    _foolbox_attack: ClassVar[type] = _StartedLinfPGD
    _epsilon_upper: ClassVar[float | None] = 1.0

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        steps: int = DEFAULT_STEPS,
        restarts: int | None = None,
        thorough: bool = False,
        step_size: float | None = None,
        step_size_factor: float | None = None,
        random_start: bool = True,
        **unknown: Any,
    ):
        reject_unknown(self.name, unknown, list(self._option_names()))
        self.severities = resolve_epsilons(
            self.name, epsilons, severities, self.default_epsilons, upper=self._epsilon_upper
        )
        self.steps = positive_int(self.name, "steps", steps)
        self.thorough = check_flag(self.name, "thorough", thorough)
        self.random_start = check_flag(self.name, "random_start", random_start)
        default_restarts = THOROUGH_RESTARTS if self.thorough else 1
        self.restarts = default_restarts if restarts is None else positive_int(self.name, "restarts", restarts)
        if self.restarts > 1 and not self.random_start:
            raise StressorError(f"{self.name}: option 'restarts' > 1 needs random_start: true (restarts would repeat)")
        if step_size is not None and step_size_factor is not None:
            raise StressorError(f"{self.name}: give 'step_size' or 'step_size_factor', not both")
        self.step_size = (
            None if step_size is None else positive_float(self.name, "step_size", step_size, upper=self._epsilon_upper)
        )
        factor = DEFAULT_STEP_SIZE_FACTOR if step_size_factor is None else step_size_factor
        self.step_size_factor = positive_float(self.name, "step_size_factor", factor)

    @staticmethod
    def _option_names() -> tuple[str, ...]:
        return (
            "epsilons",
            "severities",
            "steps",
            "restarts",
            "thorough",
            "step_size",
            "step_size_factor",
            "random_start",
        )

    @property
    def options(self) -> dict[str, Any]:
        return {
            "epsilons": list(self.severities),
            "steps": self.steps,
            "restarts": self.restarts,
            "step_size": self.step_size,
            "step_size_factor": None if self.step_size is not None else self.step_size_factor,
            "random_start": self.random_start,
        }

    def step_for(self, epsilon: float) -> float:
        """The absolute step size used at ``epsilon`` (pixel units)."""
        return self.step_size if self.step_size is not None else self.step_size_factor * epsilon / self.steps

    def _starts(self, images: Tensor, seeds: list[int], epsilon: float, restart: int) -> Tensor:
        return linf_starts(images, seeds, epsilon, stream=restart + 1)

    def _run(self, model, images, labels, epsilon, seeds, sample_ids, seed):
        fmodel = foolbox_model(model, images.device)
        n = images.shape[0]
        best = images.clone()
        fooled = torch.zeros(n, dtype=torch.bool, device=images.device)
        for restart in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            whole = todo.numel() == n
            x, y = (images, labels) if whole else (images[todo], labels[todo])
            todo_seeds = seeds if whole else [seeds[i] for i in todo.tolist()]
            adv, success = self._one_restart(fmodel, x, y, epsilon, todo_seeds, restart)
            keep = success if restart > 0 else torch.ones_like(success)
            best[todo] = torch.where(keep.view(-1, 1, 1, 1), adv, best[todo])
            fooled[todo] |= success
        return best, fooled, _no_failed_starts(images)

    def _one_restart(self, fmodel, x: Tensor, y: Tensor, epsilon: float, seeds: list[int], restart: int):
        start = self._starts(x, seeds, epsilon, restart) if self.random_start else x
        attack = self._foolbox_attack(
            start=start, abs_stepsize=self.step_for(epsilon), steps=self.steps, random_start=self.random_start
        )
        _, adv, success = attack(fmodel, x, y, epsilons=epsilon)
        return adv, success


class PGDL2(PGD):
    """Projected Gradient Descent under an L2 bound (Madry et al. 2018).

    Same options and defaults as :class:`PGD`, but ε bounds the L2 norm of the
    whole perturbation (pixel units of [0, 1]); ε may exceed 1. Default epsilons
    (0, 0.25, 0.5, 1.0) (0.5 is RobustBench's CIFAR-10 L2 threat model).
    """

    name: ClassVar[str] = "pgd_l2"
    norm: ClassVar[str] = "l2"
    zero_accuracy_epsilon: ClassVar[float] = 10.0
    default_epsilons: ClassVar[tuple[float, ...]] = (0.0, 0.25, 0.5, 1.0)
    _foolbox_attack: ClassVar[type] = _StartedL2PGD
    _epsilon_upper: ClassVar[float | None] = None

    def _starts(self, images: Tensor, seeds: list[int], epsilon: float, restart: int) -> Tensor:
        return l2_starts(images, seeds, epsilon, stream=restart + 1)


class DeepFool(Attack):
    """L∞ DeepFool (Moosavi-Dezfooli et al. 2016), evaluated at fixed ε.

    Finds a small perturbation that crosses the nearest linearised decision
    boundary, once per batch (cached for the other ε of the same batch), then
    clips it to each ε.

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``).
        steps: maximum DeepFool iterations; default 50.
        candidates: number of most likely classes considered; default 10.
        overshoot: relative overshoot past the boundary; default 0.02.

    Raises:
        StressorError: a bad or unknown option.
    """

    name: ClassVar[str] = "deepfool"
    minimisation: ClassVar[bool] = True
    iterative: ClassVar[bool] = True
    minimal_perturbation_method: ClassVar[str | None] = "deepfool"

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        steps: int = 50,
        candidates: int = 10,
        overshoot: float = 0.02,
        **unknown: Any,
    ):
        reject_unknown(self.name, unknown, ["epsilons", "severities", "steps", "candidates", "overshoot"])
        self.severities = resolve_epsilons(self.name, epsilons, severities, self.default_epsilons)
        self.steps = positive_int(self.name, "steps", steps)
        self.candidates = positive_int(self.name, "candidates", candidates)
        if self.candidates < 2:
            raise StressorError(f"{self.name}: option 'candidates' must be >= 2, got {candidates!r}")
        self.overshoot = positive_float(self.name, "overshoot", overshoot)
        self._cache = LastBatchCache()

    @property
    def options(self) -> dict[str, Any]:
        return {
            "epsilons": list(self.severities),
            "steps": self.steps,
            "candidates": self.candidates,
            "overshoot": self.overshoot,
        }

    def minimal(self, model, images: Tensor, labels: Tensor, *, sample_ids: Tensor, seed: int) -> Tensor:
        """DeepFool's minimal adversarial images, not clipped to any ε (per-sample breaking points).

        ``(minimal - images).abs().amax()`` per sample is the L∞ size of the
        perturbation DeepFool found (an upper bound on the true minimal ε); a
        sample it could not fool within ``steps`` is still classified correctly.

        Shape:
            images: (N, C, H, W) in [0, 1]; labels, sample_ids: (N,). Returns (N, C, H, W).
        """
        check_batch(self.name, images, labels, sample_ids)
        require_gradients(self.name, model, images, labels)
        return self._minimal(model, images.detach(), labels, sample_ids, seed).clamp(0, 1)

    def _minimal(self, model, images, labels, sample_ids, seed) -> Tensor:
        cached = self._cache.get(model, images, labels, sample_ids, seed)
        if cached is not None:
            return cached[0]
        attack = fa.LinfDeepFoolAttack(steps=self.steps, candidates=self.candidates, overshoot=self.overshoot)
        minimal = attack.run(foolbox_model(model, images.device), images, labels).detach()
        self._cache.put(model, images, labels, sample_ids, seed, (minimal,))
        return minimal

    def _run(self, model, images, labels, epsilon, seeds, sample_ids, seed):
        minimal = self._minimal(model, images, labels, sample_ids, seed)
        adv = (images + (minimal - images).clamp(-epsilon, epsilon)).clamp(0, 1)
        return adv, predict(model, adv) != labels, _no_failed_starts(images)
