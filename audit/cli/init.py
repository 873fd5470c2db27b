"""``cvaudit init``: a small working config and a starter policy for one's own model and data.

Given an ImageFolder (one folder per class) or a CSV/JSONL manifest, and a model, it writes
``config.yaml`` (only the keys the audit needs, each commented) and ``policy.yaml`` (a starter
policy that needs no subgroup attributes), prints the class of every model output and the next
command. Before writing, the config is validated and the model is run once on a blank image:
its number of outputs must equal the number of classes found. Existing files are kept unless
``--force``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from audit.cli.boundary import boundary
from audit.contract.errors import AuditError, echo

__all__ = ["STARTER_POLICY", "init_command"]

#: Image suffixes counted in class folders (those the decoder reads; see audit.evaluation.data).
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}

STARTER_POLICY = """\
# Starter policy written by `cvaudit init`: set the thresholds your model must meet.
# docs/policies.md lists every rule kind; `cvaudit policy show ci-gate`
# shows a fuller gate (it also compares subgroups, which needs data.attributes).
version: 1
name: starter
rules:
  - id: clean-accuracy
    description: Accuracy on unmodified images.
    condition: clean
    metric: accuracy
    min: 0.80
    blocking: true             # a failed blocking rule: exit code 1
  - id: mild-stress-accuracy
    description: Accuracy under every stressor at severity 1.
    condition: "*@1"
    metric: accuracy
    min: 0.60
    blocking: false            # warns only
    required: false            # the config may run no stressor
