"""Hugging Face image classifiers from a local folder (``model: {format: huggingface, path: DIR}``).

The folder is what ``save_pretrained`` writes: ``config.json``, safetensors weights
(``model.safetensors`` or a sharded ``model.safetensors.index.json``) and usually
``preprocessor_config.json``. Nothing is downloaded (``local_files_only``), no code from the
folder runs (``auto_map`` is refused, ``trust_remote_code`` stays off) and pickled
``pytorch_model.bin`` weights are refused. Needs the ``cvaudit[hf]`` extra (transformers).

:func:`resolve_hf_config` fills the config's ``model`` section from the folder: the class names
from ``id2label`` and, for every preprocessing key the config leaves out, the value of the
folder's image processor (resize, center crop, resampling filter, mean, std; 8-bit resizing with
Pillow as the library's PIL processor does). :func:`load_hf_model` loads
``AutoModelForImageClassification`` in float32 and wraps it so that it returns the logits.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from audit.contract.config import ModelConfig
from audit.contract.digest import sha256_file
from audit.contract.errors import AuditError, echo
from audit.contract.files import check_path_name, read_bounded
from audit.contract.text import valid_text

__all__ = ["HFLogits", "hf_preprocessing", "load_hf_model", "resolve_hf_config"]

#: Image processors whose preprocessing is exactly resize -> center crop -> rescale -> normalize.
GENERIC_PROCESSORS = {
    "BitImageProcessor",
    "CLIPImageProcessor",
    "ConvNextImageProcessor",
    "DeiTImageProcessor",
    "MobileNetV1ImageProcessor",
    "PvtImageProcessor",
    "SiglipImageProcessor",
    "ViTImageProcessor",
}
#: ``PILImageResampling`` values -> ``model.interpolation``.
#: Largest config.json or model.safetensors.index.json of a model folder read (bytes), refused unread.
MAX_HF_JSON_BYTES = 16 << 20
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
#: The config keys an image processor can supply.
PREPROCESSING_KEYS = ("input_size", "resize", "interpolation", "resize_backend", "mean", "std")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise AuditError("model.format huggingface needs transformers: pip install 'cvaudit[hf]'") from None
    return transformers


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """Silence transformers' progress bars and load reports (cvaudit reports problems itself)."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:200] if lines else type(err).__name__


