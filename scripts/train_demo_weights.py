"""Train the demo CNN for seed 0 and record its weights as the ones ``cvaudit demo`` ships.

    .venv/bin/python scripts/train_demo_weights.py

writes ``audit/demo_weights/digits_cnn_seed0.pt`` (a ``state_dict``) and prints its SHA-256,
which goes into ``audit.demo.DEMO_WEIGHTS_SHA256``. Training is not reproducible across CPUs
(the kernels round differently), which is why the weights are shipped instead of trained on
every machine: run this only when the demo's data or recipe change, then regenerate the
README's demo numbers (``scripts/update_readme_demo.py``) and the output reference
(``scripts/make_output_reference.py``).
"""

from __future__ import annotations

import hashlib
import io

import torch

from audit.demo import DEMO_WEIGHTS, DEMO_WEIGHTS_SEED, build_demo_data, train_demo_model


def main() -> None:
    model = train_demo_model(build_demo_data(DEMO_WEIGHTS_SEED), seed=DEMO_WEIGHTS_SEED)
    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, buffer)
    DEMO_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    DEMO_WEIGHTS.write_bytes(buffer.getvalue())
    print(f"wrote {DEMO_WEIGHTS.name}: sha256 {hashlib.sha256(buffer.getvalue()).hexdigest()}")


if __name__ == "__main__":
    main()
