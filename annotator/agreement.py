"""Inter-annotator agreement statistics (``shared/design/metrics.md``, "Inter-annotator agreement").

Pure numpy / pandas (no Django, no database), so it is fast and testable; the views, the
``agreement_report`` command and the dataset export load the splits from the database and call
:func:`campaign_agreement` (or the individual functions).

Input representation (every function takes the same two arrays)
----------------------------------------------------------------
``splits``  int array ``(n_blocks, n_raters, 17)``: per-mille abundances (0..1000, each present
            row sums to exactly 1000) in ``lcz_model.classes`` order. The rater axis is the
            interpreter index: the same interpreter is the same column in every block.
``present`` bool array ``(n_blocks, n_raters)``: which ratings exist. ``None`` means "derive it":
            a row with any negative value (the ``-1`` convention) or NaN is missing. Missing
            rows' contents are ignored.
``submitted_at`` optional ``datetime64`` array ``(n_blocks, n_raters)`` (UTC, NaT where missing),
            used only by :func:`drift`.
``skipped`` optional array ``(n_blocks, n_raters)`` of can't-label verdicts (only
            :func:`campaign_agreement` and the nominal functions take it): the skip reason as a
            string ("" = not skipped) or a bool. A skipped rating is NOT present (it has no split):
            TV, consensus, interval alpha, bias and drift ignore it, while the dominant-class
            statistics (Fleiss' kappa, Krippendorff's alpha nominal) count a skip as an 18th
            category, ``SKIP`` (so skips are "counted in agreement").

:func:`to_arrays` builds the three arrays from a long table (one row per submitted split).

Units: total-variation distances, mean absolute differences and biases are in *fractions* of
the block (per-mille / 1000), as in metrics.md; consensus splits are per-mille integers.

Decisions (documented here once; the functions refer to them)
-------------------------------------------------------------
* Dominant class = argmax of the split; ties go to the LOWEST class index (``np.argmax``, the
  same rule as the model metrics). A 500/500 split of LCZ 6 and LCZ D is dominated by LCZ 6.
* Blocks with fewer than two ratings carry no agreement information: their TV and weighted
  agreement are NaN, their ``dominant_agreement`` is True (vacuously) and they are never
  disputed. Campaign-level rates are taken over blocks with at least two ratings.
* Krippendorff's alpha treats each block as a unit and each interpreter as a coder; units with
  fewer than two values are unpairable and dropped (the package does the same).
* Skips (can't-label verdicts): a block whose verdicts hold no labelled majority (labelled * 2 <=
  labelled + skipped, with at least one skip; with 3 interpreters: 0 or 1 labelled) is disputed,
  as annotator.curation decides; otherwise the usual rule on the labelled splits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lcz_model.classes import CODES, KEYS, N_CLASSES, similarity_matrix
from lcz_model.package_writer import fractions_to_permille

TOTAL = 1000
DEFAULT_TV_THRESHOLD = 0.25
DEFAULT_DRIFT_BINS = 10
SKIP = N_CLASSES          # the nominal category of a can't-label verdict in the dominant-class statistics


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------

def _prepare(splits, present=None, *, validate: bool = True):
    """-> (X int64 (B, R, 17) with missing rows zeroed, present bool (B, R), m int64 (B,))."""
    arr = np.asarray(splits)
    if arr.ndim != 3 or arr.shape[2] != N_CLASSES:
        raise ValueError(f"splits must have shape (n_blocks, n_raters, {N_CLASSES}); got {arr.shape}")
    if present is None:
        if np.issubdtype(arr.dtype, np.floating):
            bad = np.isnan(arr).any(axis=2) | (arr < 0).any(axis=2)
        else:
            bad = (arr < 0).any(axis=2)
        pres = ~bad
    else:
        pres = np.asarray(present, dtype=bool)
        if pres.shape != arr.shape[:2]:
            raise ValueError(f"present must have shape {arr.shape[:2]}; got {pres.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        filled = np.where(pres[:, :, None], arr, 0.0)
        if validate and not np.all(filled == np.round(filled)):
            raise ValueError("splits must be whole per-mille values")
        X = filled.astype(np.int64)
    else:
        X = np.where(pres[:, :, None], arr, 0).astype(np.int64, copy=False)
    if validate and X.size:
        given = X[pres]                                 # the present rows only (missing ones are 0)
        if (given < 0).any() or (given > TOTAL).any():
            raise ValueError("present splits must be per-mille values in 0..1000")
        sums = given.sum(axis=1)
        wrong = sums != TOTAL
        if wrong.any():
            b, r = np.argwhere(pres)[np.argmax(wrong)]
            raise ValueError(f"present splits must sum to {TOTAL}; block {b}, rater {r} sums to "
                             f"{sums[np.argmax(wrong)]} ({int(wrong.sum())} such rows)")
    m = pres.sum(axis=1).astype(np.int64)
    return X, pres, m


def _pairs(n_raters: int):
    return [(a, b) for a in range(n_raters) for b in range(a + 1, n_raters)]


@dataclass
class AgreementArrays:
    """What :func:`to_arrays` returns: the arrays plus the ids along each axis."""
    splits: np.ndarray          # (B, R, 17) int64, -1 rows where missing
    present: np.ndarray         # (B, R) bool
    submitted_at: np.ndarray    # (B, R) datetime64[ns] (UTC), NaT where missing
    block_ids: np.ndarray       # (B,)
    rater_ids: np.ndarray       # (R,)
    skipped: np.ndarray | None = None   # (B, R) skip reasons ("" = none) when to_arrays got `skip`


def to_arrays(df, *, block: str = "block_id", rater: str = "interpreter_id",
              keys=KEYS, time: str | None = "submitted_at", block_ids=None,
              rater_ids=None, skip: str | None = None) -> AgreementArrays:
    """Long table (one row per submitted split: block, rater, the 17 per-mille columns, time)
    -> the dense arrays. ``block_ids`` / ``rater_ids`` fix the axes' order (e.g. every block of
    the campaign, every assigned interpreter); by default the sorted distinct ids in ``df``.
    A (block, rater) pair given twice keeps the last row. ``skip``: the column of skip reasons
    ("" = labelled); skipped rows are then not present and ``skipped`` holds their reasons."""
    import pandas as pd  # lazily: the statistics themselves need only numpy

    keys = list(keys)
    b_ids = np.asarray(sorted(df[block].unique()) if block_ids is None else list(block_ids))
    r_ids = np.asarray(sorted(df[rater].unique()) if rater_ids is None else list(rater_ids))
    bi = pd.Index(b_ids).get_indexer(df[block])
    ri = pd.Index(r_ids).get_indexer(df[rater])
    keep = (bi >= 0) & (ri >= 0)
    bi, ri = bi[keep], ri[keep]
    B, R = len(b_ids), len(r_ids)
    splits = np.full((B, R, N_CLASSES), -1, dtype=np.int64)
    splits[bi, ri] = df.loc[keep, keys].to_numpy(dtype=np.int64)
    present = np.zeros((B, R), dtype=bool)
    present[bi, ri] = True
    skipped = None
    if skip is not None:
        reasons = df.loc[keep, skip].fillna("").astype(str).to_numpy()
        skipped = np.full((B, R), "", dtype=object)
        skipped[bi, ri] = reasons
        is_skip = reasons != ""
        present[bi[is_skip], ri[is_skip]] = False        # a skip has no split
        splits[bi[is_skip], ri[is_skip]] = -1
    sub = np.full((B, R), np.datetime64("NaT"), dtype="datetime64[ns]")
    if time is not None and time in df.columns:
        t = pd.to_datetime(df.loc[keep, time], utc=True).dt.tz_convert(None)
        sub[bi, ri] = t.to_numpy(dtype="datetime64[ns]")
    return AgreementArrays(splits, present, sub, b_ids, r_ids, skipped)


# --------------------------------------------------------------------------------------------
# per block
# --------------------------------------------------------------------------------------------

def n_ratings(splits, present=None) -> np.ndarray:
    """(n_blocks,) number of ratings per block."""
    return _prepare(splits, present, validate=False)[2]


def _own_ratings_first(pres, values, *, with_order: bool = False):
    """Many interpreters, few per block (a city: 3 of 30): each block's own ratings moved to the
    front (in rater order) and the rest cut, so pairwise work grows with the ratings per block, not
    the interpreters. Pairs keep their order, so sums are bit-identical. -> (values, pres), and
    with_order: the (B, k) rater index of each kept column (None when nothing was cut)."""
    B, R = pres.shape
    most = int(pres.sum(axis=1).max()) if B else 0
    if R <= most + 1:
        return (values, pres, None) if with_order else (values, pres)
    order = np.argsort(~pres, axis=1, kind="stable")[:, :most]
    idx = order.reshape(order.shape + (1,) * (values.ndim - 2))
    out = np.take_along_axis(values, idx, axis=1), np.take_along_axis(pres, order, axis=1)
    return (*out, order) if with_order else out


def _pairwise_l1(X, pres):
    """-> (sum over present rater pairs of sum_i |a_i - b_i| in per-mille, number of pairs)."""
    X, pres = _own_ratings_first(pres, X)
    B, R, _ = X.shape
    l1 = np.zeros(B, dtype=np.int64)
    npairs = np.zeros(B, dtype=np.int64)
    for a, b in _pairs(R):
        both = pres[:, a] & pres[:, b]
        d = np.abs(X[:, a] - X[:, b]).sum(axis=1)
        l1 += np.where(both, d, 0)
        npairs += both
    return l1, npairs


def _tv_from_l1(l1, npairs):
    with np.errstate(invalid="ignore", divide="ignore"):
        # One correctly rounded division of exact integers: a TV of exactly 0.25 is exactly 0.25.
        return np.where(npairs > 0, l1 / (2.0 * TOTAL * np.maximum(npairs, 1)), np.nan)


def pairwise_tv(splits, present=None) -> np.ndarray:
    """(n_blocks,) mean over present rater pairs of TV(a, b) = 0.5 * sum_i |a_i - b_i| on
    fractions (0 = same split, 1 = disjoint); NaN for blocks with fewer than 2 ratings."""
    X, pres, _ = _prepare(splits, present)
    return _tv_from_l1(*_pairwise_l1(X, pres))


def dominant_classes(splits, present=None) -> np.ndarray:
    """(n_blocks, n_raters) argmax class per rating (ties -> lowest index); -1 where missing."""
    X, pres, _ = _prepare(splits, present)
    return np.where(pres, X.argmax(axis=2), -1)


def _dominant_agreement(dom, pres):
    big = N_CLASSES + 1
    lo = np.where(pres, dom, big).min(axis=1)
    hi = np.where(pres, dom, -1).max(axis=1)
    return (lo == hi) | (pres.sum(axis=1) < 2)


def dominant_agreement(splits, present=None) -> np.ndarray:
    """(n_blocks,) bool: all present raters give the same dominant class (argmax; ties -> the
    lowest class index). Blocks with fewer than 2 ratings are True (nothing to disagree with)."""
    X, pres, _ = _prepare(splits, present)
    return _dominant_agreement(X.argmax(axis=2), pres)


def _consensus(X, pres, m):
    out = np.full((X.shape[0], N_CLASSES), -1, dtype=np.int64)
    rated = m > 0
    out[rated] = fractions_to_permille(X[rated].sum(axis=1))   # the raters' per-mille sums
    return out


def consensus(splits, present=None) -> np.ndarray:
    """(n_blocks, 17) int consensus split: the mean of the present raters' splits rounded to
    whole per-mille summing to exactly 1000 by largest remainder (Hamilton), ties to the lower
    class index, remainders compared exactly (lcz_model.package_writer.fractions_to_permille,
    the one rounding rule of per-mille splits, given the raters' integer sums). Blocks with no
    rating get a row of -1."""
    return _consensus(*_prepare(splits, present))


def disputed(splits, present=None, tv_threshold: float = DEFAULT_TV_THRESHOLD) -> np.ndarray:
    """(n_blocks,) bool: mean pairwise TV strictly above ``tv_threshold`` (exactly at the
    threshold is not disputed) or the raters disagree on the dominant class. Blocks with fewer
    than 2 ratings are never disputed."""
    X, pres, m = _prepare(splits, present)
    tv = _tv_from_l1(*_pairwise_l1(X, pres))
    agree = _dominant_agreement(X.argmax(axis=2), pres)
    return (m >= 2) & ((tv > tv_threshold) | ~agree)


def _weighted_dominant(dom, pres, W):
    dom, pres = _own_ratings_first(pres, dom)
    B, R = dom.shape
    tot = np.zeros(B)
    npairs = np.zeros(B, dtype=np.int64)
    d0 = np.where(pres, dom, 0)
    for a, b in _pairs(R):
        both = pres[:, a] & pres[:, b]
        tot += np.where(both, W[d0[:, a], d0[:, b]], 0.0)
        npairs += both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(npairs > 0, tot / np.maximum(npairs, 1), np.nan)


def weighted_dominant_agreement(splits, present=None, W=None) -> np.ndarray:
    """(n_blocks,) mean over present rater pairs of W[dom_a, dom_b] with W the WUDAPT class
    similarity matrix (``lcz_model.classes.similarity_matrix()``); 1 = same dominant class,
    0.92 = e.g. LCZ 1 vs LCZ 2. NaN for blocks with fewer than 2 ratings. ``W = np.eye(17)``
    gives the unweighted pairwise agreement. The campaign figure is the mean over blocks."""
    X, pres, _ = _prepare(splits, present)
    W = similarity_matrix() if W is None else np.asarray(W, dtype=float)
    return _weighted_dominant(X.argmax(axis=2), pres, W)


# --------------------------------------------------------------------------------------------
# campaign level: Krippendorff, Fleiss
# --------------------------------------------------------------------------------------------

def _alpha_interval(X, m):
    pair = m >= 2                                       # units with < 2 values are unpairable
    Xp = X[pair]                                        # (U, R, 17); missing rows are zeros
    mu = m[pair].astype(np.float64)[:, None]            # (U, 1)
    s1 = Xp.sum(axis=1)                                 # (U, 17) int64
    s2 = (Xp * Xp).sum(axis=1)                          # (U, 17) int64
    n = int(m[pair].sum())
    if n < 2:
        return np.full(N_CLASSES, np.nan)
    # Within-unit numerators m s2 - s1^2 and the totals are exact integers.
    d_o = (2.0 * (m[pair][:, None] * s2 - s1 * s1) / (mu - 1.0)).sum(axis=0)
    S1 = s1.sum(axis=0)
    S2 = s2.sum(axis=0)
    d_e = 2.0 * (n * S2 - S1 * S1).astype(np.float64) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d_e > 0, 1.0 - d_o / np.where(d_e > 0, d_e, 1.0), np.nan)


def krippendorff_alpha_interval_per_class(splits, present=None) -> np.ndarray:
    """(17,) Krippendorff's alpha, interval metric, per class over blocks (units = blocks,
    coders = raters, values = the class's per-mille), by the closed form of metrics.md: with
    m_u pairable values in unit u, s1_u = sum v, s2_u = sum v^2, n = sum m_u,
    D_o = sum_u 2 (m_u s2_u - s1_u^2) / (m_u - 1), D_e = 2 (n S2 - S1^2) / (n - 1),
    alpha = 1 - D_o / D_e. Units with fewer than 2 values are dropped. NaN where D_e == 0 (the
    class takes one value throughout, e.g. never used) or fewer than 2 pairable values."""
    X, _, m = _prepare(splits, present)
    return _alpha_interval(X, m)


def _alpha_nominal(dom, pres, n_cat: int = N_CLASSES):
    m = pres.sum(axis=1)
    pair = m >= 2
    if not pair.any():
        return math.nan
    d = dom[pair]
    p = pres[pair]
    mu = m[pair].astype(np.int64)
    U = d.shape[0]
    counts = np.zeros((U, n_cat), dtype=np.int64)        # n_uc
    rows = np.broadcast_to(np.arange(U)[:, None], d.shape)
    np.add.at(counts, (rows[p], d[p]), 1)
    n = int(mu.sum())
    n_c = counts.sum(axis=0)
    # Pairs i != j within unit u that disagree: m_u^2 - sum_c n_uc^2; over all values:
    # n^2 - sum_c n_c^2. alpha = 1 - (n - 1) * sum_u [within_u / (m_u - 1)] / pooled.
    within = ((mu * mu - (counts * counts).sum(axis=1)) / (mu - 1.0)).sum()
    pooled = float(n * n - (n_c * n_c).sum())
    if pooled == 0:
        return math.nan
    return float(1.0 - (n - 1) * within / pooled)


def _skip_mask(skipped, pres):
    """-> (B, R) bool of skipped ratings (never a present one), or None without skips."""
    if skipped is None:
        return None
    sk = np.asarray(skipped)
    if sk.shape != pres.shape:
        raise ValueError(f"skipped must have shape {pres.shape}; got {sk.shape}")
    mask = sk.astype(bool)                              # "" / None: not skipped
    if (mask & pres).any():
        raise ValueError("a skipped rating cannot also be present (a skip has no split)")
    return mask


def _nominal(dom, pres, skip):
    """Dominant classes with skips as the category SKIP: -> (dom, present, n_cat)."""
    if skip is None:
        return dom, pres, N_CLASSES
    return np.where(skip, SKIP, dom), pres | skip, N_CLASSES + 1


def krippendorff_alpha_nominal_dominant(splits, present=None, skipped=None) -> float:
    """Krippendorff's alpha, nominal metric, on the dominant class (units = blocks, coders =
    raters; units with fewer than 2 ratings dropped), in closed form from the per-unit category
    counts n_uc. NaN when every value is the same class (D_e == 0) or no unit is pairable.
    ``skipped``: can't-label verdicts, counted as their own category."""
    X, pres, _ = _prepare(splits, present)
    return _alpha_nominal(*_nominal(X.argmax(axis=2), pres, _skip_mask(skipped, pres)))


