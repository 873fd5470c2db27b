"""Object detectors: ground truth, detector models and detection metrics (issue 25).

- :mod:`audit.evaluation.detection.annotations` — the ground-truth readers: a COCO instances
  JSON (:func:`~audit.evaluation.detection.annotations.read_coco`), a YOLO-format folder
  (:func:`~audit.evaluation.detection.annotations.read_yolo`), and the join of either with a
  manifest's image-level attributes and governance columns
  (:func:`~audit.evaluation.detection.annotations.join_manifest`), all into one typed model
  (:class:`~audit.evaluation.detection.annotations.GroundTruth`).
"""
