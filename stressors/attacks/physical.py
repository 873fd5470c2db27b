"""Physical threat models: one universal perturbation, or one printed patch, for a whole set of images.

Both are *fitted* attacks (trait ``needs_fit``): the perturbation is optimised over a pass of
the audit data before it is applied. To keep the number honest (not overfit to the images it
was trained on) every audit runs them with 2-fold **cross-fitting**:

1. each sample falls in fold 0 or 1 by a hash of ``(audit seed, sample key)`` (:func:`folds_of`),
   the same for both stressors and for every batch size, order or shard;
2. :meth:`FittedAttack.fit` optimises one perturbation per fold and per severity on the samples
   of that fold only;
3. :meth:`FittedAttack.perturb` gives each sample the perturbation fitted on the *other* fold.

So every audited sample is attacked by a perturbation that never saw it, the condition's ``n``
is the clean condition's ``n``, and its subgroup tables, intervals, paired comparisons and policy
rules work as for any condition.

The fit's contract:

- **deterministic**: the fit batches are formed from each fold's samples in the order
  ``batches()`` yields them (the dataset order), ``fit_batch_size`` at a time, whatever the
  run's batch size; every random draw (the patch's start, EoT placements) comes from a
  generator keyed by (seed, stressor, severity, fold, epoch, step); CPU results are bit-identical.
- **bounded memory and time**: ``batches()`` is read once per epoch, and only until both folds hold
  ``fit_samples`` samples (the first ones in dataset order; the loader is then left), so the fit
  reads about epochs x 2 x ``fit_samples`` images whatever the size of the audit set; one fit batch
  per fold is held, never the dataset. A fold without samples is refused after the first read.

Threat models, defaults and sources:

- ``universal`` (L∞, Moosavi-Dezfooli et al. 2017, optimised by stochastic signed-gradient ascent
  as in Shafahi et al. 2020 "Universal adversarial training", on the clipped margin loss
  :func:`margin_loss` so that samples already fooled stop pulling δ): δ starts at 0; each fit
  batch takes one step ``δ ← clip_ε(δ + α·sign(∇δ Σ margin(x + δ)))`` (images clipped to
  [0, 1]); default 10 epochs, α = ε/8, fit batches of 32, at most 2000 samples per fold. Severities are the ε (pixel units of [0, 1]); default (4/255, 8/255, 16/255).
- ``patch`` (Brown et al. 2017 "Adversarial Patch", untargeted): a square of side
  ``round(sqrt(share·H·W))`` pixels (its actual area share, side²/(H·W), is recorded; a share whose
  patch does not fit inside the image at the largest scale and rotation is refused); Adam (lr 0.1) maximises the cross-entropy of the
  patched images under expectation over transformation: each image of a fit batch gets
  ``eot_samples`` random placements (centre uniform where the patch lies fully inside the
  image, scale uniform in [0.8, 1.2], rotation uniform in ±22.5°); default 10 epochs,
  fit batches of 32, at most 2000 samples per fold. Severities are the shares of the image
  area; default (0.01, 0.02, 0.05, 0.1). Evaluation pastes it at scale 1 at a per-sample
  position and rotation drawn from (seed, stressor, share, sample key).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from numbers import Real
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from audit.contract.seeds import derive_seed
from stressors.attacks.common import (
    check_batch,
    positive_float,
    positive_int,
    predict,
    reject_unknown,
    require_gradients,
    resolve_epsilons,
)
from stressors.base import StressorError, check_severity, generator, per_sample_seeds, uniform

#: batches() yields (images (N, C, H, W) in [0, 1] on the model's device, labels (N,), sample keys (N,) int64).
Batches = Callable[[], Iterable[tuple[Tensor, Tensor, Tensor]]]

FOLDS = 2


def folds_of(sample_ids: Tensor, seed: int) -> Tensor:
    """The cross-fitting fold (0 or 1) of each sample: a hash of (audit seed, sample key).

    Shape: sample_ids (N,) int64 -> (N,) int64 on the CPU.
    """
    return torch.tensor([derive_seed(seed, "crossfit", int(k)) % FOLDS for k in sample_ids.tolist()], dtype=torch.int64)


def png_bytes(image: Tensor) -> bytes:
    """One (C, H, W) image in [0, 1] as PNG bytes (grey for one channel)."""
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    img = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
    scale = max(1, 128 // max(img.size))
    if scale > 1:
        img = img.resize((img.size[0] * scale, img.size[1] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def margin_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Per sample ``min(0, max_{j != y} z_j - z_y)``: grows towards 0 as the sample nears misclassification, and is
    0 (no gradient) once it is misclassified, so every step serves the samples not yet fooled (Carlini & Wagner's
    margin with κ = 0).

    Shape: logits (N, K), labels (N,) -> (N,) float32.
    """
    z = logits.float()
    true = z.gather(1, labels.view(-1, 1)).squeeze(1)
    other = z.masked_fill(F.one_hot(labels, z.shape[1]).bool(), float("-inf")).amax(dim=1)
    return (other - true).clamp(max=0.0)