def _fleiss(dom, pres, n_ratings_per_block=None, n_cat: int = N_CLASSES):
    from statsmodels.stats.inter_rater import fleiss_kappa
    m = pres.sum(axis=1)
    R = dom.shape[1]
    k = R if n_ratings_per_block is None else int(n_ratings_per_block)
    use = m == k
    info = {"n_blocks": int(use.sum()), "ratings_per_block": k}
    if k < 2 or use.sum() == 0:
        return math.nan, info
    # The used blocks' counts per category (the rater identity does not matter): the table
    # statsmodels' aggregate_raters makes from the compacted ratings, counted in one bincount.
    d = dom[use]
    p = pres[use]
    rows = np.broadcast_to(np.arange(d.shape[0])[:, None], d.shape)
    table = np.bincount((rows[p] * n_cat + d[p]), minlength=d.shape[0] * n_cat).reshape(d.shape[0], n_cat)
    p_cat = table.sum(axis=0) / table.sum()
    if np.isclose((p_cat * p_cat).sum(), 1.0):
        return math.nan, info                           # one class only: chance agreement = 1
    return float(fleiss_kappa(table, method="fleiss")), info


def fleiss_kappa_dominant(splits, present=None, n_ratings_per_block: int | None = None,
                          return_info: bool = False, skipped=None):
    """Fleiss' kappa (statsmodels ``fleiss_kappa`` on ``aggregate_raters(..., n_cat=17)``) on the
    dominant class. Fleiss' kappa needs the same number of ratings per block, so it uses only the
    blocks with exactly ``n_ratings_per_block`` ratings, by default ``n_raters`` (= every rater
    present: the complete blocks when every interpreter rates every block). With a larger pool
    of interpreters and k per block, pass k. NaN when no block qualifies or a single class is
    used throughout. ``return_info=True`` -> (kappa, {"n_blocks", "ratings_per_block"}).
    ``skipped``: can't-label verdicts, counted as ratings of their own category."""
    X, pres, _ = _prepare(splits, present)
    dom, npres, n_cat = _nominal(X.argmax(axis=2), pres, _skip_mask(skipped, pres))
    kappa, info = _fleiss(dom, npres, n_ratings_per_block, n_cat)
    return (kappa, info) if return_info else kappa


