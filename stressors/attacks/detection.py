"""Gradient attacks on object detectors: PGD with a detection objective, under L∞ or L2.

Registered as ``detection_pgd`` (L∞) and ``detection_pgd_l2`` (L2), the detection
counterparts of the classifier's ``pgd`` and ``pgd_l2``. ε is in pixel units of [0, 1]
at the **model's input** (after cvaudit's resize or letterbox), as for classifiers.

**What the attack needs from the detector** (:class:`DetectionTarget`, built by the
evaluation layer from the loaded detector, see
:mod:`audit.evaluation.detection.attack_target`): a differentiable function
``candidates(images) -> (boxes (B, A, 4) xyxy input pixels, scores (B, A, C))`` giving
every candidate before any threshold or NMS (``output: yolo``: the raw head), or the
returned detections with a score only in the column of their label (``output: boxes``,
``class_scores = False``), and ``has_gradients`` (False for ONNX: refused).

**Objectives** (``objective``), over the candidates whose box has IoU >= ``iou`` (default
0.5) with a ground-truth object of the image (recomputed at every step on the current,
detached boxes; a candidate overlapping two objects counts for each):

- ``vanishing`` (DAG / TOG-vanishing style: Xie et al. 2017, Chow et al. 2020): minimise
  the sum of the candidates' scores for the object's true class;
- ``mislabel``: minimise the sum of (score of the true class - score of the target class),
  the target of an object being the wrong class with the highest summed score over its
  candidates on the clean image (ties: the lowest class index; no candidate: the next class,
  ``(true + 1) mod C``). Needs every class's score per candidate: refused for
  ``output: boxes`` (one line).

**PGD** (Madry et al. 2018, as the classifier ``pgd``): a random start uniform in the ε-ball
drawn per sample from (seed, name, ε, sample id) (:func:`~stressors.attacks.common.linf_starts`,
:func:`~stressors.attacks.common.l2_starts`), ``steps`` (default 20) steps of absolute size
``step_size_factor · ε / steps`` (default 2.5) along the sign of the gradient (L∞) or the
per-sample normalised gradient (L2), each followed by the projection to the ε-ball around the
clean image and to [0, 1]. The iterate with the lowest loss of each sample (random start
included) is returned. Every sample's loss and step depend only on that sample, so the
result does not depend on the batch it is in (up to the float nondeterminism of batched
convolutions). At ε = 0 the ball is a point: the clean images come back exactly.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from audit.contract.seeds import stream_seed
from stressors.attacks.common import (
    Attack,
    check_flag,
    l2_starts,
    linf_starts,
    positive_float,
    positive_int,
    reject_unknown,
    resolve_epsilons,
)
from stressors.base import StressorError, check_images, check_severity, generator, per_sample_seeds

__all__ = ["OBJECTIVES", "DetectionAttackResult", "DetectionPGD", "DetectionPGDL2", "DetectionTarget"]

#: The detection objectives.
OBJECTIVES = ("vanishing", "mislabel")
DEFAULT_STEPS = 20
DEFAULT_STEP_SIZE_FACTOR = 2.5
DEFAULT_IOU = 0.5
#: Stream of the per-sample draws of the random-noise baseline (the random starts use stream 1).
NOISE_STREAM = 101


class DetectionTarget(Protocol):
    """A detector as the attack sees it (see the module docstring)."""

    has_gradients: bool
    #: True when ``candidates`` gives every class's score of every candidate (mislabel needs it).
    class_scores: bool

    def candidates(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) in [0, 1] -> boxes (B, A, 4) xyxy input pixels, scores (B, A, K) in [0, 1]."""
        ...


