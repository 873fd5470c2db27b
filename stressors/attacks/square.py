"""Square Attack (Andriushchenko et al. 2020): a score-based black-box attack, L∞ and L2.

"Square Attack: a query-efficient black-box adversarial attack via random
search" (ECCV 2020), the black-box member of AutoAttack (Croce & Hein 2020).
It queries only the model's outputs (the logits), never its gradients, so it
also runs on models without usable gradients (ONNX, quantised, preprocessing
that breaks gradients) and it is the check against gradient masking: if Square
fools samples that gradient attacks could not, the gradients are misleading.

Algorithm (L∞, as the reference ``autoattack/square.py``): start from vertical
stripes, ``x + ε·s`` with one random sign ``s`` per (channel, column); then, for
``n_queries`` iterations, put a random square window of side
``round(sqrt(p·H·W))`` (at least 1, at most min(H, W)) at ``x ± ε`` with one
random sign per channel, clip to the ε-ball and to [0, 1], and keep the change
if it lowers the margin loss ``logit[y] - max_{k≠y} logit[k]`` (or the sample
becomes misclassified). A sample is no longer queried once it is misclassified.

Algorithm (L2, :class:`SquareL2`, as the reference with ``norm='L2'``): the start is a grid of
5 x 5 tiles of side ``H // 5`` (centred), each the meta-pattern ``eta`` (nested rectangles of weight
1/k², positive on the top half and negative on the bottom, transposed at random) times one random
sign per channel, the whole rescaled to L2 norm ε and clipped to [0, 1]. Each iteration draws two
windows of side ``max(round(sqrt(p·H·W)), 3)`` made odd: in the first, the old perturbation
(normalised per channel) plus a new ``eta`` with random signs is rescaled so that it takes the
mass of both windows and the unused budget (``sqrt(max(ε² - |δ|², 0) / C + |δ on both|²)`` per
channel); the second is zeroed; the perturbation is rescaled to L2 norm ε and the image clipped to
[0, 1] (clipping only shortens it, so ``|x_adv - x|_2 <= ε``). Acceptance and early stop as L∞.

Defaults (AutoAttack's ``standard`` version, for both norms, its reference budget): ``n_queries``
5000 iterations (one model query per still-robust sample each, plus one for the
stripes), ``p_init`` 0.8 with the reference schedule p = p_init / 2^k where k
steps up at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 ten-thousandths of
the budget (k = 1 .. 9), margin loss, 1 restart. With ``restarts`` > 1 a sample
that survives a run is attacked again from fresh random draws; it counts as
fooled if any restart fools it.

Reproducibility: unlike the reference (one window position and sign per
iteration for the whole batch, from the global RNG), every random draw is
per sample: the start (stripes; L2: each tile's orientation and signs), and for
each iteration the windows' positions, the pattern's orientation (L2) and the
signs, come from a CPU generator seeded with the sample's own seed (keyed by
(seed, name, ε, sample id)) and the restart, drawn in fixed chunks of
iterations. A sample's result therefore does not depend on the batch it is in
(batch size, order, shard), up to float rounding of the model's batched logits
(at a near-tie between a candidate's margin and the best one, that rounding can
flip an accept and so change the sample's later path: rare, but seen on a
near-flat tiny model whose margins move by ~1e-5 per query).

The L2 version differs from the reference in two edge cases only: a window's
corner is uniform over every place it fits (the reference's ``random_int`` never
picks the last one), and start tiles that would cross the border, or windows
larger than the image, are left out or shrunk to fit (the reference assumes
images of side >= 5 whose tiles fit).

Samples the model already misclassifies are returned unchanged (fooled, no
query). Clean errors count as fooled, as in robust accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from audit.contract.seeds import stream_seed
from stressors.attacks.common import (
    Attack,
    positive_float,
    positive_int,
    predict,
    reject_unknown,
    resolve_epsilons,
)
from stressors.base import generator

#: AutoAttack's standard budget for Square (Croce & Hein 2020, ``autoattack.py``).
DEFAULT_QUERIES = 5000
DEFAULT_P_INIT = 0.8
#: The reference schedule: p halves when the iteration passes these ten-thousandths of the budget.
P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: Iterations whose random draws are made at once, per sample (fixed, so draws never depend on the batch).
CHUNK = 100
_STREAM = 2000


def p_selection(p_init: float, iteration: int, n_queries: int) -> float:
    """The share of the image a window covers at ``iteration`` (the reference's schedule).

    >>> [p_selection(0.8, i, 5000) for i in (0, 5, 6, 25, 26, 4999)]
    [0.8, 0.8, 0.4, 0.4, 0.2, 0.0015625]
    """
    it = int(iteration / n_queries * 10000)
    halvings = sum(it > bound for bound in P_SCHEDULE)
    return p_init / 2**halvings


def margin(logits: Tensor, labels: Tensor) -> Tensor:
    """``logit[y] - max_{k≠y} logit[k]`` per sample (<= 0: misclassified). Shape: (N, K), (N,) -> (N,)."""
    logits = logits.float()
    rows = torch.arange(logits.shape[0], device=logits.device)
    correct = logits[rows, labels]
    others = logits.clone()
    others[rows, labels] = -math.inf
    return correct - others.amax(dim=1)


class Square(Attack):
    """Square Attack (Andriushchenko et al. 2020), score-based black-box, L∞.

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``);
            default (0, 1/255, 2/255, 4/255, 8/255).
        n_queries: random-search iterations per restart (one query per
            still-robust sample each); default 5000 (AutoAttack's budget).
        p_init: share of the image the first windows cover, in (0, 1]; default 0.8.
        restarts: runs from fresh random draws for the samples still robust; default 1.

    Raises:
        StressorError: a bad or unknown option (ε outside [0, 1], ``n_queries`` < 1,
            ``p_init`` outside (0, 1], ``restarts`` < 1).
    """

    name: ClassVar[str] = "square"
    norm: ClassVar[str] = "linf"
    needs_gradients: ClassVar[bool] = False
    iterative: ClassVar[bool] = True
    #: Largest allowed ε (1 in L∞, pixel units of [0, 1]); None: no bound (L2).
    _epsilon_upper: ClassVar[float | None] = 1.0

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        n_queries: int = DEFAULT_QUERIES,
        p_init: float = DEFAULT_P_INIT,
        restarts: int = 1,
        **unknown: Any,
    ):
        reject_unknown(self.name, unknown, ["epsilons", "severities", "n_queries", "p_init", "restarts"])
        self.severities = resolve_epsilons(
            self.name, epsilons, severities, self.default_epsilons, upper=self._epsilon_upper
        )
        self.n_queries = positive_int(self.name, "n_queries", n_queries)
        self.p_init = positive_float(self.name, "p_init", p_init, upper=1.0)
        self.restarts = positive_int(self.name, "restarts", restarts)

    @property
    def options(self) -> dict[str, Any]:
        return {
            "epsilons": list(self.severities),
            "n_queries": self.n_queries,
            "p_init": self.p_init,
            "restarts": self.restarts,
            "loss": "margin",
        }

    def _run(self, model, images, labels, epsilon, seeds, sample_ids, seed):
        n = images.shape[0]
        best = images.clone()
        fooled = predict(model, images) != labels
        failed = torch.zeros(n, dtype=torch.bool)
        if epsilon == 0:
            return best, fooled, failed
        for restart in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            adv, success = self._single_run(
                model, images[todo], labels[todo], epsilon, [seeds[i] for i in todo.tolist()], restart
            )
            keep = success if restart > 0 else torch.ones_like(success)
            best[todo] = torch.where(keep.view(-1, 1, 1, 1), adv, best[todo])
            fooled[todo] |= success
        return best, predict(model, best) != labels, failed

    # ---- the autoattack ensemble's member interface (as :meth:`stressors.attacks.apgd.APGD.run_member`)

    def run_member(
        self, model, images: Tensor, labels: Tensor, epsilon: float, seeds: list[int], eot_samples: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """This attack on a batch, for the ensemble: ``(adversarial, fooled, zero_gradient)`` per sample.

        Exactly :meth:`_run` with the given per-sample ``seeds`` (so the ensemble's member equals
        the stand-alone ``square`` on the samples it attacks). ``eot_samples`` is ignored (no
        gradients); ``zero_gradient`` is all False.
        """
        adv, fooled, _ = self._run(model, images, labels, epsilon, seeds, None, None)
        return adv, fooled.to(images.device), torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)

    def check_classes(self, num_classes: int) -> None:
        """Square works with any number of classes (>= 2): nothing to check."""

    # ---- the random search (shared by both norms; the norm's own parts are the three hooks below)

    @torch.no_grad()
    def _single_run(
        self, model, x: Tensor, y: Tensor, eps: float, seeds: list[int], restart: int
    ) -> tuple[Tensor, Tensor]:
        """One run of the random search on samples the model classifies correctly.

        Each sample draws from its own generator: first its start (:meth:`_start`), then
        ``CHUNK`` iterations' uniforms at a time (:meth:`_draws_per_iteration` per iteration),
        only while it is still queried. A candidate replaces the best point when it lowers the
        margin or is misclassified; a misclassified sample is no longer queried.

        Returns:
            ``(x_best, fooled)``: (M, C, H, W) within the ε-ball and [0, 1]; (M,) bool.
        """
        m, c = x.shape[:2]
        gens = [generator(stream_seed(s, _STREAM + restart)) for s in seeds]
        x_best = self._start(x, eps, gens)
        margin_min = margin(model(x_best), y)
        k = self._draws_per_iteration(c)
        draws = torch.empty((m, CHUNK, k), dtype=torch.float64)
        for it in range(self.n_queries):
            active = (margin_min > 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            if it % CHUNK == 0:
                for i in active.tolist():  # only samples still queried draw; a sample's stream is its own
                    draws[i] = torch.rand((CHUNK, k), generator=gens[i], dtype=torch.float64)
            p = p_selection(self.p_init, it, self.n_queries)
            u = draws[active.cpu(), it % CHUNK].to(x.device)
            x_cur, x_best_cur = x[active], x_best[active]
            x_new = self._candidate(x_cur, x_best_cur, eps, p, u)
            new_margin = margin(model(x_new), y[active])
            take = (new_margin < margin_min[active]) | (new_margin <= 0)
            margin_min[active] = torch.where(take, new_margin, margin_min[active])
            x_best[active] = torch.where(take.view(-1, 1, 1, 1), x_new, x_best_cur)
        return x_best, margin_min <= 0

    def _draws_per_iteration(self, channels: int) -> int:
        """Uniforms per sample and iteration: the window's corner (2) and one sign per channel."""
        return 2 + channels

    def _start(self, x: Tensor, eps: float, gens: list[torch.Generator]) -> Tensor:
        """The reference's L∞ start: vertical stripes ``x + ε·s``, one sign per (channel, column), in [0, 1]."""
        c, w = x.shape[1], x.shape[3]
        stripes = torch.stack([torch.randint(0, 2, (c, 1, w), generator=g) for g in gens]).to(x.device, x.dtype)
        return (x + eps * (2 * stripes - 1)).clamp(0, 1)

    def _candidate(self, x: Tensor, x_best: Tensor, eps: float, p: float, u: Tensor) -> Tensor:
        """The L∞ update: one window of side ``round(sqrt(p·H·W))`` set to ``x ± ε`` (a sign per channel).

        Shape:
            x, x_best: (M, C, H, W); u: (M, 2 + C) uniforms. Returns (M, C, H, W) in the ε-ball and [0, 1].
        """
        h, w = x.shape[2:]
        side = min(max(round(math.sqrt(p * h * w)), 1), h, w)
        window = window_mask(h, w, corner(u[:, 0], h, side), corner(u[:, 1], w, side), side).to(x.dtype)
        signs = torch.where(u[:, 2:] < 0.5, -1.0, 1.0).to(x.dtype)
        x_new = x_best + 2 * eps * signs[:, :, None, None] * window
        return torch.minimum(torch.maximum(x_new, x - eps), x + eps).clamp_(0, 1)


class SquareL2(Square):
    """Square Attack (Andriushchenko et al. 2020), score-based black-box, L2.

    As :class:`Square` (same options, defaults, schedule, margin loss, early stop, restarts and
    per-sample draws), with the reference's L2 start and L2 window update (see the module docstring).

    Args:
        epsilons: L2 radii of the whole perturbation, pixel units of [0, 1] (alias ``severities``);
            may exceed 1; default (0, 0.25, 0.5, 1.0) (0.5: RobustBench's CIFAR-10 L2 threat model).
        n_queries, p_init, restarts: as :class:`Square` (defaults 5000, 0.8, 1: AutoAttack's standard L2 budget).

    Raises:
        StressorError: a bad or unknown option (a negative or non-finite ε, ``n_queries`` < 1,
            ``p_init`` outside (0, 1], ``restarts`` < 1).
    """

    name: ClassVar[str] = "square_l2"
    norm: ClassVar[str] = "l2"
    zero_accuracy_epsilon: ClassVar[float] = 10.0
    default_epsilons: ClassVar[tuple[float, ...]] = (0.0, 0.25, 0.5, 1.0)
    _epsilon_upper: ClassVar[float | None] = None

    def _draws_per_iteration(self, channels: int) -> int:
        """Two windows' corners (4), the pattern's orientation (1) and one sign per channel."""
        return 5 + channels

    def _start(self, x: Tensor, eps: float, gens: list[torch.Generator]) -> Tensor:
        """The reference's L2 start: a grid of ``eta`` tiles with a sign per channel, scaled to L2 norm ε.

        Tiles of side ``max(H // 5, 1)`` start at ``(H - 5·side) // 2`` (at least 0) in both
        directions and step by their side; tiles that would cross the border are left out (the
        reference assumes they fit). Per sample and tile: the orientation of ``eta`` (transposed or
        not) and a sign per channel.
        """
        c, h, w = x.shape[1:]
        side = max(h // 5, 1)
        first = max((h - 5 * side) // 2, 0)
        tops = [t for t in range(first, first + side * (h // side), side) if t + side <= h]
        lefts = [t for t in range(first, first + side * (w // side), side) if t + side <= w]
        tiles = [(t, left) for t in tops for left in lefts]
        u = torch.stack([torch.rand((len(tiles), 1 + c), generator=g, dtype=torch.float64) for g in gens])
        u = u.to(x.device)
        pattern = eta(side).to(x.device, x.dtype)
        delta = torch.zeros_like(x)
        for k, (top, left) in enumerate(tiles):
            delta[:, :, top : top + side, left : left + side] += _oriented(pattern, u[:, k, 0]) * _signs(u[:, k, 1:])
        return (x + eps * _normalised(delta)).clamp(0, 1)

    def _candidate(self, x: Tensor, x_best: Tensor, eps: float, p: float, u: Tensor) -> Tensor:
        """The reference's L2 update: move the perturbation's mass of two windows into the first.

        Window side ``max(round(sqrt(p·H·W)), 3)``, made odd (at most min(H, W)). In window 1
        the old perturbation, normalised per channel, plus ``eta`` with a sign per channel, is
        rescaled per channel to ``sqrt(max(ε² - |δ|², 0) / C + |δ on windows 1 ∪ 2|²)``; window 2
        is set to 0 (where it does not overlap window 1); the whole δ is then rescaled to L2 norm ε
        and the image clipped to [0, 1] (which only shortens δ).

        Shape:
            x, x_best: (M, C, H, W); u: (M, 5 + C) uniforms. Returns (M, C, H, W) in the ε-ball and [0, 1].
        """
        m, c, h, w = x.shape
        side = max(round(math.sqrt(p * h * w)), 3)
        side = min(side + (side % 2 == 0), h, w)
        top1, left1 = corner(u[:, 0], h, side), corner(u[:, 1], w, side)
        top2, left2 = corner(u[:, 2], h, side), corner(u[:, 3], w, side)
        mask1 = window_mask(h, w, top1, left1, side)
        mask2 = window_mask(h, w, top2, left2, side)
        delta = x_best - x
        span = torch.arange(side, device=x.device)
        index = (
            torch.arange(m, device=x.device)[:, None, None, None],
            torch.arange(c, device=x.device)[None, :, None, None],
            (top1[:, None] + span)[:, None, :, None],
            (left1[:, None] + span)[:, None, None, :],
        )
        old = delta[index]  # (M, C, side, side): window 1
        norm_image = _l2(delta)
        norm_windows = _l2(delta * (mask1 | mask2))
        new = _oriented(eta(side).to(x.device, x.dtype), u[:, 4]) * _signs(u[:, 5:]) + old / (
            1e-12 + _l2(old, (-2, -1))
        )
        scale = ((eps**2 - norm_image**2).clamp(min=0) / c + norm_windows**2).sqrt()
        new = new / (1e-12 + _l2(new, (-2, -1))) * scale
        delta = delta.masked_fill(mask2, 0.0)
        delta[index] = new
        return (x + eps * _normalised(delta)).clamp(0, 1)


def eta_rectangles(x: int, y: int) -> Tensor:
    """The reference's ``eta_rectangles``: nested rectangles of weight 1/k² around the centre, unit L2 norm.

    Shape: returns (x, y) float64 (empty for x == 0).
    """
    delta = torch.zeros((x, y), dtype=torch.float64)
    r, c = x // 2, y // 2
    for k in range(max(x // 2 + 1, y // 2 + 1)):
        delta[max(r, 0) : min(r + 2 * k + 1, x), max(c, 0) : min(c + 2 * k + 1, y)] += 1.0 / (k + 1) ** 2
        r, c = r - 1, c - 1
    return delta / delta.pow(2).sum().sqrt() if delta.numel() else delta


def eta(side: int) -> Tensor:
    """The reference's ``eta`` meta-pattern without its random transpose: ``eta_rectangles`` on the
    top half, minus it on the bottom half, unit L2 norm. Shape: returns (side, side) float64.
    """
    delta = torch.zeros((side, side), dtype=torch.float64)
    delta[: side // 2] = eta_rectangles(side // 2, side)
    delta[side // 2 :] = -eta_rectangles(side - side // 2, side)
    return delta / delta.pow(2).sum().sqrt()


def _oriented(pattern: Tensor, u: Tensor) -> Tensor:
    """``pattern`` (S, S), transposed for the samples whose ``u`` > 0.5 (the reference's coin). Returns (M, 1, S, S)."""
    return torch.where((u > 0.5)[:, None, None, None], pattern.T, pattern)


def _signs(u: Tensor) -> Tensor:
    """One sign per channel from uniforms (the reference's ``random_choice``). (M, C) -> (M, C, 1, 1)."""
    return torch.where(u < 0.5, -1.0, 1.0)[:, :, None, None]


def _l2(t: Tensor, dims: tuple[int, ...] = (1, 2, 3)) -> Tensor:
    return t.pow(2).sum(dim=dims, keepdim=True).sqrt()


def _normalised(delta: Tensor) -> Tensor:
    """Each sample's ``delta`` divided by its L2 norm (+1e-12, as the reference's ``normalize``)."""
    return delta / (_l2(delta) + 1e-12)


def corner(u: Tensor, size: int, side: int) -> Tensor:
    """A window's first row (or column), uniform over the ``size - side + 1`` places it fits. (M,) -> (M,) int64."""
    return (u * (size - side + 1)).long().clamp_(max=size - side)


def window_mask(h: int, w: int, top: Tensor, left: Tensor, side: int) -> Tensor:
    """(M, 1, H, W) bool: True inside each sample's ``side`` x ``side`` window at (``top``, ``left``)."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    return in_rows[:, None, :, None] & in_cols[:, None, None, :]
