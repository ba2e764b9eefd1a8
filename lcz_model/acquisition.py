"""Active-learning acquisition scores: which unlabelled blocks to annotate next.

numpy in, numpy out (the app's Celery task calls these on stored predictions):

    mean, samples = mc_predict(model, chips_iter, n_samples=10)     # (N,17), (S,N,17)
    s = score("bald", mean=mean, samples=samples)                   # (N,), higher = more useful
    pick = select_batch(s, mean, k=20)                              # indices into the N blocks

Scores (natural logarithms, 0 log 0 = 0; class order from ``lcz_model.classes``):
    entropy  H(p) = -sum_i p_i log p_i of the predicted split          in [0, ln 17]
    margin   1 - (p_(1) - p_(2)), top-two margin turned into a usefulness score  in [0, 1]
    bald     I = H(mean_s p^s) - mean_s H(p^s), the mutual information between the split and
             the model weights, from MC-dropout samples (Houlsby et al. 2011; Gal et al. 2017)
    random   uniform in [0, 1) from a seeded generator (the baseline)

Reading the predicted split p as a categorical distribution is a DECISION: the model's output is
an abundance vector, not a class posterior, so a mixed block that the model is *sure* is mixed
also scores high on entropy and margin. BALD does not have that confound: it measures how much
the MC-dropout samples disagree, whatever the split.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .classes import N_CLASSES

__all__ = ["STRATEGIES", "entropy", "margin", "bald", "random_scores", "score", "select_batch",
           "pairwise_distance", "mc_predict", "MC_MODES", "DEFAULT_DIVERSITY"]

STRATEGIES = frozenset({"bald", "entropy", "margin", "random"})

# DECISION: the diversity guard compares blocks by their predicted (MC-mean) split with the
# total-variation distance TV(a, b) = 0.5 sum |a_i - b_i| (the metric the agreement figures
# use), and skips a candidate within TV 0.1 of an already chosen block: two blocks whose
# predicted splits differ by less than 10 % of the block's area are near-duplicates to the model,
# and labelling both teaches it little more than labelling one. Embeddings (e.g. pooled
# encoder features) can be passed instead with metric="cosine".
DEFAULT_DIVERSITY = 0.1


def _as_probs(p, ndim: int, name: str) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    if a.shape[-1] != N_CLASSES:
        raise ValueError(f"{name}: last axis must hold the {N_CLASSES} classes, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf")
    return np.clip(a, 0.0, None)


def _entropy_last(p: np.ndarray) -> np.ndarray:
    """-sum p log p over the last axis with 0 log 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(np.where(p > 0, p * np.log(safe), 0.0), axis=-1)


def entropy(p) -> np.ndarray:
    """(N, 17) predicted splits -> (N,) Shannon entropy (nats): ln 17 for the uniform split, 0 for
    a pure one."""
    return _entropy_last(_as_probs(p, 2, "entropy"))