# --------------------------------------------------------------------------------------------
# per interpreter: bias, drift, confusion
# --------------------------------------------------------------------------------------------

@dataclass
class _LooDiff:
    """Each valid rating's difference to the leave-one-out mean of the others: only the valid
    ratings (a city: 3 of 30 raters per block), in block order; `valid` (B, R) marks them."""
    b: np.ndarray           # (n,) block index of each valid rating, ascending
    r: np.ndarray           # (n,) its rater
    d: np.ndarray           # (n, 17) float: rater minus the others' mean, in fractions
    valid: np.ndarray       # (B, R) bool: rater present and at least one other rater


def _loo_diff(X, pres, m, S=None) -> _LooDiff:
    """S: the per-block sums X.sum(axis=1) when the caller has them (exact integers either way)."""
    valid = pres & (m >= 2)[:, None]
    S = X.sum(axis=1) if S is None else S                       # (B, 17)
    b, r = np.nonzero(valid)                                    # only the valid ratings (few of B x R)
    others = (S[b] - X[b, r]) / np.maximum(m[b] - 1, 1)[:, None]
    return _LooDiff(b, r, (X[b, r] - others) / TOTAL, valid)


def interpreter_bias(splits, present=None) -> dict:
    """Per rater, against the consensus of the OTHER raters on the same block (the unrounded
    leave-one-out mean of their splits), over the blocks the rater rated together with at least
    one other rater. All in fractions (per-mille / 1000). Returns numpy arrays:

    ``n_blocks`` (R,) blocks used; ``mad`` (R,) mean over blocks of (1/17) sum_i |d_i| (the MAE
    convention of metrics.md); ``tv_to_others`` (R,) mean over blocks of 0.5 sum_i |d_i|;
    ``mad_per_class`` (R, 17) mean |d_i|; ``bias_per_class`` (R, 17) mean signed d_i
    (positive = the rater gives the class more than the others do). NaN for a rater with no
    usable block. d = rater's split - others' mean."""
    return _bias(*_prepare(splits, present))