def _read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` as a dict, after the checks that need no transformers."""
    if not folder.exists():
        raise AuditError(f"{folder}: model folder not found")
    if not folder.is_dir():
        raise AuditError(f"{folder}: model.format huggingface expects the folder written by save_pretrained")
    path = folder / "config.json"
    if not path.is_file():
        raise AuditError(f"{folder}: no config.json (not a saved Hugging Face model folder)")
    try:
        raw = json.loads(read_bounded(path, limit=MAX_HF_JSON_BYTES, what="config.json", error=AuditError).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AuditError(f"{path}: not valid JSON ({_first_line(err)})") from None
    except ValueError as err:  # Python's limit on the digits of an integer
        raise AuditError(f"{path}: not valid JSON ({_first_line(err)[:120]})") from None
    except RecursionError:
        raise AuditError(f"{path}: JSON nested too deeply") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model_type"), str):
        raise AuditError(f"{path}: no 'model_type' (not a transformers model config)")
    if raw.get("auto_map"):
        raise AuditError(f"{path}: the model needs custom code from its folder (auto_map); cvaudit never runs it")
    return raw


def _check_image_classifier(transformers: Any, folder: Path, raw: dict[str, Any]) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    model_type = raw["model_type"]
    if model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        raise AuditError(
            f"{folder / 'config.json'}: model_type {model_type!r} is not an image classifier "
            "(AutoModelForImageClassification has no class for it)"
        )
    architectures = raw.get("architectures") or []
    if not isinstance(architectures, list):
        raise AuditError(
            f"{folder / 'config.json'}: architectures must be a list of class names, got {echo(architectures)}"
        )
    if architectures and not any("ForImageClassification" in str(a) for a in architectures):
        raise AuditError(
            f"{folder / 'config.json'}: architectures {architectures} has no image-classification head "
            "(its classifier would be random weights)"
        )


# _TRANSFORMERS_ERRORS: the three calls into transformers below keep a broad ``except Exception``. What
# they raise depends on what is wrong with the folder: OSError, ValueError, a huggingface_hub validation
# error, AttributeError (id2label not a mapping), safetensors' SafetensorError (a damaged weights file),
# ...; each is "this folder cannot be loaded" and becomes one AuditError line
# (tests/audit/evaluation/test_hf_model.py::test_what_transformers_cannot_read_becomes_one_line).


def _load_config(transformers: Any, folder: Path) -> Any:
    raw = _read_config(folder)
    _check_image_classifier(transformers, folder, raw)
    try:
        with _quiet(transformers):
            return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # transformers raises what the problem gives (see _TRANSFORMERS_ERRORS)
        raise AuditError(f"{folder / 'config.json'}: unreadable model config ({_first_line(err)})") from None


def _class_names(config: Any, folder: Path) -> list[str]:
    id2label = {int(k): valid_text(str(v)) for k, v in (config.id2label or {}).items()}  # a lone surrogate escaped
    if sorted(id2label) != list(range(len(id2label))) or not id2label:
        raise AuditError(f"{folder / 'config.json'}: id2label must number the classes 0..K-1 (got {sorted(id2label)})")
    names = [id2label[k] for k in range(len(id2label))]
    if len(set(names)) != len(names):
        raise AuditError(f"{folder / 'config.json'}: id2label names a class twice")
    return names


def _load_processor(transformers: Any, folder: Path) -> Any | None:
    """The folder's image processor (Pillow backend), or None when the folder has no processor config."""
    if not any((folder / name).is_file() for name in ("preprocessor_config.json", "image_processor_config.json")):
        return None
    try:
        with _quiet(transformers):
            return transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, backend="pil")
    except Exception as err:  # transformers raises what the problem gives (see _TRANSFORMERS_ERRORS)
        raise AuditError(
            f"{folder / 'preprocessor_config.json'}: unreadable image processor ({_first_line(err)})"
        ) from None


def _size_text(size: Any) -> str:
    keys = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")
    return str({k: getattr(size, k) for k in keys if getattr(size, k, None)})


def _per_channel(value: Any, channels: int) -> tuple[float, ...]:
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    return tuple(values * channels) if len(values) == 1 else tuple(values)


def hf_preprocessing(processor: Any, *, channels: int, source: str) -> dict[str, Any]:
    """The config's preprocessing keys equivalent to a transformers image processor (Pillow backend).

    Args:
        processor: A transformers image processor (one of :data:`GENERIC_PROCESSORS`).
        channels: The model's input channels (to expand a scalar mean/std).
        source: The processor config's path, for messages.

    Returns:
        ``input_size``, ``resize``, ``interpolation``, ``resize_backend`` (``pil``), ``mean``,
        ``std``. The processor's rescale factor r is folded into mean and std (cvaudit's images
        are in [0, 1], the processor's in [0, 255]): mean / (255 r), std / (255 r).

    Raises:
        AuditError: a processor or a setting (padding, no resize, a longest edge, ...) whose
            preprocessing these keys cannot express; the message names the keys to set instead.
    """
    name = type(processor).__name__.removesuffix("Pil")
    instead = "set model.input_size, model.resize, model.mean and model.std in the config instead"
    if name not in GENERIC_PROCESSORS:
        raise AuditError(f"{source}: cvaudit does not know how {name} prepares images; {instead}")
    if getattr(processor, "do_pad", False):
        raise AuditError(f"{source}: do_pad is not supported; {instead}")
    if not getattr(processor, "do_resize", False):
        raise AuditError(f"{source}: do_resize is false (images of any size); {instead}")
    size = processor.size
    crop = processor.crop_size if getattr(processor, "do_center_crop", False) else None
    if name == "ConvNextImageProcessor":
        if crop is not None:
            raise AuditError(f"{source}: ConvNeXT's crop_pct together with do_center_crop is not supported; {instead}")
        if not size.shortest_edge or not getattr(processor, "crop_pct", None):
            raise AuditError(f"{source}: ConvNeXT needs size.shortest_edge and crop_pct; {instead}")
        edge = int(size.shortest_edge)
        resize: int | tuple[int, int] = int(edge / processor.crop_pct) if edge < 384 else (edge, edge)
        input_size = (edge, edge)
    elif size.height and size.width and not size.shortest_edge:
        resize = (int(size.height), int(size.width))
        input_size = resize
    elif size.shortest_edge and not size.longest_edge and not size.height:
        resize = int(size.shortest_edge)
        if crop is None:
            raise AuditError(
                f"{source}: a shortest_edge resize without a center crop gives images of any size; {instead}"
            )
        input_size = None
    else:
        raise AuditError(f"{source}: size {_size_text(size)} is not supported; {instead}")
    if crop is not None:
        input_size = (int(crop.height), int(crop.width))
    resample = processor.resample if processor.resample is not None else 2
    if int(resample) not in RESAMPLE:
        raise AuditError(f"{source}: resample {resample} is not a Pillow filter cvaudit supports; {instead}")
    scale = 255.0 * float(processor.rescale_factor) if processor.do_rescale else 255.0
    if abs(scale - 1.0) < 1e-9:
        scale = 1.0
    mean = _per_channel(processor.image_mean, channels) if processor.do_normalize else (0.0,) * channels
    std = _per_channel(processor.image_std, channels) if processor.do_normalize else (1.0,) * channels
    return {
        "input_size": input_size,
        "resize": resize if resize != input_size else None,
        "interpolation": RESAMPLE[int(resample)],
        "resize_backend": "pil",
        "mean": tuple(m / scale for m in mean),
        "std": tuple(s / scale for s in std),
    }


def resolve_hf_config(cfg: ModelConfig) -> ModelConfig:
    """The ``model`` section of a Hugging Face folder with what the folder defines filled in.

    Class names come from ``id2label`` (a ``model.class_names`` in the config must equal them);
    each preprocessing key the config leaves out comes from the folder's image processor (see
    :func:`hf_preprocessing`); ``channels`` from the model config's ``num_channels``.

    Raises:
        AuditError: no folder or no config.json, not an image classifier, class names that differ
            from id2label, a processor cvaudit cannot express while a preprocessing key is unset.
    """
    transformers = _transformers()
    folder = Path(cfg.path)
    config = _load_config(transformers, folder)
    names = _class_names(config, folder)
    if cfg.class_names is not None and list(cfg.class_names) != names:
        raise AuditError(
            f"model.class_names {_short(cfg.class_names)} do not match id2label in {folder / 'config.json'} "
            f"{_short(names)}"
        )
    given = cfg.model_fields_set
    channels = cfg.channels if "channels" in given else int(getattr(config, "num_channels", 3) or 3)
    update: dict[str, Any] = {"class_names": names, "channels": channels}
    missing = [k for k in PREPROCESSING_KEYS if k not in given]
    needed = [k for k in ("input_size", "mean", "std") if k not in given]
    if missing:
        processor = _load_processor(transformers, folder)
        if processor is None:
            if needed:
                raise AuditError(
                    f"{folder}: no preprocessor_config.json; set model.{', model.'.join(needed)} in the config"
                )
        else:
            source = str(folder / "preprocessor_config.json")
            if needed:
                derived = hf_preprocessing(processor, channels=channels, source=source)
            else:  # only the optional keys are missing: take them if the processor is one we know
                try:
                    derived = hf_preprocessing(processor, channels=channels, source=source)
                except AuditError:
                    derived = {}
            update.update({k: v for k, v in derived.items() if k in missing})
    data = {**cfg.model_dump(), **update}
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as err:  # the merged section is inconsistent (e.g. mean vs channels)
        raise AuditError(
            f"{folder}: the model section with the folder's values is invalid ({_first_line(err)})"
        ) from None


def _short(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return f"[{shown}]"


def _weights(folder: Path) -> tuple[Path, list[Path]]:
    """The weights file that identifies the model and every safetensors file it uses."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return single, [single]
    if index.is_file():
        try:
            data = read_bounded(index, limit=MAX_HF_JSON_BYTES, what="safetensors index", error=AuditError)
            shards = sorted(set(json.loads(data.decode())["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise AuditError(f"{index}: not a safetensors index (no weight_map)") from None
        except ValueError as err:  # Python's limit on the digits of an integer
            raise AuditError(f"{index}: not valid JSON ({str(err)[:120]})") from None
        except RecursionError:
            raise AuditError(f"{index}: JSON nested too deeply") from None
        for shard in shards:  # a shard is a file beside the index: no folder, no way out of the model folder
            if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard in ("", ".", ".."):
                raise AuditError(f"{index}: shard {echo(shard)} is not a file name in the model folder")
            check_path_name(shard, what="shard", error=AuditError)
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise AuditError(f"{index}: shard {missing[0]} is missing")
        return index, [folder / s for s in shards]
    if any((folder / n).is_file() for n in ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        raise AuditError(
            f"{folder}: only pickled weights (pytorch_model.bin); cvaudit loads safetensors only "
            "(pickle files can run code): re-save with save_pretrained(..., safe_serialization=True)"
        )
    raise AuditError(f"{folder}: no model.safetensors (safetensors weights are required)")


class HFLogits(nn.Module):
    """A transformers image classifier as a plain module: normalised pixel values -> logits.

    Shape:
        pixel_values (N, C, H, W) -> logits (N, K).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).logits


def load_hf_model(cfg: ModelConfig) -> tuple[nn.Module, Path, dict[str, str]]:
    """Load the folder's ``AutoModelForImageClassification`` (float32, eval mode, on the CPU).

    Returns:
        The module returning logits, the weights file that identifies the model
        (``model.safetensors`` or its index) and ``{file name: sha256}`` of every file that
        defines the model (config, processor config, weights).

    Raises:
        AuditError: see :func:`resolve_hf_config`; no safetensors weights, or weights that do
            not hold every parameter of the classifier (a random head would be audited).
    """
    transformers = _transformers()
    folder = Path(cfg.path)
    config = _load_config(transformers, folder)
    ident, weight_files = _weights(folder)
    try:
        with _quiet(transformers):
            model, info = transformers.AutoModelForImageClassification.from_pretrained(
                str(folder),
                config=config,
                local_files_only=True,
                use_safetensors=True,
                trust_remote_code=False,
                dtype=torch.float32,
                output_loading_info=True,
            )
    except Exception as err:  # transformers raises what the problem gives (see _TRANSFORMERS_ERRORS)
        raise AuditError(f"{folder}: cannot load the model ({type(err).__name__}: {_first_line(err)})") from None
    missing = sorted(info.get("missing_keys") or []) + sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing:
        raise AuditError(
            f"{ident}: the weights lack {len(missing)} parameter(s) of {type(model).__name__} (first: {missing[0]}); "
            "they would be random"
        )
    model.eval()
    files = [folder / "config.json"] + [
        folder / n for n in ("preprocessor_config.json", "image_processor_config.json") if (folder / n).is_file()
    ]
    files += [ident] if ident not in weight_files else []
    digests = {p.relative_to(folder).as_posix(): sha256_file(p) for p in files + weight_files}
    return HFLogits(model), ident, dict(sorted(digests.items()))
