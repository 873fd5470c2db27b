"""Train the detection demo's detector for seed 0 and record its weights as the ones the demo ships.

    .venv/bin/python scripts/train_detection_demo_weights.py [--out PATH]

trains :func:`audit.demo_detection.train_detector` (under three minutes on two CPU cores), writes
``audit/demo_weights/shapes_detector_seed0.pt`` (a ``state_dict``), prints its SHA-256, which goes
into ``audit.demo_detection.DETECTION_WEIGHTS_SHA256``, and prints the detector's numbers on the
held-out audit scenes (clean, night and occlusion at severity 3: COCO AP50 and recall per camera).
Training is not reproducible across CPUs (the kernels round differently), which is why the
weights are shipped: run this only when the demo's data or recipe change.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import time
from pathlib import Path

import torch

from audit.demo_detection import (
    AUDIT_IMAGES,
    DETECTION_WEIGHTS,
    DETECTION_WEIGHTS_SEED,
    build_scenes,
    measure_detector,
    train_detector,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DETECTION_WEIGHTS, help="where to write the weights")
    out: Path = parser.parse_args().out
    start = time.perf_counter()
    model = train_detector(seed=DETECTION_WEIGHTS_SEED, log=print)
    cpu = time.process_time()
    print(f"trained in {time.perf_counter() - start:.1f} s, {cpu:.1f} CPU s, on {torch.get_num_threads()} threads")
    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, buffer)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    print(f"wrote {out} ({len(buffer.getvalue())} bytes): sha256 {digest}")
    scenes = build_scenes(DETECTION_WEIGHTS_SEED, AUDIT_IMAGES, split="audit")
    for stressor in (None, "night", "occlusion"):
        m = measure_detector(model, scenes, stressor=stressor, severity=None if stressor is None else 3)
        name = "clean" if stressor is None else f"{stressor}@3"
        print(
            f"{name:12s} AP50 {m.map50:.3f}  mAP {m.map:.3f}  recall {m.recall:.3f}  "
            f"recall by camera {m.recall_by_camera}  by occlusion {m.recall_by_occlusion}  "
            f"fp/image {m.fp_per_image:.3f}"
        )


if __name__ == "__main__":
    main()
