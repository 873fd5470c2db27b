"""Object detectors: ground truth, detections, COCO metrics and the operating point."""
