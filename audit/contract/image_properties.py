"""The ``image_properties.csv`` contract: one row per decoded sample of a run, in dataset order.

The columns (:data:`PROPERTY_COLUMNS`) after ``id`` (the sample id as ``predictions.csv`` writes it):

- ``brightness``: mean luma, ITU-R BT.601 (``0.299 R + 0.587 G + 0.114 B``), in [0, 1];
- ``contrast``: RMS contrast, the population standard deviation of the luma, in [0, 0.5];
- ``sharpness``: the variance of the 4-neighbour Laplacian (kernel ``[[0,1,0],[1,-4,1],[0,1,0]]``) of the luma,
  over the interior pixels (no padding), on the [0, 1] scale (OpenCV's ``Laplacian(ksize=1).var()`` of an 8-bit
  image is 255² times it, up to its border pixels);
- ``colourfulness``: Hasler & Süsstrunk (2003) M = sqrt(σ_rg² + σ_yb²) + 0.3 sqrt(μ_rg² + μ_yb²) with
  ``rg = R - G``, ``yb = (R + G) / 2 - B``, on the [0, 1] scale (the paper's 0-255 value divided by 255);
- ``saturation``: mean HSV saturation ``(max - min) / max`` (0 where ``max`` is 0), in [0, 1];
- ``aspect_ratio``: ``width / height`` of the decoded image;
- ``width``, ``height``: the decoded image's size in pixels before it is resized to ``model.input_size``
  (after the EXIF orientation when ``data.exif`` is ``apply``).

The five pixel properties are computed on the clean image as the model receives it (resized to
``model.input_size``, in [0, 1], before the model's normalisation), in the one streaming pass that reads the
images: every image of a batch has the same size there, so they are computed batched on the run's device, no image is
decoded twice, and they describe the pixels the model's predictions are about. A one-channel model's input
is luma only: its colourfulness and saturation are 0. ``aspect_ratio``, ``width`` and ``height`` are of the image as
decoded (the model's input has one size for every sample).

A detection run (``task: detection``, from results schema 1.6) writes the same file, with the pixel properties
computed on each image **as decoded, at its own size** (one image at a time: detection images differ in size, and
a letterbox's padding band is not part of the image); the sample id is as ``detections.csv`` writes it.
"""

from __future__ import annotations

__all__ = ["IMAGE_PROPERTIES_CSV", "PIXEL_PROPERTIES", "PROPERTY_COLUMNS", "SIZE_PROPERTIES"]

#: The run folder's file of per-sample image properties.
IMAGE_PROPERTIES_CSV = "image_properties.csv"

#: The properties computed from the pixels, in column order.
PIXEL_PROPERTIES = ("brightness", "contrast", "sharpness", "colourfulness", "saturation")

#: The properties of the decoded image's size, in column order.
SIZE_PROPERTIES = ("aspect_ratio", "width", "height")

#: image_properties.csv's header.
PROPERTY_COLUMNS = ("id", *PIXEL_PROPERTIES, *SIZE_PROPERTIES)
