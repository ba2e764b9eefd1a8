"""DCAF step 1 reads where each local patch lies on the global token grid (issue #15, item 2).

With ``local_positions`` on, swapping the boxes of two local patches (same pixels, other places)
changes the fused features; with it off the boxes are ignored (the earlier fusion, kept for the
ablation); a gradient reaches the positional parameters; old checkpoints load without them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lcz_model.msunet import GridPositions, MSUNetConfig

from .conftest import make_batch, tiny_model

# two local patches per block: the top-left and the bottom-right quarter of the global image
BOXES = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])


def _fused(m, batch, boxes):
    m.eval()
    with torch.no_grad():
        return m(batch["global"], batch["local"], local_boxes=boxes)["pooled"]


def _model(on: bool):
    torch.manual_seed(0)
    # gate r = 1: with r = 0 step 1 adds nothing, whatever the positions
    m = tiny_model("full", local_positions=on, local_gate_init=1.0, dropout=0.0, drop_path=0.0)
    # W_l^Q, W_l^K as after some training (at their 0.02 init attention is near uniform)
    g = torch.Generator().manual_seed(1)
    for lin in (m.dcaf.local_attn.q, m.dcaf.local_attn.k):
        lin.weight.data = torch.randn(lin.weight.shape, generator=g) * 0.5
    return m


def test_swapping_local_positions_changes_the_fusion_only_when_on():
    batch = make_batch(b=2, k=2)
    boxes = BOXES.expand(2, 2, 4).clone()
    swapped = boxes.flip(1)                              # patch 0 now bottom-right, 1 top-left
    on = _model(True)
    a, b = _fused(on, batch, boxes), _fused(on, batch, swapped)
    assert (a - b).abs().max() > 1e-4                    # the places are read
    off = _model(False)
    a, b = _fused(off, batch, boxes), _fused(off, batch, swapped)
    assert torch.equal(a, b)
    assert torch.equal(a, _fused(off, batch, None))      # off: boxes ignored altogether
    assert off.dcaf.local_attn.pos is None and on.dcaf.local_attn.pos is not None


def test_unknown_boxes_add_no_position_terms():
    batch = make_batch(b=2, k=2)
    on = _model(True)
    nan = torch.full((2, 2, 4), float("nan"))
    # NaN boxes: the same as no boxes at all (no position on either side)
    assert torch.allclose(_fused(on, batch, nan), _fused(on, batch, None), atol=1e-6)


def test_a_gradient_reaches_the_positional_parameters():
    m = _model(True)
    m.train()
    batch = make_batch(b=3, p=2)
    batch["local_boxes"] = torch.tensor([[0.1, 0.2, 0.6, 0.7], [0.0, 0.0, 1.0, 1.0],
                                         [0.5, 0.4, 0.9, 0.8]])
    sum(m.losses(batch).values()).backward()
    proj = m.dcaf.local_attn.pos.proj
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    m.zero_grad()
    del batch["local_boxes"]                             # no boxes: no gradient to them
    sum(m.losses(batch).values()).backward()
    assert proj.weight.grad is None or proj.weight.grad.abs().sum() == 0


def test_local_tokens_land_under_the_global_cells_their_patch_covers():
    pos = GridPositions(8, grid=4)
    cells = pos.local_cells(torch.tensor([[0.5, 0.25, 1.0, 0.75]]), (4, 4), g=2)[0]
    # a patch over rows 2-4 and columns 1-3 of a 4x4 grid: token centres at 2.5/3.5 and 1.5/2.5
    assert cells.tolist() == [[2.5, 1.5], [2.5, 2.5], [3.5, 1.5], [3.5, 2.5]]
    g = pos.global_cells((4, 4), "cpu")
    # the same place gives the same embedding to a global and a local token
    assert torch.allclose(pos(cells[0]), pos(g[2 * 4 + 1]))


def test_default_is_on_and_old_checkpoints_load_without_positions():
    assert MSUNetConfig().local_positions is True
    old = MSUNetConfig.from_dict({"variant": "full", "encoder": "swin_micro", "img_size": 64})
    assert old.local_positions is False


@pytest.mark.parametrize("seed", range(6))
def test_augmented_box_follows_the_augmented_image(seed):
    """The training box goes through the same flip / rot90 / zoom as the global image."""
    from lcz_model.data import AugmentConfig, _Aug

    n = 64
    box = np.array([0.25, 0.5, 0.5, 0.75], dtype=np.float32)       # rows 16-32, cols 32-48
    img = np.zeros((n, n, 3), dtype=np.uint8)
    img[16:32, 32:48] = 255
    aug = _Aug(AugmentConfig(scale=(0.75, 1.25), colour_jitter=0.0), np.random.default_rng(seed))
    out = aug(img)
    rows, cols = np.nonzero(out[..., 0] > 127)
    y0, x0, y1, x1 = aug.box(box)
    # the bright square's new place = the transformed box's centre (within a pixel); a zoom
    # scales the square itself, the box keeps the local patch's size (the patch is zoomed too)
    assert abs((rows.min() + rows.max() + 1) / 2 / n - (y0 + y1) / 2) < 1.5 / n
    assert abs((cols.min() + cols.max() + 1) / 2 / n - (x0 + x1) / 2) < 1.5 / n
    assert y1 - y0 == pytest.approx(0.25) and x1 - x0 == pytest.approx(0.25)