@dataclass(frozen=True)
class DetectionAttackResult:
    """One attack call on a batch.

    Attributes:
        images: the adversarial images (N, C, H, W) in [0, 1], the input's dtype and device.
        loss_clean: (N,) float64 on the CPU: the objective on the clean images (the loss to lower).
        loss_final: (N,) float64 on the CPU: the objective at the returned images (<= the loss at
            the random start; not necessarily <= ``loss_clean`` — a broken or masked gradient shows
            as ``loss_final >= loss_clean``).
        objects: (N,) int64: ground-truth objects per image (an image without objects is returned
            unchanged, loss 0).
    """

    images: Tensor
    loss_clean: Tensor
    loss_final: Tensor
    objects: Tensor


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of xyxy boxes, continuous pixel coordinates (zero-area boxes have IoU 0).

    Shape:
        a: (A, 4), b: (G, 4) -> (A, G).

    >>> box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2]])).tolist()
    [[0.3333333432674408]]
    """
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def _check_truth(name: str, boxes: Any, labels: Any, n: int, size: tuple[int, int]) -> None:
    for what, value in (("boxes", boxes), ("labels", labels)):
        if not isinstance(value, Sequence) or len(value) != n:
            raise StressorError(f"{name}: {what} must be a list of {n} tensors (one per image)")
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4 or not b.is_floating_point():
            raise StressorError(f"{name}: boxes of image {i} must be a float tensor (K, 4), got {_describe(b)}")
        if not isinstance(lab, Tensor) or lab.shape != (b.shape[0],) or lab.is_floating_point():
            raise StressorError(
                f"{name}: labels of image {i} must be an integer tensor ({b.shape[0]},), got {_describe(lab)}"
            )
        if b.numel() and not bool(torch.isfinite(b).all()):
            raise StressorError(f"{name}: boxes of image {i} contain NaN or inf")


def _describe(value: Any) -> str:
    return f"shape {tuple(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value).__name__


class DetectionPGD:
    """PGD on a detector under an L∞ bound, with a detection objective (module docstring).

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``); default
            (0, 1/255, 2/255, 4/255, 8/255).
        objective: ``vanishing`` (default) or ``mislabel``.
        steps: gradient steps; default 20.
        step_size: absolute step size (pixel units), the same at every ε; default None, i.e.
            ``step_size_factor · ε / steps``.
        step_size_factor: default 2.5 (Madry et al. 2018).
        random_start: start uniformly in the ε-ball (default True), per-sample keyed draws.
        iou: a candidate attacks an object when its box has IoU >= this with the object's box;
            default 0.5.

    Raises:
        StressorError: a bad or unknown option (one line naming it).
    """

    name: ClassVar[str] = "detection_pgd"
    norm: ClassVar[str] = "linf"
    model_aware: ClassVar[bool] = True
    #: Trait read by the detection pass: the attack takes the ground-truth boxes (``attack_boxes``).
    attacks_detector: ClassVar[bool] = True
    #: Box trait (stressors/base.py): an attack changes pixel values only, the objects stay where they are.
    moves_pixels: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = True
    iterative: ClassVar[bool] = True
    devices: ClassVar[str] = "cpu, cuda"
    #: The smallest ε counted as "very large" by the gradient-masking probe
    #: (:mod:`audit.evaluation.detection.attack_checks`): there recall should be about 0.
    zero_recall_epsilon: ClassVar[float] = 0.3
    # The classifier traits every registered attack declares (tests/stressors/test_traits.py); the
    # classifier's checks and breaking points do not apply to a detection attack.
    zero_accuracy_epsilon: ClassVar[float] = 0.3
    stronger_than_single_step: ClassVar[bool] = False
    bisectable: ClassVar[bool] = False
    minimisation: ClassVar[bool] = False
    default_epsilons: ClassVar[tuple[float, ...]] = Attack.default_epsilons
    _epsilon_upper: ClassVar[float | None] = 1.0

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        objective: str = "vanishing",
        steps: int = DEFAULT_STEPS,
        step_size: float | None = None,
        step_size_factor: float | None = None,
        random_start: bool = True,
        iou: float = DEFAULT_IOU,
        **unknown: Any,
    ):
        allowed = ["epsilons", "severities", "objective", "steps", "step_size", "step_size_factor"]
        reject_unknown(self.name, unknown, [*allowed, "random_start", "iou"])
        self.severities = resolve_epsilons(
            self.name, epsilons, severities, self.default_epsilons, upper=self._epsilon_upper
        )
        if objective not in OBJECTIVES:
            raise StressorError(f"{self.name}: option 'objective' must be one of {list(OBJECTIVES)}, got {objective!r}")
        self.objective = objective
        self.steps = positive_int(self.name, "steps", steps)
        if step_size is not None and step_size_factor is not None:
            raise StressorError(f"{self.name}: give 'step_size' or 'step_size_factor', not both")
        self.step_size = (
            None if step_size is None else positive_float(self.name, "step_size", step_size, upper=self._epsilon_upper)
        )
        factor = DEFAULT_STEP_SIZE_FACTOR if step_size_factor is None else step_size_factor
        self.step_size_factor = positive_float(self.name, "step_size_factor", factor)
        self.random_start = check_flag(self.name, "random_start", random_start)
        self.iou = positive_float(self.name, "iou", iou, upper=1.0)

    @property
    def options(self) -> dict[str, Any]:
        """The settings as the results record them."""
        return {
            "epsilons": list(self.severities),
            "objective": self.objective,
            "steps": self.steps,
            "step_size": self.step_size,
            "step_size_factor": None if self.step_size is not None else self.step_size_factor,
            "random_start": self.random_start,
            "iou": self.iou,
        }

    def step_for(self, epsilon: float) -> float:
        """The absolute step size used at ``epsilon`` (pixel units)."""
        return self.step_size if self.step_size is not None else self.step_size_factor * epsilon / self.steps

    # ------------------------------------------------------------------ classifier entry

    def perturb(self, model: Any, images: Tensor, labels: Tensor, **_: Any) -> Tensor:
        """Refuse the classifier call: this attack needs a detector and ground-truth boxes."""
        raise StressorError(
            f"{self.name}: attacks object detectors (task: detection); "
            "a classification audit takes the classifier attacks (e.g. pgd, pgd_l2)"
        )

    # ------------------------------------------------------------------ checks

    def check_target(self, target: DetectionTarget) -> None:
        """Raise :class:`StressorError` (one line) when ``target`` cannot be attacked with this objective."""
        if not getattr(target, "has_gradients", False):
            why = getattr(target, "no_gradient_reason", None) or "has_gradients=False"
            raise StressorError(
                f"{self.name}: the detector has no gradients ({why}); gradient attacks cannot run on it"
            )
        if self.objective == "mislabel" and not getattr(target, "class_scores", False):
            raise StressorError(
                f"{self.name}: objective 'mislabel' needs every class's score per candidate, but the detector "
                "returns only its detections' scores (output: boxes); use objective: vanishing or output: yolo"
            )

    def _probe(self, target: DetectionTarget, images: Tensor) -> None:
        """Refuse a detector whose scores carry no usable input gradient (probed once per target).

        One forward and backward pass on the first 8 images with a fixed linear functional of all
        candidate scores: a detached output, or a None, non-finite or all-zero gradient, is one
        :class:`StressorError` line (as the classifier attacks' probe).
        """
        probed = self.__dict__.setdefault("_probed", weakref.WeakSet())
        try:
            if target in probed:
                return
        except TypeError:  # an unhashable target is probed every call
            probed = None
        if images.shape[0] == 0:
            return
        x = images[:8].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            _, scores = self._candidates(target, x)
            if not scores.requires_grad:
                raise StressorError(
                    f"{self.name}: the detector's scores are detached from the input (no_grad, .detach(), numpy); "
                    "gradient attacks cannot run on it"
                )
            weights = torch.linspace(0.5, 1.5, scores.shape[-1], device=scores.device, dtype=scores.dtype)
            (grad,) = torch.autograd.grad((scores * weights).sum(), x, allow_unused=True)
        if grad is None or not bool(torch.isfinite(grad).all()) or not bool(grad.abs().amax() > 0):
            what = "None" if grad is None else ("not finite" if not bool(torch.isfinite(grad).all()) else "all zero")
            raise StressorError(
                f"{self.name}: the input gradient of the detector's scores is {what} on a probe batch "
                "(rounding, quantisation or argmax in its preprocessing); a gradient attack would overstate robustness"
            )
        if probed is not None:
            probed.add(target)

    # ------------------------------------------------------------------ the attack

    def attack_boxes(
        self,
        target: DetectionTarget,
        images: Tensor,
        boxes: Sequence[Tensor],
        labels: Sequence[Tensor],
        *,
        severity: float,
        sample_ids: Tensor,
        seed: int,
    ) -> DetectionAttackResult:
        """Attack a batch at ε = ``severity``.

        Args:
            target: the detector (:class:`DetectionTarget`), on ``images.device``.
            images: clean images in [0, 1] at the model's input size.
            boxes: per image, its ground-truth boxes (K_i, 4) xyxy in input pixels.
            labels: per image, their classes (K_i,) in [0, C).
            severity: the ε, one of ``severities``.
            sample_ids: (N,) int64 keys; all randomness is keyed by them.
            seed: the audit seed.

        Returns:
            A :class:`DetectionAttackResult`.

        Raises:
            StressorError: ε not configured, a malformed batch, a detector without gradients, a
                mislabel attack on a detector without class scores, a class label outside [0, C).
        """
        check_severity(severity, self.severities, self.name)
        check_images(images, self.name)
        n = images.shape[0]
        if not isinstance(sample_ids, Tensor) or sample_ids.shape != (n,) or sample_ids.dtype != torch.int64:
            raise StressorError(f"{self.name}: sample_ids must be an int64 tensor of shape ({n},)")
        _check_truth(self.name, boxes, labels, n, tuple(images.shape[2:]))
        self.check_target(target)
        self._probe(target, images)
        eps = float(severity)
        seeds = per_sample_seeds(sample_ids, seed=seed, name=self.name, severity=eps)
        x0 = images.detach()
        dev = x0.device
        gt_boxes = [b.detach().to(dev, torch.float32) for b in boxes]
        gt_labels = [lab.detach().to(dev, torch.int64) for lab in labels]
        objects = torch.tensor([int(b.shape[0]) for b in gt_boxes], dtype=torch.int64)
        with torch.enable_grad():
            cand_boxes, scores = self._candidates(target, x0)
            num_classes = scores.shape[-1]
            for i, lab in enumerate(gt_labels):
                if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
                    raise StressorError(f"{self.name}: a label of image {i} is not a class index in [0, {num_classes})")
            targets = self._targets(cand_boxes.detach(), scores.detach(), gt_boxes, gt_labels)
            loss_clean = self._loss(cand_boxes.detach(), scores.detach(), gt_boxes, gt_labels, targets)
            if eps == 0.0 or n == 0:
                return DetectionAttackResult(
                    images.clone(), loss_clean.cpu().double(), loss_clean.cpu().double(), objects
                )
            x = self._start(x0, seeds, eps) if self.random_start else x0.clone()
            best, best_loss = x.clone(), torch.full((n,), float("inf"), device=dev)
            step = self.step_for(eps)
            for k in range(self.steps + 1):
                x.requires_grad_(True)
                cand_boxes, scores = self._candidates(target, x)
                loss = self._loss(cand_boxes.detach(), scores, gt_boxes, gt_labels, targets)
                better = loss.detach() < best_loss
                best = torch.where(better.view(-1, 1, 1, 1), x.detach(), best)
                best_loss = torch.where(better, loss.detach(), best_loss)
                if k == self.steps:
                    break
                (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
                if grad is None:
                    grad = torch.zeros_like(x)
                x = self._project(x0, x.detach() - step * self._direction(grad), eps)
        return DetectionAttackResult(
            best.detach().clamp(0, 1).to(images.dtype), loss_clean.cpu().double(), best_loss.cpu().double(), objects
        )

    def noise(self, images: Tensor, *, severity: float, sample_ids: Tensor, seed: int) -> Tensor:
        """The random-noise baseline at ε: uniform in the L∞ ball (L2: a uniformly random direction
        scaled to length ε), per-sample keyed draws independent of the attack's starts, clipped to [0, 1].

        Shape:
            images: (N, C, H, W) in [0, 1]; sample_ids: (N,) int64. Returns (N, C, H, W).
        """
        check_images(images, self.name)
        seeds = per_sample_seeds(sample_ids, seed=seed, name=self.name, severity=float(severity))
        return self._noise(images.detach(), seeds, float(severity))

    def _noise(self, images: Tensor, seeds: list[int], eps: float) -> Tensor:
        return linf_starts(images, seeds, eps, stream=NOISE_STREAM)

    def _start(self, images: Tensor, seeds: list[int], eps: float) -> Tensor:
        return linf_starts(images, seeds, eps, stream=1)

    def _direction(self, grad: Tensor) -> Tensor:
        return grad.sign()

    def _project(self, x0: Tensor, x: Tensor, eps: float) -> Tensor:
        return (x0 + (x - x0).clamp(-eps, eps)).clamp(0, 1)

    def _candidates(self, target: DetectionTarget, x: Tensor) -> tuple[Tensor, Tensor]:
        out = target.candidates(x)
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
            raise StressorError(f"{self.name}: the detector's candidates must be (boxes, scores) tensors")
        cand_boxes, scores = out
        n = x.shape[0]
        if cand_boxes.dim() != 3 or cand_boxes.shape[0] != n or cand_boxes.shape[2] != 4:
            raise StressorError(f"{self.name}: candidate boxes must be (B, A, 4), got {tuple(cand_boxes.shape)}")
        if scores.dim() != 3 or scores.shape[:2] != cand_boxes.shape[:2]:
            raise StressorError(f"{self.name}: candidate scores must be (B, A, C), got {tuple(scores.shape)}")
        return cand_boxes, scores

    def _pairs(self, cand: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
        """(candidate index, object index) of every pair with IoU >= ``iou``."""
        if gt.shape[0] == 0 or cand.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=cand.device)
            return empty, empty
        a, g = (box_iou(cand.float(), gt) >= self.iou).nonzero(as_tuple=True)
        return a, g

    def _targets(self, cand_boxes: Tensor, scores: Tensor, gt_boxes, gt_labels) -> list[Tensor]:
        """Per image, the mislabel target class of each object (empty tensors for vanishing)."""
        out = []
        num_classes = scores.shape[-1]
        for i, (gt, lab) in enumerate(zip(gt_boxes, gt_labels)):
            if self.objective != "mislabel":
                out.append(lab.new_zeros(0))
                continue
            if num_classes < 2:
                raise StressorError(f"{self.name}: objective 'mislabel' needs at least 2 classes")
            a, g = self._pairs(cand_boxes[i], gt)
            summed = torch.zeros(gt.shape[0], num_classes, dtype=torch.float64, device=gt.device)
            summed.index_add_(0, g, scores[i, a].double())
            summed[torch.arange(gt.shape[0], device=gt.device), lab] = float("-inf")
            best = summed.argmax(dim=1)  # the first maximum: the lowest class index on ties
            none = (g.bincount(minlength=gt.shape[0]) == 0) if gt.shape[0] else torch.zeros(0, dtype=torch.bool)
            out.append(torch.where(none.to(gt.device), (lab + 1) % num_classes, best))
        return out

    def _loss(self, cand_boxes: Tensor, scores: Tensor, gt_boxes, gt_labels, targets) -> Tensor:
        """Per image, the objective to minimise (module docstring). Shape: -> (B,)."""
        rows = []
        for i, (gt, lab) in enumerate(zip(gt_boxes, gt_labels)):
            a, g = self._pairs(cand_boxes[i], gt)
            value = scores[i, a, lab[g]].sum()
            if self.objective == "mislabel":
                value = value - scores[i, a, targets[i][g]].sum()
            rows.append(value)
        return torch.stack(rows).float() if rows else scores.new_zeros(0)


class DetectionPGDL2(DetectionPGD):
    """PGD on a detector under an L2 bound: the options of :class:`DetectionPGD`; ε bounds the L2 norm
    of each image's whole perturbation (pixel units of [0, 1], may exceed 1); default epsilons
    (0, 0.25, 0.5, 1.0), as the classifier ``pgd_l2``. Steps follow the gradient normalised per sample."""

    name: ClassVar[str] = "detection_pgd_l2"
    norm: ClassVar[str] = "l2"
    zero_recall_epsilon: ClassVar[float] = 10.0
    zero_accuracy_epsilon: ClassVar[float] = 10.0
    default_epsilons: ClassVar[tuple[float, ...]] = (0.0, 0.25, 0.5, 1.0)
    _epsilon_upper: ClassVar[float | None] = None

    def _noise(self, images: Tensor, seeds: list[int], eps: float) -> Tensor:
        d = images[0].numel()
        rows = []
        for s in seeds:
            g = torch.randn(d, generator=generator(stream_seed(s, NOISE_STREAM)))
            rows.append(g / g.norm())
        delta = torch.stack(rows).view(images.shape).to(images.device, images.dtype) * eps
        return (images + delta).clamp(0, 1)

    def _start(self, images: Tensor, seeds: list[int], eps: float) -> Tensor:
        return l2_starts(images, seeds, eps, stream=1)

    def _direction(self, grad: Tensor) -> Tensor:
        norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return torch.where(norm > 0, grad / norm.clamp(min=1e-12), torch.zeros_like(grad))

    def _project(self, x0: Tensor, x: Tensor, eps: float) -> Tensor:
        delta = x - x0
        norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        factor = torch.where(norm > eps, eps / norm.clamp(min=1e-12), torch.ones_like(norm))
        return (x0 + delta * factor).clamp(0, 1)