def _bias(X, pres, m, dv=None):
    dv = _loo_diff(X, pres, m) if dv is None else dv
    nb = dv.valid.sum(axis=0)
    den = np.where(nb > 0, nb, np.nan)[:, None]
    R = pres.shape[1]
    abs_sum, d_sum = np.zeros((R, N_CLASSES)), np.zeros((R, N_CLASSES))
    # per rater, added one block after the other in block order (cumsum: the order of a plain
    # loop, so the figures are the same to the last bit as summing the dense blocks x raters array)
    by_rater = np.argsort(dv.r, kind="stable")
    raters, starts, counts = np.unique(dv.r[by_rater], return_index=True, return_counts=True)
    d = dv.d[by_rater]
    for r, a, n in zip(raters, starts, counts):
        abs_sum[r] = np.cumsum(np.abs(d[a:a + n]), axis=0)[-1]
        d_sum[r] = np.cumsum(d[a:a + n], axis=0)[-1]
    mad_pc = abs_sum / den
    bias_pc = d_sum / den
    return {
        "n_blocks": nb.astype(np.int64),
        "mad": mad_pc.mean(axis=1),
        "tv_to_others": 0.5 * mad_pc.sum(axis=1),
        "mad_per_class": mad_pc,
        "bias_per_class": bias_pc,
    }


