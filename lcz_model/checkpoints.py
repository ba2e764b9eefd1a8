"""A training run's files: the checkpoint and the model card, found and read (torch only, so
every module can use it without pulling in the model)."""
from __future__ import annotations

from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"
CARD_NAME = "model_card.json"


def resolve_checkpoint(path) -> Path:
    """A run folder (its checkpoint.pt) or a checkpoint file."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}; pass a run folder written by "
                                f"`python -m lcz_model.train` or its {CHECKPOINT_NAME}")
    return p


def load_checkpoint(path, map_location="cpu") -> dict:
    ck = torch.load(resolve_checkpoint(path), map_location=map_location, weights_only=False)
    if not isinstance(ck, dict) or "model" not in ck or "model_config" not in ck:
        raise ValueError(f"{path} is not an lcz_model training checkpoint")
    return ck
