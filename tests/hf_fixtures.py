"""Tiny Hugging Face image classifiers built offline (a 2-layer ViT), saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

import torch

CLASSES = ["red", "green", "blue"]


def save_tiny_vit(folder: Path, *, image_size: int = 32, processor=None, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer ViT classifier (3 classes) and its image processor.

    Args:
        folder: Where to save (created).
        image_size: The ViT's input size (square).
        processor: An image processor to save beside it; default a ViT processor resizing
            bilinearly to ``image_size`` with mean = std = 0.5.
        seed: Weight initialisation seed.
    """
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
    )
    torch.manual_seed(seed)
    ViTForImageClassification(config).eval().save_pretrained(folder)
    if processor is None:
        processor = ViTImageProcessorPil(size={"height": image_size, "width": image_size})
    if processor is not False:
        processor.save_pretrained(folder)
    return folder