def drift(splits, present=None, submitted_at=None, n_bins: int = DEFAULT_DRIFT_BINS) -> list[dict]:
    """How each rater's difference to the others changes over time. For each rater, the blocks
    used by :func:`interpreter_bias` are put in the order of the rater's own submissions
    (``submitted_at``; NaT last; ties and ``submitted_at=None`` -> block order) and cut into
    ``min(n_bins, n)`` bins of (near-)equal count, i.e. quantile bins of submission order.
    Returns one dict per rater with arrays over bins: ``n``, ``mad`` and ``tv_to_others`` (as in
    :func:`interpreter_bias`, per bin), ``start`` / ``end`` (first and last submission time in
    the bin, datetime64, NaT when unknown) and ``first_index`` (0-based position in the rater's
    sequence of the bin's first block)."""
    X, pres, m = _prepare(splits, present)
    return _drift(X, pres, m, submitted_at, n_bins)


def _drift(X, pres, m, submitted_at, n_bins, dv=None):
    dv = _loo_diff(X, pres, m) if dv is None else dv
    valid = dv.valid
    absd = np.abs(dv.d)
    B, R = pres.shape
    mad_b, tvo_b = np.zeros((B, R)), np.zeros((B, R))    # per rating; read only where valid
    mad_b[dv.b, dv.r] = absd.mean(axis=1)
    tvo_b[dv.b, dv.r] = 0.5 * absd.sum(axis=1)
    if submitted_at is None:
        t = np.full((B, R), np.datetime64("NaT"), dtype="datetime64[ns]")
    else:
        t = np.asarray(submitted_at).astype("datetime64[ns]")
        if t.shape != (B, R):
            raise ValueError(f"submitted_at must have shape {(B, R)}; got {t.shape}")
    key = t.view(np.int64).copy()
    key[np.isnat(t)] = np.iinfo(np.int64).max            # unknown times sort last
    out = []
    for r in range(R):
        idx = np.flatnonzero(valid[:, r])
        n = idx.size
        if n == 0:
            empty = np.zeros(0)
            out.append({"n": np.zeros(0, dtype=np.int64), "mad": empty, "tv_to_others": empty,
                        "start": np.zeros(0, dtype="datetime64[ns]"),
                        "end": np.zeros(0, dtype="datetime64[ns]"),
                        "first_index": np.zeros(0, dtype=np.int64)})
            continue
        order = idx[np.lexsort((idx, key[idx, r]))]
        nb = max(1, min(int(n_bins), n))
        starts = (np.arange(nb) * n) // nb               # equal-count bins by order
        counts = np.diff(np.append(starts, n))
        mad = np.add.reduceat(mad_b[order, r], starts) / counts
        tvo = np.add.reduceat(tvo_b[order, r], starts) / counts
        tt = t[order, r]
        out.append({"n": counts.astype(np.int64), "mad": mad, "tv_to_others": tvo,
                    "start": tt[starts], "end": tt[starts + counts - 1],
                    "first_index": starts.astype(np.int64)})
    return out


