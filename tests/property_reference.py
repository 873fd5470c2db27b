"""A hand-written numpy reference for the pixel properties of image_properties.csv
(:func:`audit.evaluation.image_properties.pixel_properties`), shared by the tests that check them."""

from __future__ import annotations

import numpy as np


def image_properties_reference(img: np.ndarray) -> list[float]:
    """Brightness, contrast, sharpness, colourfulness, saturation of one HWC RGB float64 image (numpy only).

    Brightness and contrast: mean and standard deviation of the luma ``0.299 R + 0.587 G + 0.114 B``;
    sharpness: the variance of its 4-neighbour Laplacian over the interior pixels; colourfulness: Hasler and
    Süsstrunk's ``hypot(std rg, std yb) + 0.3 hypot(mean rg, mean yb)``; saturation: the mean HSV saturation.
    """
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]
    rg, yb = r - g, 0.5 * (r + g) - b
    m = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    mx, mn = img.max(axis=2), img.min(axis=2)
    s = np.where(mx > 0, (mx - mn) / np.where(mx > 0, mx, 1), 0.0)
    return [y.mean(), y.std(), lap.var(), m, s.mean()]
