"""Shared helpers for the lcz_model core tests: a tiny Swin (swin_micro) at 64 px on CPU."""
from __future__ import annotations

import torch

from lcz_model.classes import N_CLASSES
from tests.torch_threads import one_torch_thread  # noqa: F401  (autouse: one seeded thread)

SIZE = 64          # 64 px -> stage grids 16, 8, 4, 2 (window 2)
DIM = 32           # fusion width for tests


def make_batch(b: int = 3, p: int = 2, size: int = SIZE, k: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    local_shape = (b, 3, size, size) if k is None else (b, k, 3, size, size)
    return {
        "global": torch.randn(b, 3, size, size, generator=g),
        "local": torch.randn(*local_shape, generator=g),
        "fractions": torch.softmax(3 * torch.randn(b, N_CLASSES, generator=g), dim=-1),
        "pure": torch.randn(p, 3, size, size, generator=g),
        "pure_labels": torch.randint(0, N_CLASSES, (p,), generator=g),
    }


def tiny_model(variant: str = "full", **kw):
    from lcz_model.msunet import build_model

    kw.setdefault("fusion_dim", DIM)
    return build_model(variant, encoder="swin_micro", img_size=SIZE, **kw)