def confusion_dominant(splits, present=None) -> np.ndarray:
    """(n_raters, n_raters, 17, 17) int: C[a, b, i, j] = number of blocks rated by both a and b
    where a's dominant class is i and b's is j. C[a, a] is rater a's own dominant-class counts
    on its diagonal; C[b, a] = C[a, b].T. Derived views (see :func:`confusion_summary`): the
    interpreter-by-interpreter agreement matrix trace(C[a, b]) / C[a, b].sum() (the heatmap),
    and the pooled class confusion sum over a != b of C[a, b] (symmetric; every unordered pair of
    ratings counted in both orientations)."""
    X, pres, _ = _prepare(splits, present)
    return _confusion(X.argmax(axis=2), pres)


def _confusion(dom, pres):
    dm, ok, order = _own_ratings_first(pres, dom, with_order=True)
    return _confusion_own_first(dm, ok, order, pres.shape[1])


def _confusion_own_first(dm, ok, order, R: int):
    """_confusion from each block's own ratings first (`_own_ratings_first(..., with_order=True)`):
    every pair a <= b of a block's ratings, a == b included (a rater's own counts on the diagonal),
    in one bincount over (a, b, dom_a, dom_b)."""
    K = N_CLASSES
    if order is None:                                   # nothing was cut: column i is rater i
        order = np.broadcast_to(np.arange(ok.shape[1]), ok.shape)
    most = ok.shape[1]
    codes = []
    for i in range(most):
        for j in range(i, most):
            both = ok[:, i] & ok[:, j]
            a, b = order[both, i], order[both, j]
            codes.append(((a * R + b) * K + dm[both, i]) * K + dm[both, j])
    flat = np.bincount(np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64), minlength=R * R * K * K)
    C = flat.reshape(R, R, K, K).astype(np.int64, copy=False)
    upper = np.triu(np.ones((R, R), dtype=bool), 1)
    C[upper.T] = np.swapaxes(C, 0, 1)[upper.T].transpose(0, 2, 1)    # C[b, a] = C[a, b].T
    return C


def confusion_summary(C: np.ndarray) -> dict:
    """From :func:`confusion_dominant`: ``pair_n`` (R, R) blocks rated by both (diagonal: blocks
    rated by the rater), ``pair_agreement`` (R, R) share of those with the same dominant class
    (diagonal 1, NaN with no shared block), ``pooled`` (17, 17) sum over a != b of C[a, b]."""
    R = C.shape[0]
    n = C.sum(axis=(2, 3))
    tr = np.trace(C, axis1=2, axis2=3)
    with np.errstate(invalid="ignore", divide="ignore"):
        agree = np.where(n > 0, tr / np.maximum(n, 1), np.nan)
    off = ~np.eye(R, dtype=bool)
    pooled = C[off].sum(axis=0) if R > 1 else np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    return {"pair_n": n, "pair_agreement": agree, "pooled": pooled}


