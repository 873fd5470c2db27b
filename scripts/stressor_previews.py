"""Render the preview image of every image stressor for the documentation (``docs/img/stressors/<name>.png``).

Usage (from the repository root, after installing cvaudit so that the registry lists every stressor)::

    .venv/bin/python scripts/stressor_previews.py [--names NAME ...] [--size 96] [--out docs/img/stressors]

Each PNG is one row of :func:`stressors.render_preview` on scikit-learn's sample photograph
``china``: the clean image, then severities 1 to 5 (seed 0, tiles 96 px high), reduced to a
256-colour palette (fewer for noise) so that each file stays under 60 KB. Model-aware stressors (attacks) have no
preview: they need a model. ``docs/stressors.md`` shows each file next to its stressor, and
``tests/stressors/test_stressor_preview_docs.py`` checks that every registered image stressor has
one, referenced from that page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

import stressors  # noqa: E402  (after the path: run from a checkout)

#: Where the documentation's preview images live, relative to the repository root.
OUT = Path("docs/img/stressors")
#: Largest size of a preview file.
MAX_BYTES = 60 * 1024
#: Height of each tile in pixels (the shorter side of the photograph).
SIZE = 96


def image_stressors() -> list[str]:
    """The registered stressors that have a preview (not model-aware), sorted."""
    return [name for name in stressors.available() if not getattr(stressors.factory(name), "model_aware", False)]


def render(name: str, out_dir: Path, size: int = SIZE) -> Path:
    """Write ``<out_dir>/<name>.png``: the clean photograph and severities 1..5 of ``name``."""
    grid = stressors.render_preview("sample:china", names=[name], seed=0, size=size)
    path = out_dir / f"{name}.png"
    for colors in (256, 128, 64):  # noise compresses badly: fewer colours until the file fits
        grid.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True
        )
        if path.stat().st_size < MAX_BYTES:
            break
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", help="only these stressors (default: every image stressor)")
    parser.add_argument("--size", type=int, default=SIZE, help="tile height in pixels")
    parser.add_argument("--out", type=Path, default=ROOT / OUT, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or image_stressors():
        path = render(name, args.out, args.size)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
