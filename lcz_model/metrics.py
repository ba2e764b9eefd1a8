"""Model-accuracy metrics for LCZ abundances, exactly as ``shared/design/metrics.md`` defines them.

Inputs are numpy arrays of abundance vectors, shape (N, 17) in ``lcz_model.classes`` order (rows
of ``true`` sum to 1); outputs are plain floats (or arrays for per-class figures).
M = 17 classes.

- A block is *pure* when one class has abundance 1 (``true.max() >= 1 - PURE_TOL``).
- OA: on pure blocks, the share whose predicted argmax equals the label (no true negatives).
- OP: on pure blocks, per-class precision TP_c / (TP_c + FP_c), macro-averaged over the classes
  that occur among the pure blocks' labels. DECISION: a class that occurs but is never predicted
  has precision 0 (TP + FP = 0); classes predicted but absent from the labels are not averaged.
- MAE  = mean_blocks (1/M) sum_i |t_i - p_i|
- WD   = mean_blocks (1/M) sum_i t_i |t_i - p_i|
- MAE_B = mean_blocks (1/10) sum_{i built} |t_i - p_i|;  MAE_N likewise over the 7 natural classes.
- OA_w (WUDAPT): sum(W * CM) / sum(CM), CM the confusion matrix of dominant classes on pure
  blocks and W the WUDAPT similarity matrix; ``soft_similarity`` = mean_blocks t^T W p.
Functions return ``nan`` when their subset is empty.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lcz_model.classes import BUILT_INDICES, KEYS, N_CLASSES, NATURAL_INDICES, similarity_matrix

PURE_TOL = 1e-6

__all__ = ["is_pure", "oa", "op", "mae", "wd", "mae_b", "mae_n", "oa_weighted", "soft_similarity",
           "oa_urban", "oa_built_natural", "per_class_mae", "r2_per_class", "dominant_confusion",
           "evaluate_fractions"]


def _check(true, pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.ndim == 1 and t.shape[0] == N_CLASSES:
        t = t[None]
    if p.ndim == 1 and p.shape[0] == N_CLASSES:
        p = p[None]
    if t.ndim != 2 or t.shape[1] != N_CLASSES:
        raise ValueError(f"true must have shape (N, {N_CLASSES}); got {t.shape}")
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} differs from true shape {t.shape}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("abundances contain NaN or inf")
    return t, p


def is_pure(true, tol: float = PURE_TOL) -> np.ndarray:
    """(N,) bool: one class has abundance 1."""
    t = np.asarray(true, dtype=np.float64)
    return t.max(axis=1) >= 1.0 - tol


def _pure_labels(true, pred):
    t, p = _check(true, pred)
    m = is_pure(t)
    return t[m].argmax(1), p[m].argmax(1)


def oa(true, pred) -> float:
    """Overall accuracy of the argmax on pure blocks."""
    y, yhat = _pure_labels(true, pred)
    return float(np.mean(y == yhat)) if y.size else float("nan")


def op(true, pred) -> float:
    """Macro precision on pure blocks over the classes that occur among the labels."""
    y, yhat = _pure_labels(true, pred)
    if not y.size:
        return float("nan")
    precisions = []
    for c in np.unique(y):
        predicted = yhat == c
        tp = np.sum(predicted & (y == c))
        precisions.append(tp / predicted.sum() if predicted.any() else 0.0)
    return float(np.mean(precisions))


def _mean_abs(t, p, idx, denom) -> float:
    if not t.shape[0]:
        return float("nan")
    return float(np.mean(np.abs(t[:, idx] - p[:, idx]).sum(axis=1) / denom))


def mae(true, pred) -> float:
    t, p = _check(true, pred)
    return _mean_abs(t, p, slice(None), N_CLASSES)


def wd(true, pred) -> float:
    """Weighted difference: errors weighted by the true abundance."""
    t, p = _check(true, pred)
    if not t.shape[0]:
        return float("nan")
    return float(np.mean((t * np.abs(t - p)).sum(axis=1) / N_CLASSES))


def mae_b(true, pred) -> float:
    t, p = _check(true, pred)
    return _mean_abs(t, p, list(BUILT_INDICES), len(BUILT_INDICES))


def mae_n(true, pred) -> float:
    t, p = _check(true, pred)
    return _mean_abs(t, p, list(NATURAL_INDICES), len(NATURAL_INDICES))


def per_class_mae(true, pred) -> np.ndarray:
    """(17,) mean |t_c - p_c| over blocks."""
    t, p = _check(true, pred)
    if not t.shape[0]:
        return np.full(N_CLASSES, np.nan)
    return np.abs(t - p).mean(axis=0)


def r2_per_class(true, pred) -> np.ndarray:
    """(17,) coefficient of determination per class, 1 - SS_res / SS_tot (nan where the class's
    true abundance is constant over the blocks)."""
    t, p = _check(true, pred)
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0) if t.shape[0] else np.zeros(N_CLASSES)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - ss_res / ss_tot
    r2[ss_tot <= 0] = np.nan
    return r2


def dominant_confusion(true, pred) -> np.ndarray:
    """(17, 17) counts: rows = true dominant class (argmax), columns = predicted argmax."""
    t, p = _check(true, pred)
    cm = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(cm, (t.argmax(1), p.argmax(1)), 1)
    return cm


def oa_weighted(true, pred, W: np.ndarray | None = None) -> float:
    """WUDAPT OA_w = sum(W * CM) / sum(CM) with CM the dominant-class confusion on pure blocks."""
    t, p = _check(true, pred)
    m = is_pure(t)
    if not m.any():
        return float("nan")
    W = similarity_matrix() if W is None else np.asarray(W, dtype=np.float64)
    cm = dominant_confusion(t[m], p[m])
    return float((W * cm).sum() / cm.sum())


def soft_similarity(true, pred, W: np.ndarray | None = None) -> float:
    """Soft OA_w for splits: mean over blocks of t^T W p (1 for a perfect pure prediction)."""
    t, p = _check(true, pred)
    if not t.shape[0]:
        return float("nan")
    W = similarity_matrix() if W is None else np.asarray(W, dtype=np.float64)
    return float(np.mean(np.einsum("ni,ij,nj->n", t, W, p)))


def oa_urban(true, pred) -> float:
    """WUDAPT OA_u: trace / sum of the built-classes block of the pure-block confusion matrix."""
    t, p = _check(true, pred)
    m = is_pure(t)
    b = list(BUILT_INDICES)
    cm = dominant_confusion(t[m], p[m])[np.ix_(b, b)]
    return float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")


def oa_built_natural(true, pred) -> float:
    """WUDAPT OA_bu: built (LCZ 1-10) vs natural (A-D, F, G) on pure blocks; LCZ E is in neither
    group, so blocks labelled or predicted E are left out."""
    t, p = _check(true, pred)
    m = is_pure(t)
    e = KEYS.index("lcz_e")
    natural = [i for i in NATURAL_INDICES if i != e]
    group = np.full(N_CLASSES, -1)
    group[list(BUILT_INDICES)] = 0
    group[natural] = 1
    gt, gp = group[t[m].argmax(1)], group[p[m].argmax(1)]
    keep = (gt >= 0) & (gp >= 0)
    return float(np.mean(gt[keep] == gp[keep])) if keep.any() else float("nan")


def evaluate_fractions(true, pred, subset: str = "mixed") -> dict[str, Any]:
    """All metrics in one dict.

    OA, OP, OA_w (and OA_u, OA_bu) are always on pure blocks. The MAE family (MAE, WD, MAE_B,
    MAE_N, per-class MAE, R^2, soft similarity) is on ``subset``: "mixed" (blocks that are not
    pure) or "all". ``confusion`` (dominant classes) is over all blocks.
    """
    if subset not in ("mixed", "all"):
        raise ValueError(f"subset must be 'mixed' or 'all', got {subset!r}")
    t, p = _check(true, pred)
    pure = is_pure(t)
    sel = ~pure if subset == "mixed" else np.ones(len(t), dtype=bool)
    ts, ps = t[sel], p[sel]
    return {
        "subset": subset,
        "n_blocks": int(len(t)),
        "n_pure": int(pure.sum()),
        "n_mixed": int((~pure).sum()),
        "n_subset": int(sel.sum()),
        "oa": oa(t, p),
        "op": op(t, p),
        "oa_w": oa_weighted(t, p),
        "oa_u": oa_urban(t, p),
        "oa_bu": oa_built_natural(t, p),
        "mae": mae(ts, ps),
        "wd": wd(ts, ps),
        "mae_b": mae_b(ts, ps),
        "mae_n": mae_n(ts, ps),
        "soft_similarity": soft_similarity(ts, ps),
        "per_class_mae": per_class_mae(ts, ps).tolist(),
        "r2_per_class": r2_per_class(ts, ps).tolist(),
        "confusion": dominant_confusion(t, p).tolist(),
    }
