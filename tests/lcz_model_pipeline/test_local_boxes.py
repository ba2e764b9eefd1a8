"""images/local_boxes.csv: each local patch's box in its block's global image is where its
pixels really are (the positions MSU-Net's DCAF gives local tokens)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from lcz_model.package import read_package
from tests.box_pixels import pixels_under


def test_boxes_put_each_local_patch_where_the_global_image_shows_it(synthetic_pkg):
    pkg = read_package(synthetic_pkg)
    multi = [b for b in pkg.blocks if len(b.local_paths) >= 2]
    assert multi, "fixture: no block with several local patches"
    right, wrong = [], []
    for b in multi[:6]:
        g = np.asarray(Image.open(b.global_path).convert("RGB"))
        boxes = b.local_boxes
        for k, path in enumerate(b.local_paths):
            here = pixels_under(g, boxes[k])
            h, w = here.shape[:2]
            if h < 4 or w < 4:
                continue
            small = np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.Resampling.BOX)).astype(float)
            other = pixels_under(g, boxes[(k + 1) % len(boxes)])
            if other.shape != here.shape:
                continue
            right.append(np.abs(small - here).mean())
            wrong.append(np.abs(small - other).mean())
    assert right and len(right) == len(wrong)
    # the patch matches the global image at its own box, and far worse at its neighbour's
    assert np.mean(right) < 0.5 * np.mean(wrong), (np.mean(right), np.mean(wrong))