def margin(p) -> np.ndarray:
    """(N, 17) -> (N,) 1 - (p_(1) - p_(2)): 1 when the two largest fractions tie (most useful),
    0 for a pure split."""
    a = _as_probs(p, 2, "margin")
    top2 = np.sort(a, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def bald(samples) -> np.ndarray:
    """(S, N, 17) MC-dropout samples -> (N,) mutual information H(mean) - mean(H(sample)), >= 0
    (clipped at 0 against rounding); 0 when every sample agrees."""
    s = _as_probs(samples, 3, "bald")
    if s.shape[0] < 1:
        raise ValueError("bald: need at least one sample")
    mi = _entropy_last(s.mean(axis=0)) - _entropy_last(s).mean(axis=0)
    return np.clip(mi, 0.0, None)


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    """(n,) uniform scores in [0, 1), reproducible from ``seed``."""
    return np.random.default_rng(seed).random(int(n))


def score(strategy: str, mean=None, samples=None, seed: int = 0) -> np.ndarray:
    """Acquisition scores (N,) for one strategy (higher = annotate sooner).

    bald needs ``samples`` (S,N,17); entropy and margin use ``mean`` (N,17), or the mean of
    ``samples`` when ``mean`` is None; random needs either only for N.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    if strategy == "bald":
        if samples is None:
            raise ValueError("bald needs MC-dropout samples (S, N, 17)")
        return bald(samples)
    if mean is None and samples is not None:
        mean = np.asarray(samples, dtype=np.float64).mean(axis=0)
    if strategy == "random":
        if mean is None:
            raise ValueError("random needs mean or samples to know N")
        return random_scores(len(mean), seed)
    if mean is None:
        raise ValueError(f"{strategy} needs the predicted splits (mean) or samples")
    return entropy(mean) if strategy == "entropy" else margin(mean)


def pairwise_distance(a, b, metric: str = "tv") -> np.ndarray:
    """(n, D) x (m, D) -> (n, m) distances: "tv" = 0.5 sum |a - b| (splits), "cosine" =
    1 - cos(a, b) (embeddings; a zero vector is at distance 1 from everything)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "tv":
        return 0.5 * np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
    if metric == "cosine":
        na = np.linalg.norm(a, axis=1, keepdims=True)
        nb = np.linalg.norm(b, axis=1, keepdims=True)
        an = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
        bn = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
        return 1.0 - an @ bn.T
    raise ValueError(f"unknown metric {metric!r}; use 'tv' or 'cosine'")


def select_batch(scores, features=None, k: int = 20, *, diversity: float = DEFAULT_DIVERSITY,
                 metric: str = "tv", exclude=None) -> np.ndarray:
    """Pick ``k`` indices: greedy by score, with a diversity guard.

    Candidates are visited by descending score, ties broken by the lower index (deterministic;
    NaN scores count as -inf). A candidate whose feature vector lies within ``diversity`` of an
    already chosen one (``metric``: "tv" for predicted splits, "cosine" for embeddings) is
    skipped. ``diversity=0`` or ``features=None`` turns the guard off. ``exclude``: indices never
    chosen (e.g. blocks already labelled).

    DECISION: when the guard leaves fewer than k candidates, the batch is filled with the
    skipped candidates in score order (the caller asked for k blocks; a short batch would stall
    the campaign), so the guard only reorders, it never shrinks a batch below min(k, N).
    Returns an int64 array of indices in selection order.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    n = len(s)
    k = int(k)
    if k < 0:
        raise ValueError("k must be >= 0")
    s = np.where(np.isnan(s), -np.inf, s)
    allowed = np.ones(n, dtype=bool)
    if exclude is not None:
        ex = np.asarray(list(exclude) if not isinstance(exclude, np.ndarray) else exclude,
                        dtype=np.int64)
        allowed[ex] = False
    # descending score, then ascending index (lexsort: last key is primary)
    order = np.lexsort((np.arange(n), -s))
    order = order[allowed[order]]
    k = min(k, len(order))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    guard = features is not None and diversity > 0
    if not guard:
        return order[:k].astype(np.int64)
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] != n:
        raise ValueError(f"features must be (N, D) with N = {n} rows, got {f.shape}")
    chosen: list[int] = []
    skipped: list[int] = []
    fo = f[order]
    min_d = None                 # distance of each candidate (in `order`) to the chosen set
    for pos, i in enumerate(order):
        if len(chosen) >= k:
            break
        if chosen and min_d[pos] < diversity:
            skipped.append(int(i))
            continue
        chosen.append(int(i))
        d = pairwise_distance(fo, f[i][None], metric)[:, 0]
        min_d = d if min_d is None else np.minimum(min_d, d)
    if len(chosen) < k:
        chosen += skipped[:k - len(chosen)]
    return np.asarray(chosen, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# MC-dropout predictions


MC_MODES = ("head", "full")


def mc_predict(model, chips_iter: Iterable, n_samples: int = 10, batch_size: int = 16, *,
               device="cpu", k_local: int = 8, img_size: int | None = None,
               mode: str = "head", progress: bool = False, local_boxes: bool | None = None):
    """MC-dropout predictions for every block of ``chips_iter``.

    model: an MSUNet, a run folder or a checkpoint file. chips_iter: BlockChips (``load_chips``
    / ``cut_block_chips``) or dicts with global_rgb, mask, local, prepared exactly as
    ``lcz_model.predict.predict_blocks`` prepares them (``lcz_model.data.prepare_chips``).
    Returns (mean (N,17), samples (S,N,17)), float64, rows summing to 1; ``mean`` is the mean of
    the samples (the MC predictive split). Seed torch beforehand for repeatable samples.

    mode "head" (default): ``MSUNet.predict_mc``: the encoder and fusion run once per batch and
    only the head's dropout is sampled (cheap: ~1 forward pass).
    mode "full": ``n_samples`` complete forward passes with every stochastic layer on (head
    dropout and the encoder's stochastic depth, ``drop_path``), i.e. MC dropout over the whole
    network; S times the cost. DECISION: offered because head-only dropout (p=0.1 on the pooled
    features) is a narrow posterior: on the synthetic city its BALD scores barely tracked the
    blocks' actual error (evidence: docs/model-decisions.md). The model has no BatchNorm, and the
    endmember bank is only updated when pure labels are passed, so train-mode passes here
    change no state.
    """
    import torch

    from .predict import model_uses_local_boxes, prepared_batches

    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    if mode not in MC_MODES:
        raise ValueError(f"unknown MC mode {mode!r}; choose one of {MC_MODES}")
    if isinstance(model, torch.nn.Module):
        model = model.to(device)
    else:
        from .predict import load_model
        model, _ = load_model(model, device)
    model.eval()
    cfg = getattr(model, "cfg", None)
    size = int(img_size or getattr(cfg, "img_size", 256) or 256)
    # local patch boxes only for a run trained with them (None: as its checkpoint says)
    boxes_on = model_uses_local_boxes(model) if local_boxes is None else bool(local_boxes)
    out: list[np.ndarray] = []
    for g, loc, val, boxes in prepared_batches(chips_iter, img_size=size, k_local=k_local,
                                               batch_size=batch_size, device=device, progress=progress,
                                               desc="mc-predict", local_boxes=boxes_on):
        ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if torch.device(device).type == "cuda"
               else _null())
        with ctx:
            if mode == "head":
                s = model.predict_mc(g, loc, val, n_samples=n_samples, local_boxes=boxes)
            else:
                s = _full_mc(model, g, loc, val, n_samples, boxes)
        out.append(s.double().cpu().numpy())
    if not out:
        return np.zeros((0, N_CLASSES)), np.zeros((n_samples, 0, N_CLASSES))
    samples = np.concatenate(out, axis=1)
    samples = samples / samples.sum(-1, keepdims=True).clip(min=1e-12)
    mean = samples.mean(axis=0)
    return mean / mean.sum(-1, keepdims=True), samples


def _full_mc(model, g, loc, val, n_samples, boxes=None):
    import torch

    was = model.training
    model.train()                         # dropout + stochastic depth on
    try:
        with torch.inference_mode():
            return torch.stack([model(g, loc, local_mask=val, local_boxes=boxes)["abundances"].float()
                                for _ in range(n_samples)])
    finally:
        model.train(was)


def _null():
    import contextlib
    return contextlib.nullcontext()
