"""PyTorch datasets over a dataset package (see ``lcz_model.package``).

Training items: the block's global image (+ mask), ONE local patch drawn at random (DECISION in
method.md), its 17 fractions, its pure flag/label, and one pure image (the global image of a
pure training block, drawn uniformly over them and always augmented) for the PSG branch.
Evaluation items: the global image and every local patch up to ``k_local`` (padded, with a
validity mask), as inference uses them.

Deterministic: every random draw comes from ``numpy.random.default_rng((seed, epoch, i))``,
so results do not depend on DataLoader workers, and resuming at epoch e replays epoch e exactly.

Rare classes (paper: Shenzhen's LCZ 1, 3, F, G were augmented): blocks whose dominant class is
rare in the training split are repeated ``rare_oversample`` times per epoch and augmented
(flip, rot90, scale, colour jitter); ``AugmentConfig.scope`` chooses rare only / all / none.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .classes import N_CLASSES
from .package import BlockRecord, Package

__all__ = [
    "AugmentConfig", "BlockDataset", "GlobalBatchSampler", "MEAN", "STD", "prepare_chips",
    "normalise", "rare_classes", "to_model_batch",
]

# DECISION: ImageNet statistics (timm's default for Swin), so that an ImageNet checkpoint (if one
# is ever supplied locally) sees the statistics it was trained with; random-init training is
# indifferent. After normalising, pixels outside the block are set back to 0 (= "no data" for
# the patch embedding) rather than to the normalised value of black.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _opt(default, help: str, **cli):
    """A field whose metadata declares its training option (lcz_model.train.add_train_arguments)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class AugmentConfig:
    flip: bool = _opt(True, "random horizontal and vertical flips")
    rot90: bool = _opt(True, "random rotations by multiples of 90 degrees")
    scale: tuple[float, float] | None = _opt((0.8, 1.2), "zoom range (crop/pad back to size)", cli=False)
    colour_jitter: float = _opt(0.2, "brightness/contrast/saturation jitter: factors in [1-j, 1+j]")
    scope: str = _opt("rare", "which training blocks are augmented: rare-dominant only, all or none",
                      choices=("rare", "all", "none"), flag="--augment-scope")
    rare_oversample: int = _opt(3, "copies per epoch of a rare-dominant training block")
    rare_classes: tuple[str, ...] | None = _opt(None, "rare class keys; None: found from the data",
                                                cli=False)
    rare_threshold: float = _opt(0.5, "a class is rare when it dominates fewer than this x the median "
                                      "count of blocks per dominant class")
    # DECISION: PSG pure images are augmented always, whatever ``scope`` says: the few pure
    # training blocks are drawn again for every item and, unaugmented, are memorised.
    # Evidence: docs/model-decisions.md.
    pure_always: bool = _opt(True, "augment PSG pure images always (off: only as --augment-scope says)")
    # DECISION: PSG pure images are drawn "uniform" (any pure training block, classes as often
    # as the data has them), not "balanced" (a class at random, then one of its pure blocks),
    # which put more mass on classes absent from a block. Evidence: docs/model-decisions.md.
    pure_sampling: str = _opt("uniform", "PSG pure images: uniform over pure training blocks, or "
                              "class-balanced", choices=("uniform", "balanced"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"] = list(self.scale) if self.scale else None
        d["rare_classes"] = list(self.rare_classes) if self.rare_classes else None
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "AugmentConfig":
        if d is None:
            return cls()
        d = dict(d)
        if d.get("scale") is not None:
            d["scale"] = tuple(d["scale"])
        if d.get("rare_classes") is not None:
            d["rare_classes"] = tuple(d["rare_classes"])
        return cls(**d)


def rare_classes(blocks: list[BlockRecord], threshold: float = 0.5) -> list[int]:
    """Classes that dominate some blocks but fewer than ``threshold`` x the median count
    (median over the classes that dominate at least one block)."""
    counts = np.bincount([b.dominant for b in blocks], minlength=N_CLASSES)
    present = counts[counts > 0]
    if len(present) == 0:
        return []
    med = float(np.median(present))
    return [c for c in range(N_CLASSES) if 0 < counts[c] < threshold * med]


# --------------------------------------------------------------------------------------------
# image helpers (uint8 HWC in, uint8 HWC out)


def _resize(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    if nearest:
        rs = Image.Resampling.NEAREST
    else:
        rs = Image.Resampling.BOX if img.shape[0] > size else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(img).resize((size, size), resample=rs))


def _geom(img: np.ndarray, flip_h: bool, flip_v: bool, k: int) -> np.ndarray:
    if flip_h:
        img = img[:, ::-1]
    if flip_v:
        img = img[::-1]
    if k:
        img = np.rot90(img, k)
    return np.ascontiguousarray(img)


def _zoom(img: np.ndarray, s: float, nearest: bool = False) -> np.ndarray:
    """Zoom by s about the centre, keeping the size (crop when s > 1, pad with 0 when s < 1)."""
    n = img.shape[0]
    m = max(1, int(round(n * s)))
    if m == n:
        return img
    z = _resize(img, m, nearest=nearest) if m < n else np.asarray(Image.fromarray(img).resize(
        (m, m), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR))
    if m > n:
        o = (m - n) // 2
        return np.ascontiguousarray(z[o:o + n, o:o + n])
    out = np.zeros_like(img)
    o = (n - m) // 2
    out[o:o + m, o:o + m] = z
    return out


def _jitter(img: np.ndarray, b: float, c: float, s: float) -> np.ndarray:
    valid = img.any(axis=-1, keepdims=True)
    x = img.astype(np.float32) * b
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + (x - grey) * s                                        # saturation
    m = x[valid[..., 0]].mean() if valid.any() else 0.0
    x = m + (x - m) * c                                              # contrast
    x = np.clip(x, 1, 255) * valid                                   # keep outside = 0
    return x.astype(np.uint8)


class _Aug:
    """One block's random transform, drawn once and applied to all of its images."""

    def __init__(self, cfg: AugmentConfig, rng: np.random.Generator):
        self.fh = cfg.flip and rng.random() < 0.5
        self.fv = cfg.flip and rng.random() < 0.5
        self.k = int(rng.integers(4)) if cfg.rot90 else 0
        self.s = float(rng.uniform(*cfg.scale)) if cfg.scale else 1.0
        j = cfg.colour_jitter
        self.col = tuple(float(v) for v in rng.uniform(1 - j, 1 + j, 3)) if j > 0 else None

    def __call__(self, img: np.ndarray, mask: bool = False) -> np.ndarray:
        img = _geom(img, self.fh, self.fv, self.k)
        if self.s != 1.0:
            img = _zoom(img, self.s, nearest=mask)
        if self.col is not None and not mask:
            img = _jitter(img, *self.col)
        return img

    def box(self, box: np.ndarray) -> np.ndarray:
        """A local patch's (y0, x0, y1, x1) in the global image after this transform of both
        (flips, rot90 as np.rot90, zoom about the centre: the patch keeps its size, its centre
        moves with the global image's zoom)."""
        y0, x0, y1, x1 = (float(v) for v in box)
        if self.fh:
            x0, x1 = 1 - x1, 1 - x0
        if self.fv:
            y0, y1 = 1 - y1, 1 - y0
        for _ in range(self.k % 4):                 # np.rot90: (y, x) -> (1 - x, y)
            y0, x0, y1, x1 = 1 - x1, y0, 1 - x0, y1
        if self.s != 1.0:
            cy, cx, hy, hx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
            cy, cx = 0.5 + self.s * (cy - 0.5), 0.5 + self.s * (cx - 0.5)
            y0, x0, y1, x1 = cy - hy, cx - hx, cy + hy, cx + hx
        return np.array([y0, x0, y1, x1], dtype=np.float32)


def normalise(img: np.ndarray, valid: np.ndarray | None = None) -> torch.Tensor:
    """uint8 HWC -> float32 CHW normalised; pixels outside ``valid`` (default: any channel > 0)
    are 0."""
    if valid is None:
        valid = img.any(axis=-1)
    x = (img.astype(np.float32) / 255.0 - MEAN) / STD
    x *= valid[..., None]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def prepare_chips(global_rgb: np.ndarray, mask: np.ndarray, local: list[np.ndarray], *,
                  img_size: int = 256, k_local: int = 8) -> dict:
    """Inference inputs for one block (exactly what evaluation items hold): global (3,S,S),
    mask (1,S,S), local (K,3,S,S) zero-padded to k_local, local_valid (K,) bool."""
    g = _resize(global_rgb, img_size)
    m = _resize(mask, img_size, nearest=True) > 127
    if not local:
        raise ValueError("block has no local patch")
    loc = [_resize(p, img_size) for p in local[:k_local]]
    out_local = torch.zeros(k_local, 3, img_size, img_size)
    valid = torch.zeros(k_local, dtype=torch.bool)
    for i, p in enumerate(loc):
        out_local[i] = normalise(p)
        valid[i] = True
    return {
        "global": normalise(g, m),
        "mask": torch.from_numpy(m[None].astype(np.float32)),
        "local": out_local,
        "local_valid": valid,
    }


# --------------------------------------------------------------------------------------------


class BlockDataset(Dataset):
    """Blocks of one split of a package.

    train=True: one random local patch per item, augmentation and rare-class oversampling,
    one pure image per item. Call ``set_epoch(e)`` before each epoch (the plan of which block
    each index means, and every random draw, depend on (seed, epoch)).
    train=False: all local patches (up to k_local), no augmentation, fixed order.
    """

    def __init__(self, package: Package, split: str | None = "train", *, img_size: int = 256,
                 train: bool | None = None, k_local: int = 8,
                 augment: AugmentConfig | None = None, seed: int = 0, cache: bool = True,
                 pure_source: list[BlockRecord] | None = None):
        self.package = package
        self.blocks = package.split(split)
        if not self.blocks:
            raise ValueError(f"package {package.path} has no blocks in split {split!r}")
        self.split = split
        self.img_size = int(img_size)
        self.train = (split == "train") if train is None else bool(train)
        self.k_local = int(k_local)
        self.augment = augment if augment is not None else AugmentConfig()
        self.seed = int(seed)
        self.cache = cache
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        if self.augment.rare_classes is not None:
            from .classes import index_of
            self.rare = sorted(index_of(k) for k in self.augment.rare_classes)
        else:
            self.rare = rare_classes(self.blocks, self.augment.rare_threshold)
        self._rare_set = set(self.rare)
        if self.augment.pure_sampling not in ("balanced", "uniform"):
            raise ValueError(f"pure_sampling must be 'balanced' or 'uniform', got "
                             f"{self.augment.pure_sampling!r}")
        # pure images for PSG: pure blocks of this split (training) or of pure_source
        src = self.blocks if pure_source is None else pure_source
        self.pure_blocks = [b for b in src if b.pure]
        self._pure_by_class: dict[int, list[BlockRecord]] = {}
        for b in self.pure_blocks:
            self._pure_by_class.setdefault(b.dominant, []).append(b)
        self._pure_classes = sorted(self._pure_by_class)
        self.epoch = 0
        self._plan = self._make_plan(0)

    # ---- plan / epochs
    def _make_plan(self, epoch: int) -> np.ndarray:
        n = len(self.blocks)
        if not self.train:
            return np.arange(n)
        rep = max(1, int(self.augment.rare_oversample)) if self.augment.scope != "none" else 1
        idx = []
        for i, b in enumerate(self.blocks):
            idx += [i] * (rep if b.dominant in self._rare_set else 1)
        rng = np.random.default_rng((self.seed, epoch, 0x5EED))
        return rng.permutation(np.array(idx, dtype=np.int64))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._plan = self._make_plan(self.epoch)

    def __len__(self) -> int:
        return len(self._plan)

    # ---- images
    def _img(self, path, kind: str) -> np.ndarray:
        key = (str(path), kind)
        arr = self._cache.get(key)
        if arr is None:
            if kind == "mask":
                arr = np.asarray(Image.open(path).convert("L"))
                arr = (_resize(arr, self.img_size, nearest=True) > 127).astype(np.uint8) * 255
            else:
                arr = _resize(np.asarray(Image.open(path).convert("RGB")), self.img_size)
            if self.cache:
                self._cache[key] = arr
        return arr

    def _augments(self, b: BlockRecord) -> bool:
        s = self.augment.scope
        return self.train and (s == "all" or (s == "rare" and b.dominant in self._rare_set))

    def _pure_item(self, rng: np.random.Generator):
        if not self._pure_classes:
            z = torch.zeros(3, self.img_size, self.img_size)
            return z, -1
        if self.augment.pure_sampling == "uniform":
            b = self.pure_blocks[int(rng.integers(len(self.pure_blocks)))]
            c = b.dominant
        else:
            c = self._pure_classes[int(rng.integers(len(self._pure_classes)))]
            members = self._pure_by_class[c]
            b = members[int(rng.integers(len(members)))]
        g = self._img(b.global_path, "rgb")
        m = self._img(b.mask_path, "mask")
        if self._augments(b) or (self.train and self.augment.pure_always):
            aug = _Aug(self.augment, rng)
            g, m = aug(g), aug(m, mask=True)
        return normalise(g, m > 127), c

    def __getitem__(self, i: int) -> dict:
        bi = int(self._plan[i])
        b = self.blocks[bi]
        fr = torch.from_numpy(b.fractions.astype(np.float32))
        item = {
            "index": bi,
            "fractions": fr,
            "pure_flag": torch.tensor(b.pure),
            "label": torch.tensor(b.dominant if b.pure else -1, dtype=torch.long),
        }
        if not self.train:
            g = self._img(b.global_path, "rgb")
            m = self._img(b.mask_path, "mask")
            loc = [self._img(p, "rgb") for p in b.local_paths[:self.k_local]]
            item.update(prepare_chips(g, m, loc, img_size=self.img_size,
                                      k_local=self.k_local))
            # each local patch's box in the global image (NaN: unknown or padding; msunet DCAF)
            boxes = torch.full((self.k_local, 4), float("nan"))
            if b.local_boxes:
                kb = torch.tensor(b.local_boxes[:self.k_local], dtype=torch.float32)
                boxes[:len(kb)] = kb
            item["local_boxes"] = boxes
            return item
        rng = np.random.default_rng((self.seed, self.epoch, i))
        g = self._img(b.global_path, "rgb")
        m = self._img(b.mask_path, "mask")
        j = int(rng.integers(len(b.local_paths)))
        p = self._img(b.local_paths[j], "rgb")
        box = (np.asarray(b.local_boxes[j], dtype=np.float32) if b.local_boxes
               else np.full(4, np.nan, dtype=np.float32))
        if self._augments(b):
            aug = _Aug(self.augment, rng)
            g, m, p = aug(g), aug(m, mask=True), aug(p)
            box = aug.box(box)
        item["global"] = normalise(g, m > 127)
        item["mask"] = torch.from_numpy((m[None] > 127).astype(np.float32))
        item["local"] = normalise(p)
        item["local_boxes"] = torch.from_numpy(box)
        item["pure"], pl = self._pure_item(rng)
        item["pure_label"] = torch.tensor(pl, dtype=torch.long)
        return item


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This rank's share of each global training batch (a DataLoader ``batch_sampler``).

    Global batch s holds the dataset positions [s*B, (s+1)*B) of the epoch's plan, exactly the
    batches one process draws with ``batch_size=B``; rank r of W takes the positions r, r+W,
    r+2W, ... of each global batch, so its batches hold about B/W items and the W ranks
    together see every position of the epoch exactly once (DistributedSampler would instead pad
    with repeated items and deal out the positions without regard to the global batches).
    Every rank gets the same number of batches, none empty: when the last global batch would
    hold fewer items than there are ranks, its items join the batch before it. Order and
    randomness come from the dataset's (seed, epoch) plan, so ``set_epoch`` only records the
    epoch (call the dataset's ``set_epoch`` too).
    """

    def __init__(self, n_items: int, batch_size: int, world_size: int = 1, rank: int = 0):
        if batch_size < world_size:
            raise ValueError(f"the global batch ({batch_size}) must hold at least one block per "
                             f"process ({world_size} processes)")
        if n_items < world_size:
            raise ValueError(f"{n_items} training items cannot feed {world_size} processes")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.n, self.batch_size, self.world_size, self.rank = n_items, batch_size, world_size, rank
        self.epoch = 0

    @staticmethod
    def global_batches(n_items: int, batch_size: int, world_size: int = 1) -> list[range]:
        """The epoch's global batches as ranges of plan positions (the same on every rank)."""
        out = [range(s, min(s + batch_size, n_items)) for s in range(0, n_items, batch_size)]
        if len(out) > 1 and len(out[-1]) < world_size:
            out[-2:] = [range(out[-2].start, n_items)]
        return out

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.global_batches(self.n, self.batch_size, self.world_size))

    def __iter__(self):
        for g in self.global_batches(self.n, self.batch_size, self.world_size):
            yield list(g[self.rank::self.world_size])


def to_model_batch(batch: dict, device=None, max_pure: int | None = None) -> dict:
    """A collated training batch -> the dict ``MSUNet.losses`` takes (global, local, fractions,
    pure (P,3,H,W), pure_labels (P,)), keeping only real pure images (the first ``max_pure``
    of them when given)."""
    keep = batch["pure_label"] >= 0
    if max_pure is not None:
        keep &= torch.cumsum(keep.long(), 0) <= max_pure
    out = {
        "global": batch["global"],
        "local": batch["local"],
        "fractions": batch["fractions"],
        "pure": batch["pure"][keep],
        "pure_labels": batch["pure_label"][keep],
        "mask": batch.get("mask"),
        "local_boxes": batch.get("local_boxes"),
    }
    if device is not None:
        out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
               for k, v in out.items()}
    return out
