"""Loading the model under audit and wrapping it with its preprocessing.

Supported artifacts (teams audit what they deploy):

- TorchScript files (``torch.jit.save``), any suffix;
- ``torch.export`` programs (``.pt2``);
- a factory ``package.module:function`` returning an ``nn.Module``, with an
  optional ``state_dict`` file (``weights``);
- ONNX files (``.onnx``) through onnxruntime (the ``cvaudit[onnx]`` extra).
  ONNX models have no gradients: gradient attacks refuse them and name the
  gradient-free alternative;
- a Hugging Face folder (``format: huggingface``, the ``cvaudit[hf]`` extra):
  see :mod:`audit.evaluation.hf_model`; :func:`resolve_model_config` fills the
  class names and preprocessing from the folder before anything else reads them.

Models are code. :func:`load_model` names in the model identity (``code_executed``, written to
results.json and the reports, and told on stderr by the CLI) the code a run executed: a factory's
``module:function`` with the module's file and its SHA-256 (Python code, imported and called);
a TorchScript or ``torch.export`` archive with its SHA-256 (the program that computes the outputs
is in the file). ONNX files are not named: onnxruntime runs the graph's standard operators, and
cvaudit registers no custom-operator library, so a graph that needs one fails to load. A
Hugging Face folder loads safetensors only with ``trust_remote_code`` off (no code from the folder).

A pickled model (``torch.save`` of a whole module, or any pickle) is never unpickled: unpickling
runs whatever the file holds. :func:`load_model` refuses it with one line naming the file and
what to save instead (a ``state_dict`` with a factory, TorchScript or ``.pt2``).

:class:`AuditModel` maps images in [0, 1] (N, C, H, W) to logits: the mean/std
normalisation happens inside it, after the stressors, so an attack's epsilon is
in pixel units. A model that outputs probabilities is checked (finite,
non-negative, rows sum to 1) and its log-probabilities serve as logits
(softmax of them gives back the probabilities).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pickle
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audit.contract.config import ModelConfig
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError
from audit.contract.files import require_regular

PROB_TOLERANCE = 1e-3

#: The formats whose file or module is code a run executes (recorded as ``code_executed``).
CODE_FORMATS = ("factory", "torchscript", "torch.export")

#: What to give instead of a pickled model (the end of the one-line refusal).
SAVE_INSTEAD = (
    "save a state_dict (torch.save(model.state_dict(), path)) and give model.factory 'module:function' "
    "with model.weights, or save TorchScript (torch.jit.save) or a torch.export program (.pt2)"
)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; a CUDA ordinal must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AuditError(f"device: {name!r} requested but CUDA is not available on this machine")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise AuditError(f"device: {name!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return device


class OnnxModule(nn.Module):
    """An onnxruntime session as a (gradient-free) module; pads a fixed batch dimension."""

    has_gradients = False

    def __init__(self, path: Path):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise AuditError(f"{path}: ONNX models need onnxruntime: pip install 'cvaudit[onnx]'") from None
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except _onnxruntime_errors(ort) as err:
            raise AuditError(f"{path}: unreadable ONNX model ({type(err).__name__})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        dim0 = inp.shape[0]
        self.fixed_batch = dim0 if isinstance(dim0, int) and dim0 > 0 else None

    def run_arrays(self, x: Tensor, names: list[str] | None = None) -> list[np.ndarray]:
        """The session's outputs ``names`` (default: all, in the graph's order) for the batch ``x``.

        A fixed batch dimension is filled with zero images and the padded rows are dropped, so
        each output has ``x.shape[0]`` rows (the outputs must be batch-first). Dtypes are the graph's.
        """
        arr = x.detach().cpu().numpy().astype(np.float32)
        n = arr.shape[0]
        if self.fixed_batch is None:
            return list(self.session.run(names, {self.input_name: arr}))
        b = self.fixed_batch
        parts = []
        for start in range(0, n, b):
            chunk = arr[start : start + b]
            pad = b - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
            parts.append([out[: b - pad] for out in self.session.run(names, {self.input_name: chunk})])
        return [np.concatenate(outs) for outs in zip(*parts)]

    def forward(self, x: Tensor) -> Tensor:
        """The first output as float32 on ``x``'s device (a classifier's logits or probabilities)."""
        out = self.run_arrays(x, [self.output_name])[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)


def _onnxruntime_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """What ``onnxruntime.InferenceSession`` raises for a file it cannot load.

    onnxruntime has one exception class per status code (``InvalidProtobuf``,
    ``NoSuchFile``, ``InvalidGraph``, ...), sharing no base but ``Exception``;
    its Python wrapper adds ``ValueError``/``TypeError`` and the file system ``OSError``.
    """
    state = ort.capi.onnxruntime_pybind11_state
    own = tuple(c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception))
    return (*own, OSError, RuntimeError, ValueError, TypeError)


# Damaged model files: torch.load and torch.export.load keep a broad ``except Exception``. Reading
# a damaged or foreign file, torch's unpickler and archive readers raise whatever their parser
# hits. Mutating saved files at random (torch 2.13) gave RuntimeError, UnicodeDecodeError, EOFError,
# IndexError, struct.error, UnpicklingError, KeyError, TypeError, NotImplementedError,
# zipfile.BadZipFile and JSONDecodeError; each means "unreadable", and a narrower list would turn
# the next one into a traceback.


def _shown_path(path: Path, base_dir: Path | None) -> str:
    """``path`` relative to the config's folder, else to the working directory, else absolute."""
    real = path.resolve()
    for root in (base_dir, Path.cwd()):
        if root is None:
            continue
        with contextlib.suppress(ValueError):
            return str(real.relative_to(Path(root).resolve()))
    return str(real)


