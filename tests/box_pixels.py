"""The global image's pixels under a local patch's box (images/local_boxes.csv), for the tests that
check a box puts its patch where the global image shows it (the package's and the export's)."""
from __future__ import annotations

import numpy as np


def pixels_under(global_rgb, box) -> np.ndarray:
    """(h, w, 3) float pixels of ``global_rgb`` under ``box`` (y0, x0, y1, x1 as fractions of its
    side; a box may reach past the edge, where the pixels are 0)."""
    n = global_rgb.shape[0]
    y0, x0, y1, x1 = (int(round(v * n)) for v in box)
    pad = np.zeros((3 * n, 3 * n, 3), dtype=np.uint8)
    pad[n:2 * n, n:2 * n] = global_rgb
    return pad[n + y0:n + y1, n + x0:n + x1].astype(float)
