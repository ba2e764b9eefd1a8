"""Inference: checkpoint + block chips -> 17 fractions per block.

    from lcz_model.predict import load_model, predict_blocks
    preds = predict_blocks("var/runs/full", chips_iter)      # (N, 17), rows sum to 1

Every local patch of a block is used (up to k, default 8, evenly spread by
``lcz_model.chips.cut_block_chips``). DECISION (method.md: "averages the fused features or
outputs"): every (global, local_k) pair is one sample, as in training, and the K pairs'
abundance vectors are averaged (``MSUNet`` does this given local (B,K,...) and local_mask).

CLI (every block of a package, or one split of it: train, val or test):
    python -m lcz_model.predict --checkpoint RUN --dataset PKG [--split test] [--out preds.csv]

Local patch boxes (where each patch lies in the global image; MSU-Net's DCAF positions) are given
only to a run whose training package had them (``uses_local_boxes``), computed from the cut chips
as the export computes ``images/local_boxes.csv``, or read from the package.
"""
from __future__ import annotations

import argparse
import csv
import sys
from typing import Iterable

import numpy as np
import torch

from .checkpoints import load_checkpoint
from .classes import KEYS, N_CLASSES
from .data import prepare_chips

__all__ = ["load_checkpoint", "load_model", "predict_blocks", "predict_tensors",
           "predict_dataset", "prepared_batches", "uses_local_boxes", "model_uses_local_boxes", "main"]

# set by load_model on the model it returns: whether its run trained on local patch boxes
BOXES_ATTR = "trained_with_local_boxes"
CHIP_ATTR = "trained_chip_size"

def _build_from_config(model_config: dict):
    from .msunet import MSUNet, MSUNetConfig

    # weights come from the checkpoint: do not re-read the encoder's initial checkpoint file
    return MSUNet(MSUNetConfig.from_dict({**model_config, "encoder_checkpoint": None}))


def uses_local_boxes(info: dict) -> bool:
    """Whether a run's model is given local patch boxes at inference: only when its training
    package had ``images/local_boxes.csv`` (model card / checkpoint ``dataset.local_boxes``,
    lcz_model.train); a model that never saw boxes never learned their terms, so gets none."""
    return bool((info.get("dataset") or {}).get("local_boxes"))


def chip_size(info: dict, default: int = 256) -> int:
    """The chip size a run was trained on (its package's; ``dataset.chip_size`` of the checkpoint),
    ``default`` for runs from before it was recorded. Inference must cut chips of this size: a
    local crop of 96 px covers 96 m at 1 m, one of 256 px 256 m."""
    return int((info.get("dataset") or {}).get("chip_size") or default)


def model_chip_size(model, default: int = 256) -> int:
    """chip_size of the run a model was loaded from (load_model); ``default`` for any other."""
    return int(getattr(model, CHIP_ATTR, None) or default)


def model_uses_local_boxes(model) -> bool:
    """uses_local_boxes of the run a model was loaded from (load_model); False for any other."""
    return bool(getattr(model, BOXES_ATTR, False))


def load_model(checkpoint, device="cpu"):
    """(model in eval mode on device, checkpoint dict without the optimizer state). The model
    remembers whether its run trained on local boxes (:func:`model_uses_local_boxes`)."""
    ck = load_checkpoint(checkpoint)
    model = _build_from_config(ck["model_config"])
    model.load_state_dict(ck["model"])
    model.to(device).eval()
    info = {k: v for k, v in ck.items() if k not in ("model", "optimizer", "scheduler",
                                                     "gradnorm", "rng")}
    setattr(model, BOXES_ATTR, uses_local_boxes(info))
    setattr(model, CHIP_ATTR, chip_size(info))
    return model, info


@torch.no_grad()
def predict_tensors(model, global_img: torch.Tensor, local: torch.Tensor,
                    valid: torch.Tensor | None = None,
                    local_boxes: torch.Tensor | None = None) -> torch.Tensor:
    """global (B,3,H,W), local (B,K,3,H,W) with valid (B,K) bool -> (B,17) abundances: the mean
    over each block's valid local patches of the (global, local_k) pair's abundances."""
    # MSUNet pairs every valid local patch with its block's global image and averages the
    # pairs' abundances (local_mask marks the padded slots).
    kw = {} if local_boxes is None else {"local_boxes": local_boxes}  # (B,K,4): msunet DCAF
    out = model(global_img, local, local_mask=valid, **kw)["abundances"].float()
    # renormalise against float drift so rows sum to 1 (they are means of distributions)
    return out / out.sum(1, keepdim=True).clamp(min=1e-12)


def _device_ctx(device):
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    import contextlib
    return contextlib.nullcontext()


def _model_img_size(model, default=256) -> int:
    cfg = getattr(model, "cfg", None) or getattr(model, "config", None)
    return int(getattr(cfg, "img_size", default) or default)


def _chip_boxes(ch, k_local: int) -> torch.Tensor:
    """(K, 4) boxes of a block's first k_local local patches in its global image (BlockChips.boxes:
    from the cut's origins, as the export writes images/local_boxes.csv, or the package's file;
    a dict's "local_boxes"); NaN rows where unknown or padding (msunet DCAF: no position)."""
    out = torch.full((k_local, 4), float("nan"))
    boxes = ch.get("local_boxes") if isinstance(ch, dict) else ch.boxes()
    if boxes:
        kb = torch.tensor([list(b) for b in boxes[:k_local]], dtype=torch.float32)
        out[:len(kb)] = kb
    return out