def _module_record(module: Any, name: str, base_dir: Path | None) -> dict[str, Any]:
    """``code_executed`` of a factory: its ``module:function``, the module's file and that file's SHA-256.

    The digest is taken right after the import, of the file Python imported (``__file__``; a
    package's ``__init__.py``); what that module imports in turn is not digested. A module
    without a file (a namespace package) has ``path`` and ``sha256`` null.
    """
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        return {"kind": "factory", "name": name, "path": None, "sha256": None}
    return {"kind": "factory", "name": name, "path": _shown_path(Path(file), base_dir), "sha256": sha256_file(file)}


def code_record(fmt: str, path: Path, sha256: str | None) -> dict[str, Any] | None:
    """``code_executed`` of a model file: the TorchScript or ``torch.export`` program it holds; None otherwise."""
    if fmt not in ("torchscript", "torch.export"):
        return None
    return {"kind": fmt, "name": path.name, "path": str(path), "sha256": sha256}


def _load_factory(cfg: ModelConfig, base_dir: Path | None) -> tuple[nn.Module, dict[str, Any]]:
    """Import ``package.module:function`` (the config's folder and the working directory are
    searched first, so a module beside the config is found) and call it.

    Returns:
        The module it built and its ``code_executed`` record (:func:`_module_record`).
    """
    module_name, _, func_name = cfg.factory.partition(":")
    search = [str(p) for p in (base_dir, Path.cwd()) if p is not None]
    saved = list(sys.path)
    sys.path[:0] = [p for p in search if p not in sys.path]
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, func_name)
    except (ImportError, AttributeError) as err:
        raise AuditError(f"model.factory: cannot import {cfg.factory!r} ({err})") from None
    finally:
        sys.path[:] = saved
    record = _module_record(module, cfg.factory, base_dir)
    try:
        net = factory()
    except Exception as err:  # the user's code: any exception it raises becomes the one-line message
        raise AuditError(
            f"model.factory: {cfg.factory!r} raised {type(err).__name__}: {str(err).strip()[:200]}"
        ) from None
    if not isinstance(net, nn.Module):
        raise AuditError(f"model.factory: {cfg.factory!r} returned {type(net).__name__}, not a torch.nn.Module")
    if cfg.weights is not None:
        try:
            state = torch.load(cfg.weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise AuditError(f"{cfg.weights}: weights file not found") from None
        except pickle.UnpicklingError:  # weights-only loading met a class it does not allow
            raise AuditError(
                f"{cfg.weights}: holds pickled objects that weights-only loading refuses (a whole module saved "
                "with torch.save?); model.weights must be a state_dict: torch.save(model.state_dict(), path)"
            ) from None
        except Exception as err:  # a damaged file: the unpickler raises whatever it hits (see 'Damaged model files')
            raise AuditError(f"{cfg.weights}: unreadable state_dict ({type(err).__name__})") from None
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError) as err:
            detail = " ".join(line.strip() for line in str(err).strip().splitlines()[1:])[:200]
            raise AuditError(f"{cfg.weights}: does not match the factory's model ({detail})") from None
    return net, record


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """Silence torch.export's own logging while a file is tried: on a file that is not a ``.pt2`` it logs
    a 20-line traceback as a warning before raising; the raise becomes cvaudit's one line."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _pickled(path: Path) -> bool:
    """Whether ``path`` is a pickle rather than a program archive: ``torch.save`` (zip with ``data.pkl`` and
    no TorchScript ``code/``), a legacy ``torch.save`` or a plain ``pickle.dump`` (protocol 2+)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head[:1] == b"\x80":
            return True
        if head != b"PK\x03\x04":
            return False
        with zipfile.ZipFile(path) as archive:
            inner = {name.split("/", 1)[1] for name in archive.namelist() if "/" in name}
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return "data.pkl" in inner and "constants.pkl" not in inner and not any(n.startswith("code/") for n in inner)


