"""Square Attack (Andriushchenko et al. 2020): a score-based black-box L∞ attack.

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

Defaults (AutoAttack's ``standard`` version, its reference budget): ``n_queries``
5000 iterations (one model query per still-robust sample each, plus one for the
stripes), ``p_init`` 0.8 with the reference schedule p = p_init / 2^k where k
steps up at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 ten-thousandths of
the budget (k = 1 .. 9), margin loss, 1 restart. With ``restarts`` > 1 a sample
that survives a run is attacked again from fresh random draws; it counts as
fooled if any restart fools it.

Reproducibility: unlike the reference (one window position and sign per
iteration for the whole batch, from the global RNG), every random draw is
per sample: the stripes, and for each iteration the window's position and
signs, come from a CPU generator seeded with the sample's own seed (keyed by
(seed, name, ε, sample id)) and the restart, drawn in fixed chunks of
iterations. A sample's result therefore does not depend on the batch it is in
(batch size, order, shard), up to float rounding of the model's batched logits.

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
        self.severities = resolve_epsilons(self.name, epsilons, severities, self.default_epsilons)
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

    @torch.no_grad()
    def _single_run(
        self, model, x: Tensor, y: Tensor, eps: float, seeds: list[int], restart: int
    ) -> tuple[Tensor, Tensor]:
        """One run of the random search on samples the model classifies correctly.

        Returns:
            ``(x_best, fooled)``: (M, C, H, W) within the ε-ball and [0, 1]; (M,) bool.
        """
        m, c, h, w = x.shape
        device = x.device
        gens = [generator(stream_seed(s, _STREAM + restart)) for s in seeds]
        stripes = torch.stack([torch.randint(0, 2, (c, 1, w), generator=g) for g in gens]).to(device, x.dtype)
        x_best = (x + eps * (2 * stripes - 1)).clamp(0, 1)
        margin_min = margin(model(x_best), y)
        rows = torch.arange(h, device=device)
        cols = torch.arange(w, device=device)
        draws = torch.empty((m, CHUNK, 2 + c), dtype=torch.float64)
        for it in range(self.n_queries):
            active = (margin_min > 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            if it % CHUNK == 0:
                for i in active.tolist():  # only samples still queried draw; a sample's stream is its own
                    draws[i] = torch.rand((CHUNK, 2 + c), generator=gens[i], dtype=torch.float64)
            p = p_selection(self.p_init, it, self.n_queries)
            side = min(max(round(math.sqrt(p * h * w)), 1), h, w)
            u = draws[active.cpu(), it % CHUNK].to(device)
            top = (u[:, 0] * (h - side + 1)).long().clamp_(max=h - side)
            left = (u[:, 1] * (w - side + 1)).long().clamp_(max=w - side)
            signs = torch.where(u[:, 2:] < 0.5, -1.0, 1.0).to(x.dtype)
            in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
            in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
            window = (in_rows[:, None, :, None] & in_cols[:, None, None, :]).to(x.dtype)
            x_cur, x_best_cur = x[active], x_best[active]
            x_new = x_best_cur + 2 * eps * signs[:, :, None, None] * window
            x_new = torch.minimum(torch.maximum(x_new, x_cur - eps), x_cur + eps).clamp_(0, 1)
            new_margin = margin(model(x_new), y[active])
            take = (new_margin < margin_min[active]) | (new_margin <= 0)
            margin_min[active] = torch.where(take, new_margin, margin_min[active])
            x_best[active] = torch.where(take.view(-1, 1, 1, 1), x_new, x_best_cur)
        return x_best, margin_min <= 0