@torch.no_grad()
def prepared_batches(chips_iter: Iterable, *, img_size: int, k_local: int = 8, batch_size: int = 16,
                     device="cpu", progress: bool = False, desc: str = "predict",
                     local_boxes: bool = False):
    """Yield (global (B,3,H,W), local (B,K,3,H,W), valid (B,K), boxes (B,K,4) or None) tensors on
    `device`, batch by batch, from BlockChips or dicts with global_rgb, mask, local: the one place
    chips become model input. `local_boxes`: give each local patch's box in the global image
    (only for a run trained with them: :func:`model_uses_local_boxes`); else boxes is None."""
    buf: list[dict] = []

    def stack():
        out = tuple(torch.stack([b[k] for b in buf]).to(device) for k in ("global", "local", "local_valid"))
        boxes = torch.stack([b["local_boxes"] for b in buf]).to(device) if local_boxes else None
        buf.clear()
        return (*out, boxes)

    it = chips_iter
    if progress:
        from tqdm import tqdm
        it = tqdm(chips_iter, desc=desc, unit="block")
    for ch in it:
        if isinstance(ch, dict):
            g, m, loc = ch["global_rgb"], ch["mask"], ch["local"]
        else:
            g, m, loc = ch.global_rgb, ch.mask, ch.local
        item = prepare_chips(g, m, loc, img_size=img_size, k_local=k_local)
        if local_boxes:
            item["local_boxes"] = _chip_boxes(ch, k_local)
        buf.append(item)
        if len(buf) >= batch_size:
            yield stack()
    if buf:
        yield stack()


def predict_blocks(checkpoint, chips_iter: Iterable, batch_size: int = 16, *, device="cpu",
                   k_local: int = 8, img_size: int | None = None,
                   progress: bool = False, local_boxes: bool | None = None) -> np.ndarray:
    """Fractions for each block of ``chips_iter`` -> (N, 17) float64, rows sum to 1.

    checkpoint: a run folder, a checkpoint file, or a loaded model. chips_iter: BlockChips
    (from ``cut_block_chips`` or ``load_chips``) or dicts with global_rgb, mask, local.
    local_boxes: pass each local patch's box (None: when the run trained with them,
    :func:`model_uses_local_boxes`).
    """
    if isinstance(checkpoint, torch.nn.Module):
        model = checkpoint.to(device).eval()
    else:
        model, _ = load_model(checkpoint, device)
    boxes_on = model_uses_local_boxes(model) if local_boxes is None else bool(local_boxes)
    rows = []
    for g, loc, val, boxes in prepared_batches(
            chips_iter, img_size=int(img_size or _model_img_size(model)), k_local=k_local,
            batch_size=batch_size, device=device, progress=progress, desc="predict",
            local_boxes=boxes_on):
        with _device_ctx(device):
            rows.append(predict_tensors(model, g, loc, val, boxes).double().cpu().numpy())
    if not rows:
        return np.zeros((0, N_CLASSES))
    out = np.concatenate(rows)
    return out / out.sum(1, keepdims=True)


@torch.no_grad()
def predict_dataset(model, dataset, batch_size: int = 16, device="cpu",
                    num_workers: int = 0) -> np.ndarray:
    """Predictions for an evaluation ``BlockDataset`` (train=False), in its order."""
    from torch.utils.data import DataLoader

    model.eval()
    dl = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    rows = []
    for b in dl:
        with _device_ctx(device):
            boxes = b.get("local_boxes")
            p = predict_tensors(model, b["global"].to(device), b["local"].to(device),
                                b["local_valid"].to(device),
                                None if boxes is None else boxes.to(device))
        rows.append(p.double().cpu().numpy())
    out = np.concatenate(rows)
    return out / out.sum(1, keepdims=True)


def _auto_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Predict 17 LCZ fractions per block of a dataset "
                                 "package with a trained MSU-Net checkpoint.")
    ap.add_argument("--checkpoint", required=True, help="run folder or checkpoint.pt")
    ap.add_argument("--dataset", required=True, help="dataset package folder")
    ap.add_argument("--split", default="all", choices=["all", "train", "val", "test"])
    ap.add_argument("--out", default=None, help="CSV to write (default: stdout)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--k-local", type=int, default=8)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    from .package import read_package

    device = _auto_device(a.device)
    pkg = read_package(a.dataset)
    blocks = pkg.split(a.split)
    model, info = load_model(a.checkpoint, device)
    preds = predict_blocks(model, (b.load_chips() for b in blocks), a.batch_size,
                           device=device, k_local=a.k_local, progress=a.out is not None)
    version = info.get("model_version", "")
    out = open(a.out, "w", newline="", encoding="utf-8") if a.out else sys.stdout
    try:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["block_id", *KEYS, "model_version"])
        for b, p in zip(blocks, preds):
            w.writerow([b.block_id, *(f"{v:.6f}" for v in p), version])
    finally:
        if a.out:
            out.close()
    if a.out:
        print(f"wrote {len(blocks)} predictions to {a.out} (model {version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