class FittedAttack:
    """Base class of the cross-fitted physical attacks (see the module docstring).

    Subclasses implement :meth:`_init_state`, :meth:`_step` (one optimisation step on a fit batch)
    and :meth:`_paste` (apply a fitted state to images).

    Attributes:
        severities: ε (universal) or patch shares (patch).
        fitted: severity -> [state of fold 0, state of fold 1], after :meth:`fit`.
        fold_sizes: samples fitted on per fold, after :meth:`fit`.
        last_changed: (N,) bool on the CPU for the latest batch: the prediction differs from the clean one.
    """

    name: ClassVar[str] = ""
    model_aware: ClassVar[bool] = True
    devices: ClassVar[str] = "cpu, cuda"
    needs_gradients: ClassVar[bool] = True
    #: A fitted attack: :meth:`fit` must run over the audit data before :meth:`perturb`.
    needs_fit: ClassVar[bool] = True
    iterative: ClassVar[bool] = False
    #: unused (not iterative: no large-ε probe), declared as every attack does.
    zero_accuracy_epsilon: ClassVar[float] = 0.3
    stronger_than_single_step: ClassVar[bool] = False
    bisectable: ClassVar[bool] = False
    minimal_perturbation_method: ClassVar[str | None] = None
    minimisation: ClassVar[bool] = False
    threat_model: ClassVar[str] = ""
    _options: ClassVar[tuple[str, ...]] = ("epochs", "fit_batch_size", "fit_samples")

    severities: tuple[float, ...]
    last_changed: Tensor | None = None

    def __init__(self, *, epochs: int, fit_batch_size: int = 32, fit_samples: int = 2000) -> None:
        self.epochs = positive_int(self.name, "epochs", epochs)
        self.fit_batch_size = positive_int(self.name, "fit_batch_size", fit_batch_size)
        self.fit_samples = positive_int(self.name, "fit_samples", fit_samples)
        self.fitted: dict[float, list[Tensor]] = {}
        self.fold_sizes: list[int] = []
        self._fit_key: tuple | None = None

    # ------------------------------------------------------------------ options

    @property
    def options(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "fit_batch_size": self.fit_batch_size, "fit_samples": self.fit_samples}

    def fit_budget(self, severity: float) -> dict[str, Any]:
        """What the fit at ``severity`` spent: epochs, steps per fold, step size / learning rate, EoT samples."""
        steps = [self.epochs * math.ceil(n / self.fit_batch_size) for n in self.fold_sizes]
        return {"epochs": self.epochs, "steps": steps, "fit_batch_size": self.fit_batch_size}

    def describe_budget(self, severity: float) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def record(self, severity: float) -> dict[str, Any]:
        """What results.json records of the fit at ``severity`` (``conditions[].physical`` without the counts)."""
        return {
            "threat_model": self.threat_model,
            "budget": float(severity),
            "budget_meaning": self.describe_budget(severity),
            "fit": self.fit_budget(severity),
            "fold_sizes": list(self.fold_sizes),
        }

    # ---------------------------------------------------------------------- fit

    def fit(self, model: torch.nn.Module, batches: Batches, *, seed: int) -> None:
        """Fit one perturbation per fold and severity (see the module docstring for the contract).

        Args:
            model: maps [0, 1] images to logits, on the images' device.
            batches: called once per epoch; yields every sample to fit on, in dataset order,
                as ``(images, labels, sample keys)``.
            seed: the audit seed.

        Raises:
            StressorError: a fold without samples, a model without usable gradients, a bad batch.
        """
        model_was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                self._fit(model, batches, seed)
        finally:
            model.train(model_was_training)
        self._fit_key = (seed,)

    def _fit(self, model: torch.nn.Module, batches: Batches, seed: int) -> None:
        states: dict[float, list[Tensor | None]] = {s: [None] * FOLDS for s in self.severities}
        aux: dict[float, list[Any]] = {s: [None] * FOLDS for s in self.severities}
        sizes = [0] * FOLDS
        probed = False
        for epoch in range(self.epochs):
            buffers: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(FOLDS)]
            counts = [0] * FOLDS
            steps = [0] * FOLDS

            def flush(fold: int, *, epoch: int = epoch, buffers=buffers, steps=steps) -> None:
                x = torch.cat([b[0] for b in buffers[fold]])
                y = torch.cat([b[1] for b in buffers[fold]])
                buffers[fold].clear()
                for severity in self.severities:
                    if states[severity][fold] is None:
                        states[severity][fold], aux[severity][fold] = self._init_state(
                            x, severity, derive_seed(seed, self.name, float(severity), fold, "init")
                        )
                    g = derive_seed(seed, self.name, float(severity), fold, epoch, steps[fold])
                    states[severity][fold] = self._step(
                        model, x, y, states[severity][fold], aux[severity][fold], severity, g
                    )
                steps[fold] += 1

            for images, labels, keys in batches():
                check_batch(self.name, images, labels, keys)
                if not probed and images.shape[0]:
                    require_gradients(self.name, model, images, labels)
                    probed = True
                folds = folds_of(keys, seed).to(images.device)
                for fold in range(FOLDS):
                    take = (folds == fold).nonzero().squeeze(1)
                    room = self.fit_samples - counts[fold]
                    take = take[: max(room, 0)]
                    while take.numel():
                        held = sum(b[0].shape[0] for b in buffers[fold])
                        part = take[: self.fit_batch_size - held]
                        take = take[part.numel() :]
                        buffers[fold].append((images[part].detach(), labels[part]))
                        counts[fold] += part.numel()
                        if held + part.numel() == self.fit_batch_size:
                            flush(fold)
                if min(counts) >= self.fit_samples:
                    break  # both folds are full: the rest of the data is not read (cost: epochs x fitted images)
            if epoch == 0:  # checked on the first read, not after every epoch
                empty = [f for f in range(FOLDS) if counts[f] == 0]
                if empty:
                    raise StressorError(
                        f"{self.name}: cross-fitting needs samples in both folds; fold {empty[0]} has none "
                        f"(fold sizes {counts}); audit more samples"
                    )
            for fold in range(FOLDS):
                if buffers[fold]:
                    flush(fold)
            sizes = counts
        self.fold_sizes = sizes
        self.fitted = {s: [t.detach() for t in states[s]] for s in self.severities}  # type: ignore[union-attr]

    def _init_state(self, x: Tensor, severity: float, seed: int) -> tuple[Tensor, Any]:  # pragma: no cover
        raise NotImplementedError

    def _step(self, model, x: Tensor, y: Tensor, state: Tensor, aux: Any, severity: float, seed: int) -> Tensor:
        raise NotImplementedError  # pragma: no cover

    def _paste(self, images: Tensor, state: Tensor, severity: float, sample_ids: Tensor, seed: int) -> Tensor:
        raise NotImplementedError  # pragma: no cover

    def fit_reads(self, sample_ids: Tensor, seed: int) -> int:
        """How many of ``sample_ids`` (in the order ``batches()`` yields them) one epoch reads: up to the sample
        with which both folds hold ``fit_samples`` (all, if they never do). Loader batches and images that do not
        decode can add to it."""
        folds = folds_of(sample_ids, seed)
        ends = [(folds == f).nonzero().squeeze(1) for f in range(FOLDS)]
        if any(e.numel() < self.fit_samples for e in ends):
            return int(sample_ids.numel())
        return max(int(e[self.fit_samples - 1]) for e in ends) + 1

    # ------------------------------------------------------------------ perturb

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
        """Each sample under the perturbation fitted on the other fold.

        ``last_changed`` records, per sample, whether the prediction differs from the clean prediction
        (the fooling rate's numerator).

        Raises:
            StressorError: severity not configured, a malformed batch, or :meth:`fit` not run
                (or run with another seed).

        Shape:
            images: (N, C, H, W) in [0, 1]; labels, sample_ids: (N,). Returns (N, C, H, W).
        """
        check_severity(severity, self.severities, self.name)
        check_batch(self.name, images, labels, sample_ids)
        if self._fit_key != (seed,) or severity not in self.fitted:
            raise StressorError(
                f"{self.name}: a fitted attack must be fitted on the audit data (fit) with the same seed before perturb"
            )
        n = images.shape[0]
        if n == 0:
            self.last_changed = torch.zeros(0, dtype=torch.bool)
            return images.clone()
        other = (1 - folds_of(sample_ids, seed)).tolist()
        x = images.detach().float()
        out = torch.empty_like(x)
        for fold in range(FOLDS):
            rows = torch.tensor([i for i, f in enumerate(other) if f == fold], dtype=torch.int64, device=x.device)
            if rows.numel():
                state = self.fitted[severity][fold].to(x.device)
                out[rows] = self._paste(x[rows], state, severity, sample_ids[rows.cpu()], seed)
        out = out.clamp_(0, 1).to(images.dtype)
        with torch.no_grad():
            self.last_changed = (predict(model, images) != predict(model, out)).cpu()
        return out

    def artefacts(self, severity: float) -> list[Tensor]:
        """The fitted perturbation of each fold at ``severity`` as a viewable (C, H, W) image in [0, 1]."""
        return [self._viewable(t, severity) for t in self.fitted[severity]]

    def _viewable(self, state: Tensor, severity: float) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class UniversalPerturbation(FittedAttack):
    """Universal adversarial perturbation (L∞): one δ with ||δ||∞ ≤ ε added to every image, cross-fitted.

    Args:
        epsilons: L∞ radii in pixel units of [0, 1] (alias ``severities``); default (4/255, 8/255, 16/255).
        epochs: passes over each fold; default 10.
        step_size: absolute signed-gradient step; default None, i.e. ``step_size_factor · ε``.
        step_size_factor: default 1/8.
        fit_batch_size: samples per optimisation step; default 32.
        fit_samples: at most this many samples per fold are fitted on; default 2000.

    Raises:
        StressorError: a bad or unknown option.
    """

    name: ClassVar[str] = "universal"
    norm: ClassVar[str] = "linf"
    threat_model: ClassVar[str] = "universal_linf"
    default_epsilons: ClassVar[tuple[float, ...]] = (4 / 255, 8 / 255, 16 / 255)

    def __init__(
        self,
        *,
        epsilons: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        epochs: int = 10,
        step_size: float | None = None,
        step_size_factor: float | None = None,
        fit_batch_size: int = 32,
        fit_samples: int = 2000,
        **unknown: Any,
    ):
        allowed = ["epsilons", "severities", "step_size", "step_size_factor", *self._options]
        reject_unknown(self.name, unknown, allowed)
        self.severities = resolve_epsilons(self.name, epsilons, severities, self.default_epsilons)
        if 0.0 in self.severities:
            raise StressorError(f"{self.name}: option 'epsilons': ε = 0 fits nothing; give ε in (0, 1]")
        super().__init__(epochs=epochs, fit_batch_size=fit_batch_size, fit_samples=fit_samples)
        if step_size is not None and step_size_factor is not None:
            raise StressorError(f"{self.name}: give 'step_size' or 'step_size_factor', not both")
        self.step_size = None if step_size is None else positive_float(self.name, "step_size", step_size, upper=1.0)
        self.step_size_factor = positive_float(
            self.name, "step_size_factor", 0.125 if step_size_factor is None else step_size_factor
        )

    @property
    def options(self) -> dict[str, Any]:
        return {
            "epsilons": list(self.severities),
            **super().options,
            "step_size": self.step_size,
            "step_size_factor": None if self.step_size is not None else self.step_size_factor,
        }

    @property
    def severity_meaning(self) -> dict[float, str]:
        return {
            e: f"one L-inf perturbation <= {e:.4g} per pixel ({e * 255:.3g}/255) for every image, cross-fitted"
            for e in self.severities
        }

    def step_for(self, epsilon: float) -> float:
        """The absolute step size at ``epsilon``."""
        return self.step_size if self.step_size is not None else self.step_size_factor * epsilon

    def fit_budget(self, severity: float) -> dict[str, Any]:
        return {**super().fit_budget(severity), "step_size": self.step_for(severity), "eot_samples": 1}

    def describe_budget(self, severity: float) -> str:
        return f"L-inf epsilon {severity:.4g} ({severity * 255:.3g}/255)"

    def _init_state(self, x: Tensor, severity: float, seed: int) -> tuple[Tensor, Any]:
        return torch.zeros(x.shape[1:], dtype=torch.float32, device=x.device), None

    def _step(self, model, x, y, state, aux, severity, seed):
        delta = state.detach().clone().requires_grad_(True)
        loss = margin_loss(model((x.float() + delta).clamp(0, 1)), y).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        return (delta.detach() + self.step_for(severity) * grad.sign()).clamp_(-severity, severity)

    def _paste(self, images, state, severity, sample_ids, seed):
        if state.shape != images.shape[1:]:
            raise StressorError(
                f"{self.name}: images of shape {tuple(images.shape[1:])} but the perturbation was fitted "
                f"on {tuple(state.shape)}"
            )
        return images + state

    def _viewable(self, state: Tensor, severity: float) -> Tensor:
        """δ scaled for visibility: 0.5 + δ / (2ε) (grey is 0; full ε is black or white)."""
        return (0.5 + state / (2 * severity)).clamp(0, 1)


