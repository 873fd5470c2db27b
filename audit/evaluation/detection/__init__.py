"""Object detectors (``task: detection``): ground truth, the detector, its pass and its metrics.

The runner (:mod:`audit.detection_run`) uses them through :mod:`audit.evaluation`'s public names:
:mod:`~audit.evaluation.detection.evaluate` (the data and the streaming pass, detections spilled per
condition), :mod:`~audit.evaluation.detection.model` (loading a detector in any format),
:mod:`~audit.evaluation.detection.summary` (the metrics of each condition and group, the gap tests,
mPC / rPC, ``detections.json`` and ``detections.csv``) and :mod:`~audit.evaluation.detection.results`
(the whole results and the report's example images). They are built from:

- :mod:`audit.evaluation.detection.annotations` — the ground-truth readers: a COCO instances
  JSON (:func:`~audit.evaluation.detection.annotations.read_coco`), a YOLO-format folder
  (:func:`~audit.evaluation.detection.annotations.read_yolo`), and the join of either with a
  manifest's image-level attributes and governance columns
  (:func:`~audit.evaluation.detection.annotations.join_manifest`), all into one typed model
  (:class:`~audit.evaluation.detection.annotations.GroundTruth`).
- :mod:`audit.evaluation.detection.coco_metrics` — ``detections.json`` in the COCO results
  format and the COCO metrics of it through faster-coco-eval, for all images or image subgroups.
- :mod:`audit.evaluation.detection.operating_point` — precision, recall, F1, false positives and
  missed objects per image at the user's score and IoU thresholds, from per-image counts.
- :mod:`audit.evaluation.detection.outputs`, :mod:`~audit.evaluation.detection.nms` and
  :mod:`~audit.evaluation.detection.letterbox` — the detector output contract and its validator,
  the ``boxes`` and ``yolo`` decoders with cvaudit's batched NMS, and the resize / letterbox that
  is undone exactly so boxes come back in the original image's pixels.
- :mod:`audit.evaluation.detection.tide` — the TIDE error decomposition (equal to tidecv).
- :mod:`audit.evaluation.detection.calibration` — the detection calibration error D-ECE and its
  reliability diagram (equal to netcal), from per-image sums a bootstrap can resample.
- :mod:`audit.evaluation.detection.statistics` — cluster-bootstrap intervals over images, the recall
  gap tests (every pair, jackknife standard errors, Holm) and mPC / rPC.
- :mod:`audit.evaluation.detection.hf_detector` — Hugging Face ``AutoModelForObjectDetection`` folders.
"""
