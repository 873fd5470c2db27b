"""HopSkipJump: a decision-based (gradient-free) L∞ attack on foolbox 3.

For models without usable gradients (ONNX, quantised, non-differentiable
preprocessing). It only needs the model's top-1 decisions.

Defaults and their sources: 64 iterations, 100 initial and at most 10,000
gradient-estimation queries, gamma 1.0, geometric step-size search (Chen,
Jordan & Wainwright 2020, "HopSkipJumpAttack: A Query-Efficient Decision-Based
Attack"; foolbox defaults), L∞ constraint so that ε means what it means for
``pgd``. It is a minimisation attack: it runs once per batch (cached for the
other ε of the same batch) and the minimal perturbation is clipped to every ε.
It costs thousands of model queries per sample; use ``--attack-samples``.

Starting points (FACTS.md: foolbox's default init attack fails on small
models): for each correctly classified sample, up to ``init_tries`` uniform
noise images drawn from the sample's own seed; if none is misclassified, a
correctly classified image of another class from the same batch (chosen by a
keyed hash of the two sample ids, so not by batch order). A sample with no
starting point is returned unchanged, counts as NOT fooled and is reported in
``last_failed_starts``. Samples the model already gets wrong need no attack.

Reproducibility: foolbox draws HopSkipJump's gradient-estimation noise from
torch's global generator for the whole batch. The attack runs inside
``torch.random.fork_rng`` seeded from the batch's per-sample seeds, so the
global state is restored afterwards and a batch always gives the same result;
unlike the gradient attacks, the result of a sample can change when the batch
composition changes (a different batch size or shard).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import foolbox.attacks as fa
import torch
from torch import Tensor

from audit.contract.seeds import derive_seed, stream_seed
from stressors.attacks.common import (
    Attack,
    LastBatchCache,
    batch_seed,
    foolbox_model,
    positive_float,
    positive_int,
    predict,
    reject_unknown,
    resolve_epsilons,
)
from stressors.base import generator

_NOISE_STREAM = 1000


@contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for ``device`` inside a fork; restore them on exit.

    Only for third-party code that offers no generator argument (foolbox HSJ).
    """
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def noise_starts(
    model: torch.nn.Module, images: Tensor, labels: Tensor, seeds: Sequence[int], need: Tensor, *, tries: int
) -> tuple[Tensor, Tensor]:
    """Uniform-noise starting points, drawn per sample, kept where the model misclassifies them.

    Returns:
        ``(starts, found)``: starts (N, C, H, W) (the image itself where none
        was found) and found (N,) bool, both on ``images.device``.
    """
    starts, found = images.clone(), torch.zeros_like(need)
    for attempt in range(tries):
        todo = (need & ~found).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        draws = [
            torch.rand(images.shape[1:], generator=generator(stream_seed(seeds[i], _NOISE_STREAM + attempt)))
            for i in todo.tolist()
        ]
        noise = torch.stack(draws).to(images.device, images.dtype)
        ok = predict(model, noise) != labels[todo]
        starts[todo[ok]] = noise[ok]
        found[todo[ok]] = True
    return starts, found


def _pair_score(seed: int, key: int, other: int) -> int:
    return derive_seed(seed, "hopskipjump-start", key, other)


def batch_starts(
    images: Tensor,
    labels: Tensor,
    clean_pred: Tensor,
    sample_ids: Tensor,
    seed: int,
    starts: Tensor,
    found: Tensor,
    need: Tensor,
) -> None:
    """Fill missing starting points (in place) with a correctly classified image of another class.

    The donor of sample i is the candidate j minimising a keyed hash of
    (seed, id_i, id_j), so the choice does not depend on batch order.
    """
    donors = clean_pred == labels
    keys = sample_ids.tolist()
    for i in (need & ~found).nonzero().squeeze(1).tolist():
        candidates = (donors & (labels != labels[i])).nonzero().squeeze(1).tolist()
        if not candidates:
            continue
        j = min(candidates, key=lambda c: _pair_score(seed, keys[i], keys[c]))
        starts[i] = images[j]
        found[i] = True


