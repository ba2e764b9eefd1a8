"""Shared-weight encoders for MSU-Net: a small registry of named timm Swin configs.

Every encoder is a timm ``features_only`` model returning the four stage feature maps, converted
from timm's NHWC to NCHW (a permuted view, so channels_last inputs stay copy-free).

Nothing is ever downloaded: weights are random unless ``checkpoint`` names a local file, which may
hold (a) the encoder weights :func:`save_encoder_weights` writes (the warm start of the next
active-learning round), (b) a state_dict saved from :func:`build_encoder`'s module or a whole
MSU-Net (``encoder.``/``body.`` prefixes are stripped), (c) a timm Swin *classifier* state_dict
(``layers.N.`` keys, head and final norm are dropped), optionally wrapped in ``{"model": ...}`` /
``{"state_dict": ...}``. Relative-position tables are resized with timm's own filter when the
window size differs (e.g. an ImageNet window-7 checkpoint into our window 8).

Images are expected as float tensors normalised as ``lcz_model.data.normalise`` does (ImageNet
statistics, ``lcz_model.data.MEAN`` / ``STD``).
"""
from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

ENCODERS: dict[str, dict[str, Any]] = {
    # The paper's encoder family; DECISION: Swin-T at 256 px with window 8 (256/32 = 8 tokens at
    # the last stage, so every stage's grid is divisible by the window).
    "swin_tiny": dict(timm_name="swin_tiny_patch4_window7_224", img_size=256, window_size=8,
                      kwargs=dict()),
    # Tiny config of the same family for tests and CPU evidence runs (~1.2 M parameters).
    "swin_micro": dict(timm_name="swin_tiny_patch4_window7_224", img_size=256, window_size=8,
                       kwargs=dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))),
}


def window_for(img_size: int, window_size: int) -> int:
    """Largest window <= ``window_size`` that tiles the last stage's grid (img_size / 32)."""
    if img_size % 32:
        raise ValueError(f"img_size must be a multiple of 32 (Swin has 4 stages of /2 after a /4 "
                         f"patch embedding); got {img_size}")
    grid = img_size // 32
    w = min(window_size, grid)
    while grid % w:
        w -= 1
    return w


class SwinEncoder(nn.Module):
    """timm Swin ``features_only`` body -> list of 4 NCHW feature maps (strides 4, 8, 16, 32)."""

    def __init__(self, name: str = "swin_tiny", img_size: int | None = None,
                 window_size: int | None = None, drop_path_rate: float = 0.1):
        super().__init__()
        import timm  # local import: keeps `import lcz_model` light

        if name not in ENCODERS:
            raise KeyError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
        spec = ENCODERS[name]
        self.name = name
        self.img_size = int(img_size or spec["img_size"])
        self.window_size = window_for(self.img_size, int(window_size or spec["window_size"]))
        self.body = timm.create_model(
            spec["timm_name"], pretrained=False, features_only=True, out_indices=(0, 1, 2, 3),
            img_size=self.img_size, window_size=self.window_size,
            drop_path_rate=drop_path_rate, **spec["kwargs"])
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    def last_stage(self) -> nn.Module:
        """The last shared layer (stage 4): GradNorm measures task gradients here."""
        return self.body.layers_3

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        # timm Swin features are NHWC; permute to NCHW (a view: memory stays channels_last).
        return [f.permute(0, 3, 1, 2) for f in feats]


_STRIP_PREFIXES = ("module.", "encoder.", "body.", "backbone.")


def _unwrap_state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"encoder checkpoint {path!r} does not hold a state_dict of tensors")
    sd = {}
    for k, v in obj.items():
        changed = True
        while changed:
            changed = False
            for p in _STRIP_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        sd[k] = v
    return sd


def load_encoder_checkpoint(encoder: SwinEncoder, path: str | os.PathLike) -> SwinEncoder:
    """Load a local state_dict file into ``encoder`` (never downloads). Raises on missing keys."""
    from timm.models.swin_transformer import checkpoint_filter_fn

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"encoder checkpoint {path!r} does not exist; pass a local "
                                f"state_dict file (weights are never downloaded) or None")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    sd = _unwrap_state_dict(obj, path)
    # timm classifier checkpoints name stages "layers.N."; the features_only body "layers_N.".
    sd = {re.sub(r"^layers\.(\d+)\.", r"layers_\1.", k): v for k, v in sd.items()}
    if "layers_0.downsample.reduction.weight" in sd:  # original MS layout: downsample at stage end
        sd = {re.sub(r"^layers_(\d+)\.downsample",
                     lambda m: f"layers_{int(m.group(1)) + 1}.downsample", k): v
              for k, v in sd.items()}
    sd = checkpoint_filter_fn(sd, encoder.body)  # resizes patch embed / rel-pos tables if needed
    own = encoder.body.state_dict()
    dropped = sorted(k for k in sd if k not in own)
    if dropped:
        log.info("encoder checkpoint %s: ignoring %d keys not in the encoder (e.g. %s)",
                 path, len(dropped), dropped[:3])
    sd = {k: v for k, v in sd.items() if k in own}
    missing = sorted(k for k in own if k not in sd)
    if missing:
        raise ValueError(f"encoder checkpoint {path!r} lacks {len(missing)} encoder weights "
                         f"(e.g. {missing[:3]}); is it a {encoder.name} checkpoint?")
    bad = [k for k, v in sd.items() if v.shape != own[k].shape]
    if bad:
        raise ValueError(f"encoder checkpoint {path!r}: shape mismatch for {bad[:3]} "
                         f"(checkpoint {tuple(sd[bad[0]].shape)} vs model "
                         f"{tuple(own[bad[0]].shape)}); wrong encoder config?")
    encoder.body.load_state_dict(sd, strict=True)
    return encoder


ENCODER_WEIGHTS_NAME = "encoder_weights.pt"


def save_encoder_weights(model_or_run, path: str | os.PathLike) -> Path:
    """Write the encoder's weights alone (the keys of ``SwinEncoder.body``) to ``path``
    atomically, for :func:`load_encoder_checkpoint` (a warm start).

    ``model_or_run``: an MSU-Net (anything with ``.encoder``), a :class:`SwinEncoder`, or a
    training run folder / checkpoint file (its ``checkpoint.pt`` is read; no model is built)."""
    from .atomic import atomic_write_bytes

    if isinstance(model_or_run, nn.Module):
        enc = getattr(model_or_run, "encoder", model_or_run)
        if not isinstance(enc, SwinEncoder):
            raise TypeError(f"{type(model_or_run).__name__} has no SwinEncoder")
        sd = enc.body.state_dict()
    else:
        from .checkpoints import load_checkpoint

        prefix = "encoder.body."
        sd = {k[len(prefix):]: v for k, v in load_checkpoint(model_or_run)["model"].items()
              if k.startswith(prefix)}
        if not sd:
            raise ValueError(f"the checkpoint of {model_or_run} holds no encoder weights")
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in sd.items()}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def build_encoder(name: str = "swin_tiny", img_size: int = 256, checkpoint: str | None = None,
                  window_size: int | None = None, drop_path_rate: float = 0.1) -> SwinEncoder:
    """Build a named encoder (random init), loading ``checkpoint`` (a local file) if given."""
    enc = SwinEncoder(name, img_size=img_size, window_size=window_size,
                      drop_path_rate=drop_path_rate)
    if checkpoint:
        load_encoder_checkpoint(enc, checkpoint)
    return enc