def _refuse_pickle(path: Path) -> None:
    """Raise the one-line refusal of a pickled model file (see the module docstring)."""
    try:  # weights-only loading runs no code; it tells a state_dict from a pickled object
        with warnings.catch_warnings():  # its notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a pickled object weights-only loading refuses, or damage (see 'Damaged model files')
        state = None
    if isinstance(state, dict) and any(isinstance(v, Tensor) for v in state.values()):
        raise AuditError(
            f"{path}: holds a state_dict (weights without the network); give model.factory 'module:function' "
            "that builds the network and this file as model.weights, or save TorchScript (torch.jit.save) or a "
            "torch.export program (.pt2)"
        )
    raise AuditError(
        f"{path}: is a pickled model (torch.save of a whole module, or a pickle); cvaudit does not unpickle "
        f"it (unpickling runs any code the file holds, and weights-only loading refuses it): {SAVE_INSTEAD}"
    )


def _load_file(path: Path) -> tuple[nn.Module, str]:
    if not path.exists():
        raise AuditError(f"{path}: model file not found")
    if path.is_dir():
        hint = (
            "; for a Hugging Face model folder set model.format: huggingface"
            if (path / "config.json").is_file()
            else ""
        )
        raise AuditError(f"{path}: is a folder, not a model file{hint}")
    require_regular(path, what="model file", error=AuditError)  # a FIFO or a device would hang the loaders
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxModule(path), "onnx"
    if _pickled(path):
        _refuse_pickle(path)
    if suffix == ".pt2":
        try:
            with _quiet_torch_export():
                return torch.export.load(str(path)).module(), "torch.export"
        except Exception as err:  # a damaged archive: the reader raises whatever it hits (see 'Damaged model files')
            raise AuditError(f"{path}: unreadable torch.export program ({type(err).__name__})") from None
    try:
        return torch.jit.load(str(path), map_location="cpu"), "torchscript"
    except Exception:  # not TorchScript, or a damaged archive: its reader raises whatever it hits
        pass  # (RuntimeError from the archive reader, UnicodeDecodeError from a damaged entry name, ...)
    try:
        with _quiet_torch_export():
            return torch.export.load(str(path)).module(), "torch.export"
    except Exception:  # neither format: the torch.export reader raises whatever it hits (see 'Damaged model files')
        raise AuditError(f"{path}: unreadable model file (neither TorchScript nor torch.export)") from None