class AdversarialPatch(FittedAttack):
    """Adversarial patch: one square patch covering a stated share of the image, cross-fitted with EoT.

    Args:
        shares: the patch's share of the image area, each in (0, 1) (alias ``severities``);
            default (0.01, 0.02, 0.05, 0.1).
        epochs: passes over each fold; default 10.
        learning_rate: Adam's learning rate on the patch's pixel values in [0, 1]; default 0.1.
        eot_samples: random placements per image per step; default 1.
        scale_range: [min, max] scale of the patch during the fit (EoT); default [0.8, 1.2].
        max_rotation: largest rotation in degrees, fit and evaluation; default 22.5.
        fit_batch_size: samples per optimisation step; default 32.
        fit_samples: at most this many samples per fold are fitted on; default 2000.

    Raises:
        StressorError: a bad or unknown option.
    """

    name: ClassVar[str] = "patch"
    norm: ClassVar[str] = "patch"
    threat_model: ClassVar[str] = "adversarial_patch"
    default_shares: ClassVar[tuple[float, ...]] = (0.01, 0.02, 0.05, 0.1)
    #: what the severities are, in breaking points and the adversarial checks (not an L-inf epsilon).
    breaking_measure: ClassVar[str] = "area_share"
    _image_size: tuple[int, int] = (0, 0)  # (H, W) of the images fitted on, set by the fit

    def __init__(
        self,
        *,
        shares: Sequence[float] | None = None,
        severities: Sequence[float] | None = None,
        epochs: int = 10,
        learning_rate: float = 0.1,
        eot_samples: int = 1,
        scale_range: Sequence[float] = (0.8, 1.2),
        max_rotation: float = 22.5,
        fit_batch_size: int = 32,
        fit_samples: int = 2000,
        **unknown: Any,
    ):
        allowed = ["shares", "severities", "learning_rate", "eot_samples", "scale_range", "max_rotation"]
        reject_unknown(self.name, unknown, [*allowed, *self._options])
        if shares is not None and severities is not None:
            raise StressorError(f"{self.name}: give 'shares' or 'severities', not both")
        option = "severities" if severities is not None else "shares"
        values = self.default_shares if shares is None and severities is None else (shares or severities)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise StressorError(f"{self.name}: option {option!r} must be a non-empty list of numbers, got {values!r}")
        out = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)) or not 0 < v < 1:
                raise StressorError(
                    f"{self.name}: option {option!r}: patch share {v!r} must be a number in (0, 1) (share of the image area)"
                )
            out.append(float(v))
        if len(set(out)) != len(out):
            raise StressorError(f"{self.name}: option {option!r} lists a share twice: {out}")
        self.severities = tuple(out)
        super().__init__(epochs=epochs, fit_batch_size=fit_batch_size, fit_samples=fit_samples)
        self.learning_rate = positive_float(self.name, "learning_rate", learning_rate)
        self.eot_samples = positive_int(self.name, "eot_samples", eot_samples)
        ok = (
            isinstance(scale_range, Sequence)
            and not isinstance(scale_range, (str, bytes))
            and len(scale_range) == 2
            and all(not isinstance(v, bool) and isinstance(v, Real) and math.isfinite(float(v)) for v in scale_range)
            and 0 < scale_range[0] <= scale_range[1]
        )
        if not ok:
            raise StressorError(
                f"{self.name}: option 'scale_range' must be [min, max] with 0 < min <= max, got {scale_range!r}"
            )
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        rot = max_rotation
        if isinstance(rot, bool) or not isinstance(rot, Real) or not math.isfinite(float(rot)) or not 0 <= rot <= 180:
            raise StressorError(
                f"{self.name}: option 'max_rotation' must be a number of degrees in [0, 180], got {rot!r}"
            )
        self.max_rotation = float(rot)

    @property
    def options(self) -> dict[str, Any]:
        return {
            "shares": list(self.severities),
            **super().options,
            "learning_rate": self.learning_rate,
            "eot_samples": self.eot_samples,
            "scale_range": list(self.scale_range),
            "max_rotation": self.max_rotation,
        }

    @property
    def severity_meaning(self) -> dict[float, str]:
        return {s: f"a square patch covering {s:.4g} of the image area, cross-fitted with EoT" for s in self.severities}

    def fit_budget(self, severity: float) -> dict[str, Any]:
        return {
            **super().fit_budget(severity),
            "learning_rate": self.learning_rate,
            "eot_samples": self.eot_samples,
            "scale_range": list(self.scale_range),
            "max_rotation": self.max_rotation,
        }

    def area_share(self, severity: float) -> float:
        """The fitted patch's actual share of the image area, side² / (H·W) (the side is a whole number of
        pixels, so it differs from the stated share), after :meth:`fit`."""
        h, w = self._image_size
        return self.fitted[severity][0].shape[-1] ** 2 / (h * w)

    def describe_budget(self, severity: float) -> str:
        side, (h, w) = int(self.fitted[severity][0].shape[-1]), self._image_size
        return (
            f"patch of {side} x {side} px, {self.area_share(severity):.4g} of the {h} x {w} image area "
            f"(stated share {severity:.4g})"
        )

    def record(self, severity: float) -> dict[str, Any]:
        return {
            **super().record(severity),
            "patch_side": int(self.fitted[severity][0].shape[-1]),
            "area_share": self.area_share(severity),
        }

    @staticmethod
    def side(share: float, height: int, width: int) -> int:
        """The patch's side in pixels at ``share`` of an H x W image (at least 1)."""
        return max(1, round(math.sqrt(share * height * width)))

    def footprint(self) -> float:
        """The width of the square's bounding box per pixel of side at the largest scale and rotation:
        ``max scale x max(|cos a| + |sin a|)`` over the rotations ``|a| <= max_rotation``."""
        turn = math.radians(min(self.max_rotation, 45.0))
        return self.scale_range[1] * (math.cos(turn) + math.sin(turn))

    def check_image_size(self, height: int, width: int) -> None:
        """Refuse a share whose patch, at the largest scale and any rotation, does not fit inside an H x W image
        (it would be pushed inside and cropped, so it would not cover its share).

        Raises:
            StressorError: one line naming the share, the side, the image size and the largest side that fits.
        """
        room = min(height, width) / self.footprint()
        for share in self.severities:
            side = self.side(share, height, width)
            if side > room + 1e-9:
                largest = math.floor(room + 1e-9)
                hint = (
                    f"the largest side that fits is {largest} px ({largest**2 / (height * width):.3g} of the area)"
                    if largest >= 1
                    else "no patch fits"
                )
                raise StressorError(
                    f"{self.name}: share {share:g} gives a {side} px patch, which at scale {self.scale_range[1]:g} "
                    f"and rotation up to {self.max_rotation:g} degrees does not fit in the {height} x {width} "
                    f"image; {hint}"
                )

    def _init_state(self, x: Tensor, severity: float, seed: int) -> tuple[Tensor, Any]:
        self.check_image_size(x.shape[2], x.shape[3])
        self._image_size = (int(x.shape[2]), int(x.shape[3]))
        s = self.side(severity, x.shape[2], x.shape[3])
        patch = torch.rand((x.shape[1], s, s), generator=generator(seed)).to(x.device)
        param = patch.clone().requires_grad_(True)
        return param, torch.optim.Adam([param], lr=self.learning_rate)

    def _draw(self, rand: Tensor, side: int, height: int, width: int, scales: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Angles (radians), centres x, centres y from uniform draws (N, 3) so that the patch lies inside."""
        rand = rand.double()
        angle = (rand[:, 0] * 2 - 1) * math.radians(self.max_rotation)
        half = side / 2 * scales * (angle.cos().abs() + angle.sin().abs())
        lo_x, hi_x = half, width - half
        lo_y, hi_y = half, height - half
        cx = torch.where(hi_x > lo_x, lo_x + rand[:, 1] * (hi_x - lo_x), torch.full_like(half, width / 2))
        cy = torch.where(hi_y > lo_y, lo_y + rand[:, 2] * (hi_y - lo_y), torch.full_like(half, height / 2))
        return angle, cx, cy

    @staticmethod
    def place(patch: Tensor, angle: Tensor, cx: Tensor, cy: Tensor, scale: Tensor, height: int, width: int):
        """The patch and its mask rendered into N images of H x W (bilinear; differentiable in ``patch``).

        The patch image is already weighted by the mask (the patch and a channel of ones are sampled with the
        same bilinear weights), so the patched image is ``x * (1 - mask) + patch_image``.

        Shape:
            patch (C, s, s); angle, cx, cy, scale (N,) -> (N, C, H, W) patch image and (N, 1, H, W) mask.
        """
        n, s = angle.shape[0], patch.shape[-1]
        k = scale * s / 2
        cos, sin = angle.cos(), angle.sin()
        ox, oy = width / 2 - cx, height / 2 - cy
        theta = torch.stack(
            [
                torch.stack([cos * width / 2 / k, sin * height / 2 / k, (cos * ox + sin * oy) / k], dim=1),
                torch.stack([-sin * width / 2 / k, cos * height / 2 / k, (-sin * ox + cos * oy) / k], dim=1),
            ],
            dim=1,
        ).to(patch.device, torch.float32)
        grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
        src = torch.cat([patch, torch.ones_like(patch[:1])], dim=0).unsqueeze(0).expand(n, -1, -1, -1)
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out[:, :-1], out[:, -1:]

    def _step(self, model, x, y, state, aux, severity, seed):
        n, _, h, w = x.shape
        m = n * self.eot_samples
        rand = torch.rand((m, 4), generator=generator(seed), dtype=torch.float64)
        lo, hi = self.scale_range
        scales = lo + rand[:, 3] * (hi - lo)
        angle, cx, cy = self._draw(rand[:, :3], state.shape[-1], h, w, scales)
        xs = x.float().repeat(self.eot_samples, 1, 1, 1)
        ys = y.repeat(self.eot_samples)
        optimiser = aux
        img, mask = self.place(state, angle, cx, cy, scales, h, w)
        logits = model(xs * (1 - mask) + img)  # img is already patch x mask
        loss = -F.cross_entropy(logits.float(), ys)  # Adam minimises: ascend the cross-entropy
        (state.grad,) = torch.autograd.grad(loss, state)  # the model's own .grad is never touched
        optimiser.step()
        with torch.no_grad():
            state.clamp_(0, 1)
        return state

    def _fit(self, model, batches, seed):
        super()._fit(model, batches, seed)
        self.fitted = {s: [t.detach().clone().requires_grad_(False) for t in v] for s, v in self.fitted.items()}

    def _paste(self, images, state, severity, sample_ids, seed):
        n, _, h, w = images.shape
        if state.shape[0] != images.shape[1]:
            raise StressorError(f"{self.name}: images have {images.shape[1]} channels, the patch {state.shape[0]}")
        seeds = per_sample_seeds(sample_ids, seed=seed, name=self.name, severity=severity)
        rand = uniform(seeds, 3)
        ones = torch.ones(n, dtype=torch.float64)
        angle, cx, cy = self._draw(rand, state.shape[-1], h, w, ones)
        with torch.no_grad():
            img, mask = self.place(state, angle, cx, cy, ones, h, w)
        return images * (1 - mask) + img  # img is already patch x mask (edge pixels mixed once)

    def _viewable(self, state: Tensor, severity: float) -> Tensor:
        return state.clamp(0, 1)


__all__ = ["AdversarialPatch", "Batches", "FittedAttack", "UniversalPerturbation", "folds_of", "png_bytes"]
