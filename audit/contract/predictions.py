"""The ``predictions.csv`` contract: one row per (sample, condition), in dataset order.

Columns, in this order, then one column per subgroup attribute:

- ``sample_id``: the manifest's id column (default: the image path);
- ``condition``: the condition id (``clean``, ``night@3``, ``pgd@0.007843``);
- ``stressor``, ``severity``: empty for clean;
- ``label``, ``prediction``: class indices (``model.class_names`` in results.json names them);
- ``confidence`` = max_k p_k, ``p_true`` = p_label, ``prob_sq_sum`` = sum_k p_k^2, each
  written as the shortest text that reads back as the exact float64 value.

Every metric of results.json can be recomputed from this file: accuracy,
balanced accuracy and macro F1 from ``label``/``prediction``; ECE/MCE from
``confidence`` and correctness; NLL = -mean log max(p_true, eps) with eps the
float64 machine epsilon; Brier = mean(prob_sq_sum - 2 p_true + 1).

Written with cvaudit's one CSV writer (:mod:`audit.contract.csvfile`), like every CSV it writes: a text
cell that a spreadsheet would run as a formula gets a leading apostrophe, control characters are
escaped (``\\x1b``), numbers are written as they are, lines end in CRLF. Read it back with
:func:`audit.contract.csvfile.reader` (or drop the apostrophe before ``= + - @`` and tab yourself).
"""

from __future__ import annotations

__all__ = ["PREDICTIONS_COLUMNS"]

PREDICTIONS_COLUMNS = (
    "sample_id",
    "condition",
    "stressor",
    "severity",
    "label",
    "prediction",
    "confidence",
    "p_true",
    "prob_sq_sum",
)