class HopSkipJump(Attack):
    """HopSkipJump (Chen et al. 2020), decision-based, L∞, evaluated at fixed ε.

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``).
        steps: HopSkipJump iterations; default 64.
        initial_gradient_eval_steps: queries for the first gradient estimate; default 100.
        max_gradient_eval_steps: cap on queries per gradient estimate; default 10000.
        gamma: binary-search threshold parameter; default 1.0.
        init_tries: uniform-noise images tried per sample as a starting point; default 10.

    Raises:
        StressorError: a bad or unknown option.

    After :meth:`perturb`, ``last_failed_starts`` is the (N,) bool mask of
    samples with no starting point (returned unchanged, not fooled).
    """

    name: ClassVar[str] = "hopskipjump"
    needs_gradients: ClassVar[bool] = False
    minimisation: ClassVar[bool] = True
    iterative: ClassVar[bool] = True

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        steps: int = 64,
        initial_gradient_eval_steps: int = 100,
        max_gradient_eval_steps: int = 10000,
        gamma: float = 1.0,
        init_tries: int = 10,
        **unknown: Any,
    ):
        allowed = [
            "epsilons",
            "severities",
            "steps",
            "initial_gradient_eval_steps",
            "max_gradient_eval_steps",
            "gamma",
            "init_tries",
        ]
        reject_unknown(self.name, unknown, allowed)
        self.severities = resolve_epsilons(self.name, epsilons, severities, self.default_epsilons)
        self.steps = positive_int(self.name, "steps", steps)
        self.initial_gradient_eval_steps = positive_int(
            self.name, "initial_gradient_eval_steps", initial_gradient_eval_steps
        )
        self.max_gradient_eval_steps = positive_int(self.name, "max_gradient_eval_steps", max_gradient_eval_steps)
        self.gamma = positive_float(self.name, "gamma", gamma)
        self.init_tries = positive_int(self.name, "init_tries", init_tries)
        self._cache = LastBatchCache()

    @property
    def options(self) -> dict[str, Any]:
        return {
            "epsilons": list(self.severities),
            "steps": self.steps,
            "initial_gradient_eval_steps": self.initial_gradient_eval_steps,
            "max_gradient_eval_steps": self.max_gradient_eval_steps,
            "gamma": self.gamma,
            "init_tries": self.init_tries,
        }

    def _foolbox_attack(self) -> fa.HopSkipJumpAttack:
        return fa.HopSkipJumpAttack(
            steps=self.steps,
            initial_gradient_eval_steps=self.initial_gradient_eval_steps,
            max_gradient_eval_steps=self.max_gradient_eval_steps,
            gamma=self.gamma,
            constraint="linf",
        )

    def _minimal(self, model, images, labels, seeds, sample_ids, seed) -> tuple[Tensor, Tensor]:
        """Minimal adversarials (the image itself where not attacked) and the failed-start mask."""
        cached = self._cache.get(model, images, labels, sample_ids, seed)
        if cached is not None:
            return cached
        clean_pred = predict(model, images)
        need = clean_pred == labels
        starts, found = noise_starts(model, images, labels, seeds, need, tries=self.init_tries)
        batch_starts(images, labels, clean_pred, sample_ids, seed, starts, found, need)
        minimal, todo = images.clone(), (need & found).nonzero().squeeze(1)
        if todo.numel():
            with seeded_global_rng(batch_seed([seeds[i] for i in todo.tolist()]), images.device):
                run = self._foolbox_attack().run
                minimal[todo] = run(
                    foolbox_model(model, images.device), images[todo], labels[todo], starting_points=starts[todo]
                )
        value = (minimal.detach(), (need & ~found).cpu())
        self._cache.put(model, images, labels, sample_ids, seed, value)
        return value

    def _run(self, model, images, labels, epsilon, seeds, sample_ids, seed):
        minimal, failed = self._minimal(model, images, labels, seeds, sample_ids, seed)
        adv = (images + (minimal - images).clamp(-epsilon, epsilon)).clamp(0, 1)
        fooled = (predict(model, adv) != labels).cpu() & ~failed
        return adv, fooled, failed