"""


@dataclass(frozen=True)
class _Classes:
    """What the data say about the classes: their names in output order (None: integer labels)."""

    names: list[str] | None
    count: int
    per_class: list[int]
    sorted_guess: bool  # names sorted by init (a manifest of class names): the order is a guess
    extra_columns: list[str]


def _image_folder_classes(root: Path) -> _Classes:
    if not root.is_dir():
        raise AuditError(f"{root}: image folder not found")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir())  # the order audit.evaluation.data uses
    counts = [
        sum(1 for f in (root / c).rglob("*") if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES) for c in folders
    ]
    if not folders or not sum(counts):
        raise AuditError(f"{root}: no class folders with images (expected {root}/<class name>/<image>)")
    return _Classes(folders, len(folders), counts, sorted_guess=False, extra_columns=[])


def _manifest_classes(path: Path, path_column: str, label_column: str) -> _Classes:
    from audit.contract.manifest import read_manifest_chunks

    counts: dict[str, int] = {}
    columns: list[str] | None = None
    for chunk in read_manifest_chunks(path):
        if columns is None:
            columns = chunk.keys_of(0)
            for name, option in ((path_column, "--path-column"), (label_column, "--label-column")):
                if name not in columns:
                    raise AuditError(
                        f"{path}: column {name!r} is missing (columns: {', '.join(map(repr, columns))}); "
                        f"name the column with {option}"
                    )
        for raw in chunk.column(label_column):
            text = str(raw).strip()
            counts[text] = counts.get(text, 0) + 1
    if columns is None:
        raise AuditError(f"{path}: the manifest has no rows")
    extra = [c for c in columns if c not in (path_column, label_column, "sample_id")]
    labels = list(counts)
    if all(_integer(t) is not None for t in labels):
        values = [_integer(t) for t in labels]
        if min(values) < 0:  # type: ignore[type-var]
            raise AuditError(f"{path}: label {min(values)} is negative (integer labels are class indices 0, 1, ...)")
        k = max(values) + 1  # type: ignore[operator]
        if k > MAX_CLASSES:
            raise AuditError(
                f"{path}: label {k - 1} in {label_column!r} is not a class index (at most {MAX_CLASSES - 1}); "
                f"if the column holds ids, name the label column with --label-column"
            )
        per = [0] * k
        for t, n in counts.items():
            per[int(t)] += n
        return _Classes(None, k, per, sorted_guess=False, extra_columns=extra)
    if "" in counts:
        raise AuditError(f"{path}: {counts['']} row(s) have an empty {label_column!r}")
    names = sorted(labels)
    return _Classes(names, len(names), [counts[n] for n in names], sorted_guess=True, extra_columns=extra)


#: Integer labels are class indices 0 .. K-1; above this many classes (ImageNet-21k has 21,841) a label is
#: taken for an id in the wrong column rather than a class.
MAX_CLASSES = 100_000


def _integer(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _yaml(value: str) -> str:
    """A string as a YAML scalar (JSON strings are YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _relative(path: Path, folder: Path) -> str:
    """``path`` as written in a config stored in ``folder``: relative (POSIX separators) when possible."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive
        return str(path.resolve())


def config_text(
    *,
    folder: Path,
    model: Path,
    images: Path | None,
    manifest: Path | None,
    classes: _Classes,
    input_size: tuple[int, int],
    path_column: str,
    label_column: str,
    policy_file: str,
) -> str:
    """The commented config.yaml for the given data and model (paths relative to ``folder``)."""
    huggingface = model.is_dir() and (model / "config.json").is_file()
    lines = [
        "# Written by `cvaudit init`: only the keys this audit needs. Paths are relative to this file.",
        "# docs/running.md lists every key with its default.",
        "model:",
        f"  path: {_yaml(_relative(model, folder))}",
    ]
    if huggingface:
        lines.append("  format: huggingface        # preprocessing and class names come from the folder")
    else:
        h, w = input_size
        lines += [
            f"  input_size: [{h}, {w}]       # (height, width) the model sees; every image is resized to it",
            "  # mean: [0.485, 0.456, 0.406]  # the normalisation your model was trained with (these are",
            "  # std: [0.229, 0.224, 0.225]   # the defaults; use [0, 0, 0] and [1, 1, 1] for none)",
        ]
    if classes.names is not None and not huggingface:
        why = (
            "sorted label names: put them in the order of the model's outputs"
            if classes.sorted_guess
            else "the folder names, sorted; reorder if the model was trained with another order"
        )
        lines.append(f"  class_names: [{', '.join(_yaml(n) for n in classes.names)}]  # output k is class k: {why}")
    lines.append("data:")
    if images is not None:
        lines.append(f"  images: {_yaml(_relative(images, folder))}   # one folder of images per class")
    else:
        assert manifest is not None
        lines.append(f"  manifest: {_yaml(_relative(manifest, folder))}")
        if path_column != "path":
            lines.append(
                f"  path_column: {_yaml(path_column)}   # the column of image paths (relative to the manifest)"
            )
        if label_column != "label":
            lines.append(f"  label_column: {_yaml(label_column)}   # the column of labels")
        if classes.extra_columns:
            shown = ", ".join(_yaml(c) for c in classes.extra_columns)
            lines.append(f"  # attributes: [{shown}]   # columns whose groups to compare (subgroup rules)")
    lines += [
        "stressors:                   # images altered at growing severity; `cvaudit stressors list` shows all",
        "  - {name: night, severities: [1, 3]}",
        "  - {name: blur, kind: gaussian, severities: [1, 3]}",
        f"policy: {_yaml(policy_file)}          # or a built-in policy: `cvaudit policy list`",
        "report:",
        "  formats: [html]            # add pdf for a PDF report (slower)",
    ]
    return "\n".join(lines) + "\n"


def _model_width(config: Path) -> tuple[int, str]:
    """The number of outputs of the configured model on one blank image, and the input it was given."""
    import torch

    from audit.contract.config import load_config
    from audit.evaluation import load_model, resolve_device, resolve_model_config

    cfg = load_config(config)
    model_cfg = resolve_model_config(cfg.model)
    model, _ = load_model(model_cfg, resolve_device("cpu"), base_dir=config.parent.resolve())
    (h, w), c = model_cfg.input_size, model_cfg.channels
    try:
        with torch.no_grad():
            out = model(torch.full((1, c, h, w), 0.5))
    except AuditError:
        raise
    except Exception as err:  # the user's model rejected an input of this shape
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise AuditError(
            f"{model_cfg.path}: the model failed on a (1, {c}, {h}, {w}) input: {first}; "
            "give the size it expects with --input-size H W"
        ) from None
    return int(out.shape[1]), f"{h}x{w}"


@click.command("init")
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    default=None,
    help="An ImageFolder: one sub-folder of images per class.",
)
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="A CSV/TSV/JSONL manifest.")
@click.option("--model", "model", type=click.Path(path_type=Path), required=True, help="The model file or folder.")
@click.option(
    "--out",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Folder to write config.yaml and policy.yaml into.",
)
@click.option("--input-size", nargs=2, type=click.IntRange(min=1), default=(224, 224), show_default=True)
@click.option("--path-column", default="path", show_default=True, help="Manifest column of image paths.")
@click.option("--label-column", default="label", show_default=True, help="Manifest column of labels.")
@click.option("--force", is_flag=True, help="Overwrite config.yaml and policy.yaml if they exist.")
@boundary
def init_command(
    images: Path | None,
    manifest: Path | None,
    model: Path,
    folder: Path,
    input_size: Sequence[int],
    path_column: str,
    label_column: str,
    force: bool,
) -> None:
    """Write a small working config.yaml and policy.yaml for your model and data."""
    if (images is None) == (manifest is None):
        raise AuditError("cvaudit init: give exactly one of --images (an ImageFolder) or --manifest")
    if not model.exists():
        raise AuditError(f"{model}: model not found")
    config, policy = folder / "config.yaml", folder / "policy.yaml"
    existing = [p for p in (config, policy) if p.exists()]
    if existing and not force:
        raise AuditError(f"{existing[0]}: already exists; keep it, choose another --out, or overwrite with --force")
    if images is not None:
        classes = _image_folder_classes(images)
    else:
        assert manifest is not None
        classes = _manifest_classes(manifest, path_column, label_column)
    text = config_text(
        folder=folder,
        model=model,
        images=images,
        manifest=manifest,
        classes=classes,
        input_size=(input_size[0], input_size[1]),
        path_column=path_column,
        label_column=label_column,
        policy_file=policy.name,
    )
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / ".config.yaml.cvaudit-init"
    staged.write_text(text, encoding="utf-8")  # validated (and the model probed) before anything is kept
    try:
        width, size = _model_width(staged)
    finally:
        staged.unlink()
    # integer labels may leave out the last classes (a validation set without them); names must all be there
    if width < classes.count or (classes.names is not None and width != classes.count):
        source = images if images is not None else manifest
        what = "classes" if classes.names is not None else f"classes (labels up to {classes.count - 1})"
        raise AuditError(
            f"{model}: the model outputs {width} classes but {source} has {classes.count} {what}; nothing was written"
        )
    config.write_text(text, encoding="utf-8")
    policy.write_text(STARTER_POLICY, encoding="utf-8")
    _print_summary(classes, images, manifest, model, width, size, config, policy, folder)


def _print_summary(classes, images, manifest, model, width, size, config, policy, folder) -> None:
    say = click.echo
    if images is not None:
        say(f"classes: {classes.count} folders of {images}, sorted; model output k is class k:")
    elif classes.names is not None:
        say(f"classes: {classes.count} label names of {manifest}, sorted; model output k is class k:")
        say("  check this order: it must be the order of the model's outputs (edit model.class_names)")
    else:
        say(f"classes: integer labels 0..{classes.count - 1} of {manifest}; model output k is label k:")
    for k, n in enumerate(classes.per_class):
        name = f" = {echo(classes.names[k])}" if classes.names is not None else ""
        say(f"  {k}{name} ({n} images)")
    say(f"model: {model} outputs {width} classes on a {size} image")
    say(f"wrote {config} and {policy}")
    out = folder / "cvaudit-out"
    say(f"next: cvaudit run {config} --out {out}")