class AuditModel(nn.Module):
    """The model under audit with its preprocessing: [0, 1] images -> logits.

    Attributes:
        has_gradients: False for models that cannot be differentiated (ONNX).
        outputs: ``logits`` or ``probabilities`` (what the wrapped network emits).
    """

    def __init__(self, net: nn.Module, cfg: ModelConfig):
        super().__init__()
        self.net = net
        self.outputs = cfg.outputs
        self.has_gradients = getattr(net, "has_gradients", True)
        c = len(cfg.mean)
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, c, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        """Shape: images (N, C, H, W) in [0, 1] -> logits (N, K)."""
        out = self.net((images - self.mean) / self.std)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim != 2:
            raise AuditError(f"model output has shape {tuple(out.shape)}; expected (batch, classes)")
        if self.outputs == "probabilities":
            check_probabilities(out.detach())
            return torch.log(out.clamp_min(1e-12))
        return out


def check_probabilities(p: Tensor) -> None:
    """Raise unless ``p`` holds finite, non-negative rows that sum to 1 (within 1e-3)."""
    bad = ~torch.isfinite(p).all(dim=1)
    if bad.any():
        raise AuditError(f"model output: {int(bad.sum())} rows contain NaN or inf")
    if (p < 0).any():
        raise AuditError("model output: negative probabilities, but model.outputs is 'probabilities'")
    err = (p.sum(dim=1) - 1).abs()
    if (err > PROB_TOLERANCE).any():
        raise AuditError(
            f"model output: {int((err > PROB_TOLERANCE).sum())} rows do not sum to 1 "
            f"(max error {float(err.max()):.3g}), but model.outputs is 'probabilities'"
        )


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """The ``model`` section with what the model's own files define filled in.

    A Hugging Face folder supplies its class names and, for every preprocessing key the
    config leaves out, its image processor's values
    (:func:`audit.evaluation.hf_model.resolve_hf_config`); other formats are returned as they are.

    Raises:
        AuditError: see :func:`~audit.evaluation.hf_model.resolve_hf_config`.
    """
    if cfg.format != "huggingface":
        return cfg
    from audit.evaluation.hf_model import resolve_hf_config

    return resolve_hf_config(cfg)


def load_model(cfg: ModelConfig, device: torch.device, *, base_dir: Path | None = None) -> tuple[AuditModel, dict]:
    """Load the configured model onto ``device``, in eval mode.

    Returns:
        The wrapped model and its identity ``{path, sha256, format, factory, code_executed}`` for
        results.json (plus ``files``, name -> sha256, for a Hugging Face folder); ``code_executed``
        names the code the run executed, or is None (see the module docstring).

    Raises:
        AuditError: missing or unreadable file, a pickled model, bad factory or weights.
    """
    files, code = None, None
    if cfg.format == "huggingface":
        from audit.evaluation.hf_model import load_hf_model

        net, ident_path, files = load_hf_model(cfg)
        fmt = "huggingface"
    elif cfg.factory is not None:
        (net, code), fmt = _load_factory(cfg, base_dir), "factory"
        ident_path = cfg.weights
    else:
        net, fmt = _load_file(cfg.path)
        ident_path = cfg.path
    model = AuditModel(net, cfg)
    if fmt != "onnx":
        model = model.to(device)
    else:
        model.mean, model.std = model.mean.to(device), model.std.to(device)
    if fmt != "torch.export":
        model.eval()
    digest = sha256_file(ident_path) if ident_path is not None else None
    info = {
        "path": str(ident_path) if ident_path is not None else cfg.factory,
        "sha256": digest,
        "format": fmt,
        "factory": cfg.factory,
        "code_executed": code if code is not None else code_record(fmt, cfg.path, digest) if cfg.path else None,
    }
    if files is not None:
        info["files"] = files
    return model, info