def tv_histogram(tv, bins=10) -> dict:
    """Histogram of per-block TV values over [0, 1] (NaN dropped): ``bins`` equal-width bins or
    explicit edges. Returns {"edges": list (bins + 1), "counts": list (bins), "n": int}; the last
    bin includes 1.0 (numpy's rule)."""
    v = np.asarray(tv, dtype=float)
    v = v[~np.isnan(v)]
    if np.ndim(bins) == 0:
        # Edges k / bins (correctly rounded, like the TVs), so a TV of exactly 0.3 lands in
        # [0.3, 0.4) rather than below a linspace edge of 0.30000000000000004.
        edges = np.arange(int(bins) + 1) / int(bins)
    else:
        edges = np.asarray(bins, dtype=float)
    counts, edges = np.histogram(v, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "n": int(v.size)}


# --------------------------------------------------------------------------------------------
# everything at once, JSON-serialisable
# --------------------------------------------------------------------------------------------

def _f(x):
    """float or None (NaN / inf -> None)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _flist(a):
    return [_f(v) for v in np.asarray(a, dtype=float).ravel()]


def _by_class(a):
    return {k: _f(v) for k, v in zip(KEYS, np.asarray(a, dtype=float))}


def _iso(t):
    return None if np.isnat(t) else str(np.datetime_as_string(t, unit="s")) + "Z"


def _stats(v):
    v = np.asarray(v, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"mean": None, "median": None, "p90": None}
    return {"mean": _f(v.mean()), "median": _f(np.median(v)), "p90": _f(np.quantile(v, 0.9))}


def campaign_agreement(splits, present=None, submitted_at=None,
                       tv_threshold: float = DEFAULT_TV_THRESHOLD, rater_names=None, *,
                       n_bins: int = DEFAULT_DRIFT_BINS, hist_bins=10,
                       fleiss_ratings_per_block: int | None = None,
                       include_blocks: bool = False, skipped=None) -> dict:
    """All the agreement figures in one JSON-serialisable dict (floats, ints, lists, str; NaN ->
    None): the shape shared by the dashboard, ``manage.py agreement_report --json`` and the
    exported ``agreement.json``. Rates over blocks are over blocks with at least 2 ratings.

    ``include_blocks=True`` adds ``blocks``: per-block lists (``n_ratings``, ``tv``,
    ``dominant_agreement``, ``disputed``, ``weighted_dominant_agreement``, ``consensus_dominant``)
    in the input's block order, for the map layer.

    ``skipped`` (B, R): can't-label verdicts (reasons, or bool); adds ``skips`` (count, by reason,
    blocks, disputed by skips) and per interpreter ``n_skips`` / ``skips_by_reason``, counts a skip
    as its own category in Fleiss' kappa and alpha nominal, and disputes blocks without a labelled
    majority; TV, consensus, interval alpha, bias and drift use the labelled splits only."""
    X, pres, m = _prepare(splits, present)
    skip = _skip_mask(skipped, pres)
    B, R, _ = X.shape
    names = [str(n) for n in (rater_names if rater_names is not None else range(R))]
    if len(names) != R:
        raise ValueError(f"rater_names has {len(names)} names for {R} raters")
    multi = m >= 2
    # each block's own ratings first, once: per-block sums and pairs need no other rater
    Xc, pc, order = _own_ratings_first(pres, X, with_order=True)
    dom_c = Xc.argmax(axis=2)
    if order is None:
        dom = dom_c
    else:                       # the dense (B, R) dominant classes; a missing rating's row is zeros: 0
        dom = np.zeros(pres.shape, dtype=dom_c.dtype)
        np.put_along_axis(dom, order, dom_c, axis=1)

    l1, npairs = _pairwise_l1(Xc, pc)
    tv = _tv_from_l1(l1, npairs)
    agree = _dominant_agreement(dom, pres)
    disp = multi & ((tv > tv_threshold) | ~agree)
    if skip is not None:
        n_skip = skip.sum(axis=1)
        by_skip = (n_skip > 0) & (2 * m <= m + n_skip)       # no labelled majority (annotator.curation)
        disp = disp | by_skip
    wda = _weighted_dominant(dom_c, pc, similarity_matrix())
    cons = _consensus(Xc, None, m)
    cons_dom = np.where(m > 0, cons.argmax(axis=1), -1)
    alpha_i = _alpha_interval(Xc, m)
    nom_dom, nom_pres, n_cat = _nominal(dom, pres, skip)
    alpha_n = _alpha_nominal(nom_dom, nom_pres, n_cat)
    kappa, kinfo = _fleiss(nom_dom, nom_pres, fleiss_ratings_per_block, n_cat)

    dv = _loo_diff(X, pres, m, S=Xc.sum(axis=1))
    bias = _bias(X, pres, m, dv)
    dr = _drift(X, pres, m, submitted_at, n_bins, dv)
    C = _confusion_own_first(dom_c, pc, order, R)
    cs = confusion_summary(C)

    n_multi = int(multi.sum())
    reasons = None
    if skip is not None:
        sk = np.asarray(skipped)
        reasons = np.where(skip, sk if sk.dtype != bool else "skipped", "").astype(object)

    def rate(mask):
        return _f(mask[multi].mean()) if n_multi else None

    def by_reason(r):
        values = reasons[skip] if r is None else reasons[:, r][skip[:, r]]
        names, counts = np.unique(values.astype(str), return_counts=True)
        return {str(k): int(c) for k, c in zip(names, counts)}

    interpreters = []
    for r in range(R):
        d = dr[r]
        interpreters.append({
            "index": r,
            "name": names[r],
            "n_ratings": int(pres[:, r].sum()),
            "n_blocks_compared": int(bias["n_blocks"][r]),
            "mad": _f(bias["mad"][r]),
            "tv_to_others": _f(bias["tv_to_others"][r]),
            "mad_per_class": _by_class(bias["mad_per_class"][r]),
            "bias_per_class": _by_class(bias["bias_per_class"][r]),
            "drift": [
                {"bin": i, "first_index": int(d["first_index"][i]), "n": int(d["n"][i]),
                 "start": _iso(d["start"][i]), "end": _iso(d["end"][i]),
                 "mad": _f(d["mad"][i]), "tv_to_others": _f(d["tv_to_others"][i])}
                for i in range(len(d["n"]))
            ],
        })
        if skip is not None:
            interpreters[-1].update(n_skips=int(skip[:, r].sum()), skips_by_reason=by_reason(r))

    pairs = []
    for a, b in _pairs(R):
        if cs["pair_n"][a, b] > 0:
            pairs.append({"a": names[a], "b": names[b], "n": int(cs["pair_n"][a, b]),
                          "agreement": _f(cs["pair_agreement"][a, b]),
                          "matrix": C[a, b].tolist()})

    out = {
        "classes": list(KEYS),
        "class_codes": list(CODES),
        "units": "fractions of the block (per-mille / 1000) for TV, MAD and bias",
        "n_blocks": int(B),
        "n_raters": int(R),
        "raters": names,
        "n_rated_blocks": int((m > 0).sum()),
        "n_multi_rated_blocks": n_multi,
        "n_complete_blocks": int((m == R).sum()) if R else 0,
        "n_ratings": int(m.sum()),
        "tv_threshold": float(tv_threshold),
        "tv": {**_stats(tv), "histogram": tv_histogram(tv, hist_bins)},
        "dominant_agreement_rate": rate(agree),
        "weighted_dominant_agreement": _f(np.nanmean(wda)) if n_multi else None,
        "disputed": {"count": int(disp.sum()), "share": rate(disp),
                     "by_tv": int((multi & (tv > tv_threshold)).sum()),
                     "by_dominant": int((multi & ~agree).sum())},
        "alpha_interval": {"per_class": _by_class(alpha_i),
                           "mean": _f(np.nanmean(alpha_i)) if np.isfinite(alpha_i).any() else None},
        "alpha_nominal_dominant": _f(alpha_n),
        "fleiss_kappa_dominant": {"kappa": _f(kappa), **kinfo},
        "consensus_dominant_counts": {k: int(c) for k, c in zip(
            KEYS, np.bincount(cons_dom[cons_dom >= 0], minlength=N_CLASSES))},
        "interpreters": interpreters,
        "confusion": {
            "raters": names,
            "pair_n": cs["pair_n"].tolist(),
            "pair_agreement": [[_f(v) for v in row] for row in cs["pair_agreement"]],
            "pooled": cs["pooled"].tolist(),
            "pairs": pairs,
        },
    }
    if skip is not None:
        out["skips"] = {"count": int(skip.sum()), "by_reason": by_reason(None),
                        "blocks": int(skip.any(axis=1).sum()), "disputed_by_skips": int(by_skip.sum()),
                        "note": "can't-label verdicts: left out of TV, consensus, interval alpha, bias and "
                                "drift; their own category in Fleiss' kappa and alpha nominal"}
        out["disputed"]["by_skips"] = int(by_skip.sum())
    if include_blocks:
        out["blocks"] = {
            "n_ratings": m.tolist(),
            "tv": _flist(tv),
            "dominant_agreement": agree.tolist(),
            "disputed": disp.tolist(),
            "weighted_dominant_agreement": _flist(wda),
            "consensus_dominant": cons_dom.tolist(),
        }
    return out
