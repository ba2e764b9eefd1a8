"""Train MSU-Net (or one of its ablations) on a dataset package.

    python -m lcz_model.train --dataset var/packages/synthetic-v1 --out var/runs/full \
        --variant full --encoder swin_micro --epochs 10 --img-size 128 --device cpu

Per epoch: train with tqdm progress, evaluate on the VALIDATION split every ``--eval-every``
epochs and after the last (OA/OP on pure blocks; the MAE family on mixed and on all val blocks),
and select the epoch whose weights are kept by val MAE over the mixed val blocks (``SELECTION``).
The test split is read ONCE, after the last epoch, on the selected weights; nothing chooses on
it. A package without splits/val.txt gets a seeded val carved from train (``--val-fraction``,
said in the model card). Then write, each atomically (lcz_model.atomic),
  checkpoint.pt       model (the selected weights once finished; "last_model" keeps the last
                      epoch's when they differ, for --resume), optimizer, scheduler, GradNorm,
                      epoch, RNG states, history, the selection
  model_card.json     model_version (content hash of the selected weights), configs, dataset
                      checksum, val metrics per evaluation, the selection, the final test
                      metrics separately, the DECISIONs
  log.csv             one row per epoch (val_* columns; test_* only on the last row)
  learning_curve.png  training losses, val MAE/WD per epoch, the test once
``--resume`` continues after an interruption from the last completed epoch: an interrupted
then resumed run gives the same weights as an uninterrupted one (CPU).

Several processes: under ``torchrun --nproc-per-node N [--nnodes M ...] -m lcz_model.train ...``
(or ``manage.py train_msunet``) each process trains one replica wrapped in
DistributedDataParallel (NCCL on GPUs, gloo on CPU; lcz_model.distributed), one GPU per process.
``--batch-size`` stays the GLOBAL batch: each of the W processes takes 1/W of every global batch
(lcz_model.data.GlobalBatchSampler), so a step sees the same blocks as one process would, and
the W processes together see every item of the epoch's plan exactly once. GradNorm's task
weights are computed from losses and shared-layer gradients averaged over the processes
(lcz_model.gradnorm), and the endmember bank sums its class means over them (MSUNet), so every
process keeps the same weights and, with dropout and drop-path off, a step matches one
process on the same global batch up to float rounding. Evaluation splits the val (or test) blocks
over the processes and gathers the predictions; only rank 0 writes the run files and prints,
and every rank loads the checkpoint to resume. Without torchrun nothing of this is started.

Every training option is declared once, as a :class:`TrainConfig` field (or an
:class:`~lcz_model.data.AugmentConfig` field) whose metadata holds its help text;
:func:`add_train_arguments` derives the command-line options from them, for this module's CLI
and for the Django wrapper ``manage.py train_msunet`` alike, and :func:`config_from_args` reads
them back.
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
import random
import sys
import time
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .atomic import atomic_write_bytes
from .classes import KEYS
from . import distributed as distrib
from .data import AugmentConfig, BlockDataset, GlobalBatchSampler, to_model_batch
from .encoders import ENCODERS
from .package import Package, package_checksum, read_package
from .checkpoints import CARD_NAME, CHECKPOINT_NAME
from .predict import predict_dataset

__all__ = ["TrainConfig", "train", "weights_hash", "main", "VARIANTS", "DECISIONS",
           "add_train_arguments", "build_parser", "config_from_args", "make_gradnorm", "train_options",
           "parse_model_kwargs"]

VARIANTS = ("baseline", "psg", "psg_lsg", "full")
METRIC_KEYS = ("OA", "OP", "MAE", "WD", "MAE_B", "MAE_N")   # printed names
# How the kept weights are chosen; copied into the model card. Only val metrics are read.
SELECTION = ("val MAE (mixed blocks): the evaluated epoch with the lowest MAE over the mixed "
             "val blocks (all val blocks where val has no mixed block; ties: the earlier epoch); "
             "test evaluated once, after the last epoch, on those weights")
SELECTION_NO_VAL = "last epoch (no validation split: --val-fraction 0 and none in the package)"
# keys of lcz_model.metrics.evaluate_fractions kept per epoch (the card's final entry keeps all)
_EPOCH_KEYS = ("n_subset", "oa", "op", "oa_w", "mae", "wd", "mae_b", "mae_n",
               "soft_similarity", "per_class_mae")

# The choices method.md marks DECISION that this pipeline makes; copied into every model card.
# Their evidence: docs/model-decisions.md.
DECISIONS = [
    "Global image: the block's bounding box padded to a centred square, then resampled to the "
    "chip size (box filter down, bilinear up); outside the polygon = 0 (lcz_model.chips).",
    "Local patches: native-resolution crops tiled evenly over the block's bounding box, "
    "all-background crops dropped, at most 8 kept evenly spread; a block smaller than a crop "
    "gives one centred, zero-padded crop.",
    "Training draws one local patch per block per step at random; inference runs every local "
    "patch with the global image and averages the K abundance vectors.",
    "PSG pure images: the global images of pure training blocks, drawn uniformly over them "
    "(class-balanced draws raised the mass on absent rare classes), one per training block per "
    "step, always augmented (unaugmented they were memorised).",
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
    "encoder stage) took weight from the main task.",
    "GradNorm task weights: optimiser lr 1e-3 and a floor of 0.1 each (with GradNorm's "
    "defaults, lr 0.025 and floor 1e-3, the global task's weight hit the floor because the "
    "reconstruction loss plateaus).",
    "model_version = variant + the first 16 hex digits of sha256 over the weights (names, "
    "dtypes, shapes and bytes in sorted key order).",
    "Selection: the kept weights are those of the evaluated epoch with the lowest val MAE over "
    "mixed val blocks; test is evaluated once, after the last epoch, on them (a package without "
    "splits/val.txt: a seeded val carved from train).",
    "DCAF step 1: local tokens carry their position on the global token grid (the local patch's "
    "box in the global image), global tokens theirs, added to Q_l/K_l inputs (model_config "
    "local_positions; off reproduces the position-free fusion).",
]


def _opt(default=dataclasses.MISSING, help: str = "", *, default_factory=dataclasses.MISSING, **cli):
    """A TrainConfig field and its command-line option: ``help`` and, where needed, ``choices``,
    ``flag`` (default ``--name-with-dashes``, ``--no-name`` for a flag that is on by default),
    ``required``, ``metavar``, ``append`` (repeatable), ``cli=False`` (no option)."""
    return field(default=default, default_factory=default_factory, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    dataset: str = _opt("", "dataset package folder", required=True)
    out: str = _opt("", "run folder (checkpoint, card, log, curve)", required=True)
    variant: str = _opt("full", "MSU-Net or one of its ablations", choices=VARIANTS)
    encoder: str = _opt("swin_tiny", "encoder config (lcz_model.encoders)", choices=tuple(ENCODERS))
    epochs: int = _opt(30, "training epochs")
    batch_size: int = _opt(20, "training blocks per step")
    img_size: int = _opt(256, "side of the global, local and pure images fed to the model (px)")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N")
    resume: bool = _opt(False, "continue the run in --out from its last completed epoch")
    seed: int = _opt(0, "seed of every random draw")
    lr: float = _opt(1e-4, "AdamW learning rate")
    weight_decay: float = _opt(1e-2, "AdamW weight decay")
    betas: tuple[float, float] = _opt((0.9, 0.999), "AdamW betas", metavar=("BETA1", "BETA2"))
    warmup_epochs: float = _opt(1.0, "linear warm-up, in epochs")
    min_lr_ratio: float = _opt(0.01, "the cosine schedule's final learning rate, as a share of --lr")
    warmup_lr_ratio: float = _opt(0.01, "the warm-up's first learning rate, as a share of --lr")
    max_minutes: float | None = _opt(None, "stop (evaluate and save) once this much wall time has passed")
    # DECISION: GradNorm's alpha 0 (method.md: configurable, default 1.5): GradNorm measures the
    # last shared stage, but LSG reads every stage and its reconstruction loss plateaus, so with
    # 1.5 it took weight from the main task. Evidence: docs/model-decisions.md.
    gradnorm_alpha: float = _opt(0.0, "GradNorm's alpha (the paper's default 1.5; see TrainConfig)")
    gradnorm: bool = _opt(True, "GradNorm task weights (off: fixed equal task weights, a diagnostic)")
    # DECISION: GradNorm's weight optimiser at lr 1e-3 with a floor of 0.1 per weight (GradNorm's
    # own defaults starved the main task). Evidence: docs/model-decisions.md.
    gradnorm_lr: float | None = _opt(1e-3, "learning rate of GradNorm's task-weight optimiser")
    gradnorm_min_weight: float | None = _opt(0.1, "floor of each GradNorm task weight (weights sum "
                                                  "to the task count)")
    k_local: int = _opt(8, "local patches per block at evaluation")
    eval_every: int = _opt(1, "evaluate on the val split every N epochs (always after the last); the "
                              "test split is evaluated once, at the end")
    val_fraction: float = _opt(0.1, "for a package without splits/val.txt: the share of its train "
                                    "blocks carved (seeded by --seed) into a validation split; 0: none "
                                    "(then the last epoch is kept)")
    pure_fraction: float = _opt(1.0, "PSG pure images per step, as a share of the batch size")
    eval_batch_size: int = _opt(16, "blocks per evaluation batch")
    num_workers: int = _opt(0, "DataLoader worker processes")
    encoder_checkpoint: str | None = _opt(None, "local encoder weights (never downloaded)")
    init_from: str | None = _opt(None, "a run folder or checkpoint whose whole model (encoder, guidance "
                                       "branches, fusion, head, endmember bank) starts this run; the "
                                       "optimiser, schedule and GradNorm start fresh")
    augment: dict = _opt(default_factory=lambda: AugmentConfig().to_dict(),
                         help="augmentation (lcz_model.data.AugmentConfig; its options)", nested=AugmentConfig)
    model_kwargs: dict = _opt(default_factory=dict, help="an MSUNetConfig field, e.g. --model token_pool=all "
                              "--model local_gate_init=1.0 (repeatable)", flag="--model", append=True,
                              metavar="KEY=VALUE")
    verify_dataset: bool = _opt(False, "check the package's SHA256SUMS first")
    progress: bool = _opt(True, "progress bars")
    threads: int | None = _opt(None, "torch CPU threads (default: torch's); on a busy shared CPU use 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_any(cls, obj) -> "TrainConfig":
        """TrainConfig from a TrainConfig, a dict (e.g. a card's train_config) or parsed options
        (:func:`config_from_args`)."""
        if isinstance(obj, cls):
            return dataclasses.replace(obj)
        if isinstance(obj, (dict, argparse.Namespace)):
            return config_from_args(obj)
        raise TypeError(f"train() takes a TrainConfig, dict or argparse.Namespace, got "
                        f"{type(obj).__name__}")


# --------------------------------------------------------------------------------------------
# the options, derived from the fields

# Keys a Django management command adds to its options; not training options.
_IGNORED_OPTIONS = {"verbosity", "settings", "pythonpath", "traceback", "no_color",
                    "force_color", "skip_checks"}
_NESTED_PREFIX = "augment_"


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _base_type(hint):
    """float | None -> (float, ()); tuple[float, float] -> (float, (float, float))."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return args[0], args
    return hint, ()


def _add_option(parser, f: dataclasses.Field, hint, dest: str) -> None:
    meta, default = f.metadata, _default(f)
    typ, items = _base_type(hint)
    flag = meta.get("flag")
    kw = {"dest": dest, "help": meta["help"]}
    if typ is bool:
        flag = flag or ("--no-" if default else "--") + f.name.replace("_", "-")
        kw.update(action="store_false" if default else "store_true", default=default)
        if default:
            kw["help"] += " (on by default; this flag turns it off)"
    elif meta.get("append"):
        kw.update(action="append", default=None, metavar=meta.get("metavar"))
    else:
        kw.update(type=typ, choices=meta.get("choices"), metavar=meta.get("metavar", f.name.upper()))
        if items:
            kw["nargs"] = len(items)
        if meta.get("required"):
            kw["required"] = True
        else:
            kw["default"] = default
            if default is not None:
                kw["help"] += " (default: %(default)s)"
    if kw.get("choices"):
        kw.pop("metavar")
    parser.add_argument(flag or "--" + f.name.replace("_", "-"), **kw)


def train_options() -> list[tuple[dataclasses.Field, object, str]]:
    """(field, type, option dest) of every training option: TrainConfig's fields and, for
    ``augment``, AugmentConfig's; fields declared ``cli=False`` have none."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        nested = f.metadata.get("nested")
        if nested is not None:
            hints = typing.get_type_hints(nested)
            out += [(g, hints[g.name], _NESTED_PREFIX + g.name) for g in dataclasses.fields(nested)
                    if g.metadata.get("cli", True)]
        elif f.metadata.get("cli", True):
            out.append((f, typing.get_type_hints(TrainConfig)[f.name], f.name))
    return out


def add_train_arguments(parser) -> None:
    """Add every training option to an argparse parser (this module's CLI, `manage.py
    train_msunet`); defaults are the fields' defaults."""
    for f, hint, dest in train_options():
        _add_option(parser, f, hint, dest)


def config_from_args(args) -> TrainConfig:
    """TrainConfig from parsed options (an argparse.Namespace, or a dict such as a Django
    command's options or a model card's train_config). A Django command's own keys (verbosity,
    ...) are ignored and None means "the default"; --model KEY=VALUE items are parsed."""
    d = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    d = {k: v for k, v in d.items() if k not in _IGNORED_OPTIONS and v is not None}
    aug = dict(d.pop("augment", None) or {})
    for k in [k for k in d if k.startswith(_NESTED_PREFIX)]:
        aug[k[len(_NESTED_PREFIX):]] = d.pop(k)
    try:
        d["augment"] = AugmentConfig.from_dict(aug).to_dict()
    except TypeError as e:
        raise TypeError(f"unknown augmentation options: {e}") from None
    mk = d.get("model_kwargs")
    if isinstance(mk, (str, list, tuple)):
        d["model_kwargs"] = parse_model_kwargs([mk] if isinstance(mk, str) else mk)
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TypeError(f"unknown training options: {unknown}")
    if "betas" in d:
        d["betas"] = tuple(d["betas"])
    return TrainConfig(**d)


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




def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"].cpu())       # a checkpoint loaded onto a GPU moved it there
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _metrics(true: np.ndarray, pred: np.ndarray, full: bool = False) -> dict:
    """evaluate_fractions on mixed and on all blocks of a split (nan -> None for JSON)."""
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


# --------------------------------------------------------------------------------------------
# outputs


def _write_log_csv(path: Path, history: list[dict], tasks: list[str]) -> None:
    cols = ["epoch", "steps", "lr", "seconds", "partial", "train_loss"]
    cols += [f"loss_{t}" for t in tasks] + [f"weight_{t}" for t in tasks]
    for split in ("val", "test"):
        for subset in ("mixed", "all"):
            cols += [f"{split}_{k}_{subset}" for k in METRIC_KEYS]
    cols.append("selected_epoch")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for h in history:
        row = [h["epoch"], h["steps"], f"{h['lr']:.6g}", f"{h['seconds']:.1f}",
               int(h.get("partial", False)), _fmt(h["train_loss"])]
        row += [_fmt(h["losses"].get(t)) for t in tasks]
        row += [_fmt(h["task_weights"].get(t)) for t in tasks]
        for split in ("val", "test"):
            for subset in ("mixed", "all"):
                m = h.get(split, {}).get(subset, {})
                row += [_fmt(m.get(k.lower())) for k in METRIC_KEYS]
        row.append("" if h.get("selected_epoch") is None else h["selected_epoch"])
        w.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode(), fsync=True)


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
            ys = [h.get("val", {}).get(subset, {}).get(k.lower()) for h in history]
            ys = [np.nan if y is None else y for y in ys]
            a2.plot(ep, ys, ls, color=c, marker="o", label=f"{k} ({subset} val blocks)")
    last = history[-1] if history else {}
    sel = last.get("selected_epoch")
    for subset, mk in (("mixed", "*"), ("all", "x")):
        t = last.get("test", {}).get(subset, {}).get("mae")
        if t is not None and sel is not None:   # the test, once: the selected weights
            a2.plot([sel], [t], mk, color="k", markersize=10, label=f"test MAE ({subset}), once")
    a2.set_xlabel("epoch")
    a2.set_ylabel("val error (test: once, selected weights)")
    a2.legend(fontsize=8)
    a2.grid(alpha=.3)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue(), fsync=True)


def _card(cfg: TrainConfig, model, model_config: dict, history, dataset_info, tasks,
          version: str, whash: str, finished: bool, test_full: dict, selection: dict) -> dict:
    import timm

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
        # which split chose what: epochs (and any setting compared across runs) on val only;
        # test once, at the end, on the selected weights (these weights once finished)
        "selection": selection,
        "selected_epoch": selection.get("epoch"),
        "metrics_note": "per epoch 'val': OA/OP on pure val blocks; MAE, WD, MAE_B, MAE_N on mixed "
                        "and on all val blocks (see design/metrics.md). 'test' (the last entry and "
                        "test_metrics_of_these_weights): the test split, evaluated once after the "
                        "last epoch on the selected weights",
        "test_metrics_of_these_weights": test_full,
        "metrics": [{"epoch": h["epoch"], "partial": h.get("partial", False),
                     "train_loss": h["train_loss"], "losses": h["losses"],
                     "task_weights": h["task_weights"], "val": h.get("val", {}),
                     "selected_epoch": h.get("selected_epoch"), "test": h.get("test", {})}
                    for h in history],
        "decisions": DECISIONS,
        "software": {"torch": torch.__version__, "timm": timm.__version__,
                     "python": sys.version.split()[0]},
        "checkpoint": CHECKPOINT_NAME,
    }


# --------------------------------------------------------------------------------------------
# the steps of a training run


def make_gradnorm(tasks, model, cfg: TrainConfig, distributed: bool = False):
    """GradNorm over ``tasks`` on the model's last shared layer, as ``cfg`` sets it up; None for
    a single task or with ``cfg.gradnorm`` off. ``distributed``: the model is one of several DDP
    replicas (losses and shared gradients are averaged over them; lcz_model.gradnorm)."""
    if len(tasks) < 2 or not cfg.gradnorm:
        return None
    from .gradnorm import GradNorm

    shared = model.shared_layer()
    params = list(shared.parameters()) if isinstance(shared, torch.nn.Module) else list(shared)
    kw = {"alpha": cfg.gradnorm_alpha, "distributed": distributed}
    if cfg.gradnorm_lr is not None:
        kw["lr"] = cfg.gradnorm_lr
    if cfg.gradnorm_min_weight is not None:
        kw["min_weight"] = cfg.gradnorm_min_weight
    return GradNorm(tasks, params, **kw)


def _gn_weights(gn, tasks) -> dict:
    return {t: 1.0 for t in tasks} if gn is None else {t: float(gn.weights[t]) for t in tasks}


@dataclass
class _Data:
    pkg: Package
    info: dict                     # the model card's "dataset"
    train: BlockDataset | None = None
    val: BlockDataset | None = None       # None: no validation split (the last epoch is kept)
    test: BlockDataset | None = None
    true_val: np.ndarray | None = None
    true_test: np.ndarray | None = None


class _Losses(torch.nn.Module):
    """``model.losses`` as a forward, so that DistributedDataParallel wraps (and hooks) the
    forward pass that builds the losses."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model.losses(batch)


@dataclass
class _State:
    model: torch.nn.Module             # the bare model (what is saved, evaluated, GradNorm'd)
    model_config: dict
    tasks: list[str]
    opt: torch.optim.Optimizer
    sched: object
    gn: object = None
    history: list[dict] = field(default_factory=list)
    epoch: int = 0                 # the last completed epoch
    step: int = 0
    dist: distrib.Dist = field(default_factory=distrib.Dist)
    ddp: torch.nn.Module | None = None  # the DDP-wrapped _Losses when world_size > 1
    # the selection so far: {"rule", "metric", "epoch", "score", "candidates"}; only val is read
    selection: dict = field(default_factory=dict)
    selected_state: dict | None = None  # CPU copy of the selected epoch's weights
    last_state: dict | None = None      # the last epoch's weights once the selected ones are loaded

    def losses(self, mb: dict) -> dict:
        return self.ddp(mb) if self.ddp is not None else self.model.losses(mb)


def _check(cfg: TrainConfig) -> None:
    if cfg.variant not in VARIANTS:
        raise ValueError(f"unknown variant {cfg.variant!r}; choose one of {VARIANTS}")
    if not cfg.dataset:
        raise ValueError("a dataset package is required (--dataset PKG)")
    if not cfg.out:
        raise ValueError("an output folder is required (--out RUN)")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError("epochs and batch size must be at least 1")


def _read_data(cfg: TrainConfig) -> _Data:
    pkg = read_package(cfg.dataset, verify=cfg.verify_dataset)
    if not pkg.split("train") or not pkg.split("test"):
        raise ValueError(f"{cfg.dataset}: train and test must hold blocks (train "
                         f"{pkg.meta['counts']['train']}, test {pkg.meta['counts']['test']})")
    if pkg.meta["counts"]["val"]:
        val_source = "the package's splits/val.txt"
    else:
        carved = pkg.carve_val(cfg.val_fraction, cfg.seed)   # in memory; files unchanged
        val_source = (f"carved from the package's train split (it has no splits/val.txt): "
                      f"{len(carved)} blocks, --val-fraction {cfg.val_fraction:g}, seed {cfg.seed}"
                      if carved else "none (no splits/val.txt and nothing carved from train)")
    info = {"path": str(Path(cfg.dataset).resolve()), "name": pkg.meta["name"],
            "checksum_sha256": package_checksum(cfg.dataset),
            "counts": pkg.meta["counts"], "n_pure": pkg.meta["n_pure"], "val_source": val_source,
            "local_boxes": bool(pkg.meta.get("has_local_boxes")),
            "chip_size": _chip_size(pkg)}
    return _Data(pkg, info)


def _chip_size(pkg) -> int | None:
    """The package's chip side in pixels (its first local crop's): a local crop covers this many
    native pixels, so live inference must cut chips of the same size (lcz_model.predict.chip_size)."""
    from PIL import Image

    for b in pkg.blocks:
        if b.local_paths:
            with Image.open(b.local_paths[0]) as im:
                return int(im.size[0])
    return None


def _resume_checkpoint(cfg: TrainConfig, ck_path: Path, data: _Data,
                       device: torch.device | str = "cpu") -> dict:
    """The checkpoint to resume (loaded onto ``device``: every rank loads it onto its own),
    after checking it belongs to these settings and data."""
    run = ck_path.parent
    ck = torch.load(ck_path, map_location=device, weights_only=False)
    old = TrainConfig.from_any(ck["train_config"])
    for k in ("variant", "encoder", "img_size", "batch_size", "seed", "epochs", "lr", "val_fraction"):
        if getattr(old, k) != getattr(cfg, k):
            raise ValueError(f"--resume: {k} was {getattr(old, k)!r} in {run}, now "
                             f"{getattr(cfg, k)!r}; resume with the same settings")
    if ck["dataset"]["checksum_sha256"] != data.info["checksum_sha256"]:
        raise ValueError(f"--resume: the dataset package differs from the one {run} was "
                         f"trained on (checksum {ck['dataset']['checksum_sha256'][:12]} vs "
                         f"{data.info['checksum_sha256'][:12]})")
    return ck


def _datasets(cfg: TrainConfig, data: _Data) -> None:
    data.train = BlockDataset(data.pkg, "train", img_size=cfg.img_size,
                              augment=AugmentConfig.from_dict(cfg.augment), seed=cfg.seed)
    if data.pkg.split("val"):
        data.val = BlockDataset(data.pkg, "val", img_size=cfg.img_size, train=False,
                                k_local=cfg.k_local)
        data.true_val = data.pkg.fractions("val")
    data.test = BlockDataset(data.pkg, "test", img_size=cfg.img_size, train=False,
                             k_local=cfg.k_local)
    data.true_test = data.pkg.fractions("test")
    data.info["rare_classes_augmented"] = [KEYS[c] for c in data.train.rare]
    data.info["train_items_per_epoch"] = len(data.train)


def _build(cfg: TrainConfig, data: _Data, device: torch.device, ck: dict | None,
           dd: distrib.Dist | None = None) -> _State:
    """Model, optimiser, schedule and GradNorm; restored from ``ck`` when resuming; wrapped in
    DistributedDataParallel when ``dd`` has several processes."""
    from timm.scheduler import CosineLRScheduler

    from .msunet import build_model

    mkw = dict(cfg.model_kwargs)
    if cfg.encoder_checkpoint:
        mkw["encoder_checkpoint"] = cfg.encoder_checkpoint
    model = build_model(cfg.variant, encoder=cfg.encoder, img_size=cfg.img_size, **mkw)
    if cfg.init_from and ck is None:
        _init_from(model, cfg.init_from)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                            weight_decay=cfg.weight_decay)
    dd = dd or distrib.Dist(device=device)
    steps_per_epoch = len(GlobalBatchSampler.global_batches(len(data.train), cfg.batch_size,
                                                            dd.world_size))
    total = cfg.epochs * steps_per_epoch
    warm = min(int(round(cfg.warmup_epochs * steps_per_epoch)), max(total - 1, 0))
    sched = CosineLRScheduler(opt, t_initial=total, lr_min=cfg.lr * cfg.min_lr_ratio,
                              warmup_t=warm, warmup_lr_init=cfg.lr * cfg.warmup_lr_ratio,
                              warmup_prefix=True, t_in_epochs=False)
    st = _State(model, model.cfg.to_dict(), list(model.tasks), opt, sched, dist=dd)
    st.selection = {"rule": SELECTION if data.val is not None else SELECTION_NO_VAL,
                    "split": "val" if data.val is not None else None,
                    "val_source": data.info["val_source"], "metric": None, "epoch": None,
                    "score": None, "candidates": []}
    if ck is not None:
        # a finished run keeps the selected weights as "model" and the last epoch's as
        # "last_model": training continues from the last epoch's
        model.load_state_dict(ck.get("last_model") or ck["model"])
        st.selection = ck.get("selection") or st.selection
        sel = ck.get("selected_model")
        if sel is None and st.selection.get("epoch") is not None and (
                "last_model" in ck or st.selection["epoch"] == ck["epoch"]):
            sel = ck["model"]
        st.selected_state = _cpu_copy(sel) if sel is not None else None
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        st.tasks, st.history = ck["tasks"], ck["history"]
        st.epoch, st.step = ck["epoch"], ck["step"]
        _set_rng_state(ck["rng"])
    st.gn = make_gradnorm(st.tasks, model, cfg, distributed=dd.enabled)
    if st.gn is not None and ck is not None and ck.get("gradnorm") is not None:
        st.gn.load_state_dict(ck["gradnorm"])
    if dd.enabled:
        # Every parameter takes part in every step, except the PSG head when the training
        # split has no pure block (no pure image in any step): only then does DDP need
        # find_unused_parameters (an extra graph traversal per step). GradNorm's per-task
        # torch.autograd.grad calls (explicit inputs) do not fire DDP's hooks, so the one
        # backward DDP reduces is that of sum_i w_i L_i; no no_sync or static graph is needed.
        # DDP broadcasts rank 0's weights and buffers here.
        unused = model.cfg.has_psg and not data.train.pure_blocks
        st.ddp = torch.nn.parallel.DistributedDataParallel(
            _Losses(model), device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused)
    return st


def _init_from(model, source) -> None:
    """Load a whole-model warm start (the selected weights of a run or checkpoint). The source
    must be the same architecture: a missing or mis-shaped tensor is an error, not a silent
    partial load."""
    from .checkpoints import load_checkpoint

    state = load_checkpoint(source)["model"]
    own = model.state_dict()
    bad = sorted(k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if bad or missing or unexpected:
        raise ValueError(f"--init-from {source}: not this model's architecture (shape differs: {bad[:3]}, "
                         f"missing: {missing[:3]}, unexpected: {unexpected[:3]})")
    model.load_state_dict(state)


def _seed_rank_epoch(cfg: TrainConfig, st: _State, epoch: int) -> None:
    """Several processes: torch's RNG (dropout, drop-path) seeded from (seed, epoch, rank) at
    each epoch, so ranks draw different masks and a resumed epoch draws the same ones whatever
    was saved. (Data draws come from the dataset's (seed, epoch, item) plan anyway.)"""
    if st.dist.enabled:
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, st.dist.rank])
                              .generate_state(1)[0]))


def _train_epoch(cfg: TrainConfig, st: _State, data: _Data, device: torch.device, epoch: int,
                 deadline: float | None) -> dict | None:
    """One pass over the training items; the epoch's record (without test metrics), or None
    when the deadline passed before its first step. ``partial``: stopped by the deadline."""
    from tqdm import tqdm

    t0 = time.monotonic()
    dd = st.dist
    (st.ddp or st.model).train()
    data.train.set_epoch(epoch)
    _seed_rank_epoch(cfg, st, epoch)
    # order and augmentation come from the dataset's (seed, epoch) plan: no shuffling here;
    # each rank takes its 1/W of every global batch of cfg.batch_size items
    sampler = GlobalBatchSampler(len(data.train), cfg.batch_size, dd.world_size, dd.rank)
    sampler.set_epoch(epoch)
    dl = torch.utils.data.DataLoader(data.train, batch_sampler=sampler,
                                     num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    # PSG pure images per rank: this rank's share of the global step's (all ranks must keep
    # some or all keep none: the endmember bank's update is a collective)
    max_pure = max(1, math.ceil(cfg.pure_fraction * cfg.batch_size / dd.world_size))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    sums = dict.fromkeys(st.tasks, 0.0)
    total_loss, nb, partial = 0.0, 0, False
    bar = tqdm(dl, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
               disable=not (cfg.progress and dd.main), mininterval=2.0, dynamic_ncols=True,
               file=sys.stderr)
    for batch in bar:
        # ranks stop together: any rank past the deadline stops them all
        if deadline is not None and distrib.all_reduce_max(time.monotonic() > deadline):
            partial = True
            break
        mb = to_model_batch(batch, device, max_pure=max_pure)
        with autocast:
            losses = st.losses(mb)
        losses = {t: losses[t].float() for t in st.tasks}
        st.opt.zero_grad(set_to_none=True)
        if st.gn is not None:
            loss_val = float(st.gn.backward(losses))
        else:
            loss = sum(losses.values())
            loss.backward()
            loss_val = float(loss.detach())
        st.opt.step()
        st.step += 1
        st.sched.step_update(st.step)
        nb += 1
        total_loss += loss_val
        for t in st.tasks:
            sums[t] += float(losses[t].detach())
        bar.set_postfix(loss=f"{total_loss / nb:.4f}", lr=f"{st.opt.param_groups[0]['lr']:.2e}")
    bar.close()
    if nb == 0:
        return None
    # the epoch's losses over the whole global batches (ranks' shard means averaged)
    total_loss, *task_sums = distrib.all_reduce_mean([total_loss] + [sums[t] for t in st.tasks])
    sums = dict(zip(st.tasks, task_sums))
    return {"epoch": epoch, "steps": nb, "lr": float(st.opt.param_groups[0]["lr"]),
            "seconds": time.monotonic() - t0, "partial": partial,
            "train_loss": total_loss / nb, "losses": {t: sums[t] / nb for t in st.tasks},
            "task_weights": _gn_weights(st.gn, st.tasks)}


def _evaluate(cfg: TrainConfig, st: _State, data: _Data, device: torch.device,
              split: str) -> dict:
    """Every metric on one split, "val" (per epoch, for the selection) or "test" (once, at the
    end), on mixed and all blocks. Several processes: rank r predicts blocks r, r+W, ...; the
    predictions are gathered and every rank computes the same metrics from all of them."""
    ds, true = (data.val, data.true_val) if split == "val" else (data.test, data.true_test)
    dd = st.dist
    if not dd.enabled:
        preds = predict_dataset(st.model, ds, cfg.eval_batch_size, device)
        return _metrics(true, preds, full=True)
    mine = list(range(dd.rank, len(ds), dd.world_size))
    part = (predict_dataset(st.model, torch.utils.data.Subset(ds, mine),
                            cfg.eval_batch_size, device) if mine else np.zeros((0, len(KEYS))))
    preds = np.zeros((len(ds), len(KEYS)))
    for idx, p in distrib.all_gather_objects((mine, part)):
        preds[idx] = p
    return _metrics(true, preds, full=True)


def _cpu_copy(state_dict: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


def _select(st: _State, epoch: int, val: dict) -> None:
    """Update the selection with this epoch's val metrics (the only metrics it reads): the
    lowest val MAE over mixed blocks (all val blocks when val has none); ties keep the earlier
    epoch. No val split: the last epoch."""
    sel = st.selection
    if st.selection.get("split") is None:           # no validation split: the last epoch
        sel.update(epoch=epoch, score=None)
        st.selected_state = None
        return
    if not val:
        return
    metric = "mae_mixed" if val.get("mixed", {}).get("mae") is not None else "mae_all"
    score = val["mixed" if metric == "mae_mixed" else "all"].get("mae")
    if score is None:
        return
    sel["candidates"] = sel.get("candidates", []) + [epoch]
    if sel.get("score") is None or score < sel["score"]:
        sel.update(epoch=epoch, score=float(score), metric=f"val {metric}")
        st.selected_state = _cpu_copy(st.model.state_dict())


def _load_selected(st: _State) -> None:
    """Before the test: put the selected epoch's weights into the model (the last epoch's kept
    in ``last_state`` for the checkpoint)."""
    if st.selected_state is None or st.selection.get("epoch") in (None, st.epoch):
        return
    st.last_state = _cpu_copy(st.model.state_dict())
    st.model.load_state_dict(st.selected_state)


def _write_run_files(cfg: TrainConfig, st: _State, data: _Data, run: Path, finished: bool,
                     test_full: dict) -> None:
    """checkpoint.pt, model_card.json, log.csv and learning_curve.png, each atomically."""
    sd = st.model.state_dict()             # the selected weights once finished, else the last
    whash = weights_hash(sd)
    version = f"msunet-{cfg.variant}-{whash[:16]}"
    buf = io.BytesIO()
    torch.save({
        "format": "lcz_model.train/1",
        "model": sd, "model_config": st.model_config, "train_config": cfg.to_dict(),
        "optimizer": st.opt.state_dict(), "scheduler": st.sched.state_dict(),
        "gradnorm": st.gn.state_dict() if st.gn is not None else None,
        "tasks": st.tasks, "epoch": st.epoch, "step": st.step, "rng": _rng_state(),
        "history": st.history, "dataset": data.info, "model_version": version,
        "weights_sha256": whash, "finished": finished, "selection": st.selection,
        # resume needs the last epoch's weights and the selected ones: whichever "model" is not
        **({"last_model": st.last_state} if finished and st.last_state is not None else {}),
        **({"selected_model": st.selected_state} if not finished and st.selected_state is not None
           and st.selection.get("epoch") != st.epoch else {}),
    }, buf)
    atomic_write_bytes(run / CHECKPOINT_NAME, buf.getvalue(), fsync=True)
    card = _card(cfg, st.model, st.model_config, st.history, data.info, st.tasks, version, whash,
                 finished, test_full, st.selection)
    card["world_size"] = st.dist.world_size     # processes that trained it (torchrun)
    atomic_write_bytes(run / CARD_NAME, (json.dumps(card, indent=2, sort_keys=False) + "\n").encode(),
                       fsync=True)
    _write_log_csv(run / "log.csv", st.history, st.tasks)
    _write_curve(run / "learning_curve.png", st.history, st.tasks,
                 f"{cfg.variant} / {cfg.encoder} / {data.pkg.meta['name']}")


def train(args_or_config, *, callbacks: list[Callable] | None = None) -> Path:
    """Train per ``args_or_config`` (TrainConfig, dict or argparse.Namespace); returns the run
    folder. ``callbacks`` are called as ``cb(epoch, record)`` after each epoch's outputs are
    written (raising from one stops training, like an interruption)."""
    cfg = TrainConfig.from_any(args_or_config)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    dd = None
    try:
        _check(cfg)
        # under torchrun: join the process group (the device is this rank's GPU); else nothing
        dd = distrib.setup(cfg.device)
        return _train(cfg, callbacks, dd)
    finally:
        if dd is not None:
            distrib.cleanup(dd)
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, callbacks, dd: distrib.Dist) -> Path:
    run = Path(cfg.out)
    ck_path = run / CHECKPOINT_NAME
    # every rank checks before the first collective (DDP's set-up), so before rank 0 writes
    if ck_path.exists() and not cfg.resume:
        raise FileExistsError(f"{run} already holds a checkpoint; pass --resume to continue it "
                              f"or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    device = dd.device
    if cfg.batch_size < dd.world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} (the global batch) is smaller than the "
                         f"{dd.world_size} processes")
    deadline = (time.monotonic() + cfg.max_minutes * 60) if cfg.max_minutes else None
    say = (lambda msg: print(msg, file=sys.stderr)) if dd.main else (lambda msg: None)

    data = _read_data(cfg)
    ck = (_resume_checkpoint(cfg, ck_path, data, device) if cfg.resume and ck_path.exists()
          else None)
    _seed_all(cfg.seed)
    _datasets(cfg, data)
    st = _build(cfg, data, device, ck, dd)
    if dd.enabled:
        say(f"{dd.world_size} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), "
            f"{len(data.train)} training items per epoch, global batch {cfg.batch_size} "
            f"(~{cfg.batch_size / dd.world_size:g} per process)")
    if ck is not None:
        say(f"resuming {run} at epoch {st.epoch + 1}/{cfg.epochs}")
        if st.epoch >= cfg.epochs:
            say(f"{run}: all {cfg.epochs} epochs already done")
            return run

    for epoch in range(st.epoch + 1, cfg.epochs + 1):
        rec = _train_epoch(cfg, st, data, device, epoch, deadline)
        if rec is None:
            break
        finished = epoch == cfg.epochs or rec["partial"]
        st.epoch = epoch
        val_full = _evaluate(cfg, st, data, device, "val") if data.val is not None and (
            finished or epoch % max(1, cfg.eval_every) == 0) else {}
        rec["val"] = {sub: {k: v for k, v in m.items() if k in _EPOCH_KEYS}
                      for sub, m in val_full.items()}
        _select(st, epoch, rec["val"])
        rec["selected_epoch"] = st.selection.get("epoch")
        test_full = {}
        if finished:                   # the test, once: on the selected weights
            _load_selected(st)
            test_full = _evaluate(cfg, st, data, device, "test")
        rec["test"] = {sub: {k: v for k, v in m.items() if k in _EPOCH_KEYS}
                       for sub, m in test_full.items()}
        st.history.append(rec)
        if dd.main:                    # one writer; the others wait until the files are there
            _write_run_files(cfg, st, data, run, finished, test_full)
        distrib.barrier()
        mx, al = rec["val"].get("mixed", {}), rec["val"].get("all", {})
        say(f"epoch {epoch}: loss {rec['train_loss']:.4f} | val mixed MAE "
            f"{_f(mx.get('mae'))} WD {_f(mx.get('wd'))} | all MAE {_f(al.get('mae'))} WD "
            f"{_f(al.get('wd'))} | OA {_f(al.get('oa'))} | {rec['seconds']:.0f}s"
            + (" (stopped: --max-minutes reached)" if rec["partial"] else ""))
        if finished:
            tm, ta = rec["test"].get("mixed", {}), rec["test"].get("all", {})
            say(f"test (once, weights of epoch {rec['selected_epoch']}, selected by "
                f"{st.selection.get('metric') or st.selection['rule']}): mixed MAE "
                f"{_f(tm.get('mae'))} WD {_f(tm.get('wd'))} | all MAE {_f(ta.get('mae'))} WD "
                f"{_f(ta.get('wd'))} | OA {_f(ta.get('oa'))}")
        for cb in callbacks or ():
            cb(epoch, rec)
        if rec["partial"]:
            break
    return run


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m lcz_model.train",
                                 description="Train MSU-Net on a dataset package.")
    add_train_arguments(ap)
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
    env = distrib.torchrun_env()
    if env is None or env[0] == 0:     # under torchrun, rank 0 reports
        print(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
