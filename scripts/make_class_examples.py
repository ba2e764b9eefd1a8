"""Write the guidelines panel's SYNTHETIC class examples: small PNGs of each LCZ class painted by
the demo's texture renderer (fixtures.textures, the synthetic city's own), shown for a class until a
campaign has pure blocks of its own (annotator.guidelines).

    .venv/bin/python scripts/make_class_examples.py [--out frontend/static/frontend/lcz-examples]

Deterministic (fixed seeds): running it again writes the same bytes. The files are committed (all
together about 0.5 MB); they are labelled synthetic wherever they are shown.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.textures import render_class  # noqa: E402
from lcz_model.classes import CLASSES  # noqa: E402

SYNTHETIC_PER_CLASS = 2   # = annotator.guidelines.SYNTHETIC_PER_CLASS (tests/annotator/test_guidelines.py checks)
SIDE_M = 112        # metres painted, at 1 m per pixel
SIZE = 112          # px written
DEFAULT_OUT = ROOT / "frontend" / "static" / "frontend" / "lcz-examples"


def example(class_index: int, n: int) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8: class `class_index` painted over a whole square, variant n."""
    rng = np.random.default_rng(1000 * class_index + n)
    mask = np.ones((SIDE_M, SIDE_M), dtype=bool)
    # a distinct window of the global grid per variant: the seamless ground noise differs too
    return render_class(class_index, mask, rng, row0=4000 * n, col0=4000 * class_index, res=1.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for c in CLASSES:
        for n in range(1, SYNTHETIC_PER_CLASS + 1):
            img = Image.fromarray(example(c.index, n), "RGB")
            if SIZE != SIDE_M:
                img = img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
            path = args.out / f"{c.key}-{n}.png"
            img.save(path, "PNG", optimize=True)
            total += path.stat().st_size
    print(f"{len(CLASSES) * SYNTHETIC_PER_CLASS} examples, {total / 1e3:.0f} kB, in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
