"""Known-answer tests for annotator.agreement (pure numpy; no database, no Django).

    .venv/bin/python -m pytest tests/unit/test_agreement.py -q -p no:django -p no:cacheprovider

Small matrices are worked by hand in the comments; Krippendorff's alpha is cross-checked against
the `krippendorff` package and Fleiss' kappa against statsmodels.
"""
from __future__ import annotations

import json
from fractions import Fraction

import krippendorff
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from annotator import agreement as ag
from lcz_model.classes import KEYS, N_CLASSES, similarity_matrix

K = N_CLASSES
M = -1  # a missing rating row


def sp(*pairs) -> list[int]:
    """A 17-class per-mille row from (class index, per-mille) pairs; the rest 0."""
    row = [0] * K
    for i, v in pairs:
        row[i] = v
    assert sum(row) == 1000, row
    return row


MISSING = [M] * K


def arr(blocks) -> np.ndarray:
    return np.asarray(blocks, dtype=np.int64)


def random_splits(rng, n_blocks, n_raters, *, step=1, p_missing=0.2):
    """Realistic random splits: a block truth of 1-3 classes, raters around it; rows of -1 for
    missing; values in multiples of `step` per-mille."""
    X = np.empty((n_blocks, n_raters, K), dtype=np.int64)
    units = 1000 // step
    for b in range(n_blocks):
        k = rng.integers(1, 4)
        cls = rng.choice(K, size=k, replace=False)
        truth = np.zeros(K)
        truth[cls] = rng.dirichlet(np.ones(k))
        for r in range(n_raters):
            p = rng.dirichlet(truth * rng.uniform(5, 30) + 0.05)
            v = np.floor(p * units).astype(np.int64)
            v[np.argmax(p - v / units)] += units - v.sum()
            X[b, r] = v * step
    present = rng.random((n_blocks, n_raters)) > p_missing
    X[~present] = -1
    return X, present


# ------------------------------------------------------------------------------------------
# TV, dominant agreement
# ------------------------------------------------------------------------------------------

def test_pairwise_tv_by_hand():
    X = arr([
        # a = (.6, .4), b = (.6, .4), c = (.3, .4, .3)
        # TV(a,b) = 0; TV(a,c) = TV(b,c) = 0.5 * (.3 + 0 + .3) = 0.3; mean = 0.6 / 3 = 0.2
        [sp((0, 600), (1, 400)), sp((0, 600), (1, 400)), sp((0, 300), (1, 400), (2, 300))],
        # disjoint pair, third missing: TV = 0.5 * (1 + 1) = 1
        [sp((0, 1000)), sp((16, 1000)), MISSING],
        # one rating only: NaN
        [MISSING, sp((13, 1000)), MISSING],
        # identical: 0
        [sp((5, 700), (13, 300))] * 3,
        # a = (1, 0, 0), b = (.5, .5, 0), c = (.5, 0, .5): TV(a,b) = .5, TV(a,c) = .5,
        # TV(b,c) = 0.5 * (0 + .5 + .5) = .5; mean 0.5
        [sp((0, 1000)), sp((0, 500), (1, 500)), sp((0, 500), (2, 500))],
    ])
    tv = ag.pairwise_tv(X)
    assert tv[0] == pytest.approx(0.2, abs=1e-15)
    assert tv[1] == 1.0
    assert np.isnan(tv[2])
    assert tv[3] == 0.0
    assert tv[4] == pytest.approx(0.5, abs=1e-15)
    # An explicit mask gives the same as the -1 rows.
    present = (X >= 0).all(axis=2)
    np.testing.assert_array_equal(ag.pairwise_tv(np.where(X < 0, 0, X), present), tv)
    np.testing.assert_array_equal(ag.n_ratings(X), [3, 2, 1, 3, 3])


def test_pairwise_tv_matches_brute_force():
    rng = np.random.default_rng(1)
    X, present = random_splits(rng, 200, 4, p_missing=0.3)
    tv = ag.pairwise_tv(X, present)
    for b in range(200):
        rows = [X[b, r] / 1000 for r in range(4) if present[b, r]]
        d = [0.5 * np.abs(rows[i] - rows[j]).sum() for i in range(len(rows)) for j in range(i + 1, len(rows))]
        if d:
            assert tv[b] == pytest.approx(np.mean(d), abs=1e-12)
        else:
            assert np.isnan(tv[b])


def test_dominant_agreement_by_hand():
    X = arr([
        # a and b: class 0 (600); c = (300, 400, 300): class 1. Disagree
        [sp((0, 600), (1, 400)), sp((0, 600), (1, 400)), sp((0, 300), (1, 400), (2, 300))],
        # all LCZ D
        [sp((13, 800), (11, 200)), sp((13, 600), (11, 400)), sp((13, 500), (16, 500))],
        # tie 500/500 goes to the lower index (class 0); b says class 1: disagree
        [sp((0, 500), (1, 500)), sp((0, 400), (1, 600)), MISSING],
        # tie -> class 0, and b's class 0: agree
        [sp((0, 500), (1, 500)), sp((0, 600), (1, 400)), MISSING],
        # a single rating: vacuously True
        [sp((4, 1000)), MISSING, MISSING],
    ])
    np.testing.assert_array_equal(ag.dominant_agreement(X), [False, True, False, True, True])
    dom = ag.dominant_classes(X)
    np.testing.assert_array_equal(dom[0], [0, 0, 1])
    np.testing.assert_array_equal(dom[2], [0, 1, -1])
    np.testing.assert_array_equal(dom[4], [4, -1, -1])


# ------------------------------------------------------------------------------------------
# consensus
# ------------------------------------------------------------------------------------------

def test_consensus_naive_rounding_gives_999():
    # Means 333.33 each: naive rounding 333 * 3 = 999. Floors 333, 333, 333 (999), one unit
    # left; remainders all 1/3 (numerator 1000 % 3 = 1) -> the lowest index gets it.
    X = arr([[sp((0, 1000)), sp((1, 1000)), sp((2, 1000))]])
    assert np.round(X.mean(axis=1)).sum() == 999
    c = ag.consensus(X)
    np.testing.assert_array_equal(c[0, :3], [334, 333, 333])
    assert c.sum() == 1000


def test_consensus_naive_rounding_gives_1001():
    # Sums (2000, 500, 500) -> means 666.67, 166.67, 166.67: naive 667 + 167 + 167 = 1001.
    # Floors 666 + 166 + 166 = 998, two units left; remainders all 2/3 (2000 % 3 = 500 % 3 = 2)
    # -> classes 0 and 1 (lower index first) -> 667, 167, 166.
    X = arr([[sp((0, 1000)), sp((0, 500), (1, 500)), sp((0, 500), (2, 500))]])
    assert np.round(X.mean(axis=1)).sum() == 1001
    c = ag.consensus(X)
    np.testing.assert_array_equal(c[0, :3], [667, 167, 166])
    assert c.sum() == 1000


def test_consensus_largest_remainder_not_just_lowest_index():
    # r1 = (101, 101, 1, 797), r2 = (100, 101, 0, 799), r3 = (100, 100, 0, 800)
    # sums (301, 302, 1, 2396); means 100.33, 100.67, 0.33, 798.67
    # floors 100 + 100 + 0 + 798 = 998 -> 2 units; remainders (1, 2, 1, 2)/3 -> classes 1 and 3
    X = arr([[sp((0, 101), (1, 101), (2, 1), (3, 797)),
              sp((0, 100), (1, 101), (2, 0), (3, 799)),
              sp((0, 100), (1, 100), (2, 0), (3, 800))]])
    np.testing.assert_array_equal(ag.consensus(X)[0, :4], [100, 101, 0, 799])
    # sums (999, 1001, 1000): remainders (0, 2, 1)/3, one unit -> class 1, not class 0
    X = arr([[sp((0, 333), (1, 334), (2, 333)), sp((0, 333), (1, 333), (2, 334)),
              sp((0, 333), (1, 334), (2, 333))]])
    np.testing.assert_array_equal(ag.consensus(X)[0, :3], [333, 334, 333])


def test_consensus_two_raters_exact_and_missing():
    X = arr([
        # exact mean: (700 + 500)/2 = 600, (300 + 500)/2 = 400
        [sp((0, 700), (13, 300)), MISSING, sp((0, 500), (13, 500))],
        # 333.5 / 666.5: floors 999, one unit, tie -> class 0 -> (334, 666)
        [sp((0, 333), (1, 667)), sp((0, 334), (1, 666)), MISSING],
        # one rating: itself
        [MISSING, MISSING, sp((16, 1000))],
        # none: -1 row
        [MISSING, MISSING, MISSING],
    ])
    c = ag.consensus(X)
    assert c[0, 0] == 600 and c[0, 13] == 400
    assert (c[1, 0], c[1, 1]) == (334, 666)
    assert c[2, 16] == 1000
    assert (c[3] == -1).all()


def _consensus_reference(rows):
    """Largest remainder with exact fractions, one block at a time."""
    means = [sum(Fraction(int(r[i])) for r in rows) / len(rows) for i in range(K)]
    floors = [int(mv) for mv in means]
    left = 1000 - sum(floors)
    order = sorted(range(K), key=lambda i: (-(means[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def test_consensus_matches_exact_reference():
    rng = np.random.default_rng(2)
    X, present = random_splits(rng, 300, 5, p_missing=0.3)
    c = ag.consensus(X, present)
    for b in range(300):
        rows = [X[b, r] for r in range(5) if present[b, r]]
        if rows:
            assert c[b].tolist() == _consensus_reference(rows)
            assert c[b].sum() == 1000
            assert np.all(np.abs(c[b] - np.mean(rows, axis=0)) < 1)


def test_consensus_is_the_one_per_mille_rounding_rule():
    """Consensus and every other per-mille rounding (predictions, generated truth, packages read
    back) are lcz_model.package_writer.fractions_to_permille: the same splits as fractions of the
    mean round to the same per-mille."""
    from lcz_model.package_writer import fractions_to_permille

    rng = np.random.default_rng(3)
    X, present = random_splits(rng, 300, 3, p_missing=0.0)
    c = ag.consensus(X, present)
    np.testing.assert_array_equal(c, fractions_to_permille(X.sum(axis=1)))
    np.testing.assert_array_equal(c, fractions_to_permille(X.mean(axis=1) / 1000.0))


# ------------------------------------------------------------------------------------------
# disputes
# ------------------------------------------------------------------------------------------

def test_disputed_threshold_boundary():
    X = arr([
        # TV = 0.5 * (.25 + .25) = 0.25 exactly, same dominant class: NOT disputed
        [sp((0, 1000)), sp((0, 750), (1, 250)), MISSING],
        # TV = 0.5 * (.251 + .251) = 0.251: disputed
        [sp((0, 1000)), sp((0, 749), (1, 251)), MISSING],
        # three raters, every pair at TV 0.25 (see the TV test's last block, halved): mean 0.25
        [sp((0, 1000)), sp((0, 750), (1, 250)), sp((0, 750), (2, 250))],
        # TV = 0.5 * (.02 + .02) = 0.02 but dominant 0 vs 1: disputed
        [sp((0, 510), (1, 490)), sp((0, 490), (1, 510)), MISSING],
        # a single rating: never disputed
        [sp((0, 1000)), MISSING, MISSING],
        # identical: not disputed
        [sp((7, 1000))] * 3,
    ])
    tv = ag.pairwise_tv(X)
    assert tv[0] == 0.25 and tv[2] == 0.25
    np.testing.assert_array_equal(ag.disputed(X), [False, True, False, True, False, False])
    # a lower threshold catches the 0.25 blocks too
    np.testing.assert_array_equal(ag.disputed(X, tv_threshold=0.2), [True, True, True, True, False, False])


def test_disputed_at_non_dyadic_threshold():
    # TV exactly 0.3 (L1 = 600 per-mille) with threshold 0.3: not disputed; 0.301: disputed.
    X = arr([[sp((0, 1000)), sp((0, 700), (1, 300)), MISSING],
             [sp((0, 1000)), sp((0, 699), (1, 301)), MISSING],
             # three raters, pair L1 sums 600 + 600 + 600 = 1800 -> 1800 / 6000 = 0.3
             [sp((0, 1000)), sp((0, 700), (1, 300)), sp((0, 700), (2, 300))]])
    np.testing.assert_array_equal(ag.disputed(X, tv_threshold=0.3), [False, True, False])


# ------------------------------------------------------------------------------------------
# Krippendorff's alpha
# ------------------------------------------------------------------------------------------

def test_alpha_interval_by_hand():
    # Class 0 values (class 1 = 1000 - class 0; the other 15 classes are all 0):
    #   u1: 100, 200, -      m = 2, s1 = 300,  s2 = 50,000
    #   u2: 300, 300, 600    m = 3, s1 = 1200, s2 = 540,000
    #   u3: 700, -, -        m = 1: unpairable, dropped
    # D_o = 2 (2*50,000 - 300^2)/1 + 2 (3*540,000 - 1200^2)/2 = 2*10,000 + 2*90,000 = 200,000
    # n = 5, S1 = 1500, S2 = 590,000: D_e = 2 (5*590,000 - 1500^2)/4 = 2*700,000/4 = 350,000
    # alpha = 1 - 200,000/350,000 = 3/7
    X = arr([
        [sp((0, 100), (1, 900)), sp((0, 200), (1, 800)), MISSING],
        [sp((0, 300), (1, 700)), sp((0, 300), (1, 700)), sp((0, 600), (1, 400))],
        [sp((0, 700), (1, 300)), MISSING, MISSING],
    ])
    a = ag.krippendorff_alpha_interval_per_class(X)
    assert a.shape == (K,)
    assert a[0] == pytest.approx(3 / 7, abs=1e-15)
    assert a[1] == pytest.approx(3 / 7, abs=1e-15)   # v -> 1000 - v leaves interval alpha alone
    assert np.isnan(a[2:]).all()                      # D_e = 0: every value 0
    rd = np.where((X >= 0).all(axis=2), X[:, :, 0], np.nan).T.astype(float)
    assert krippendorff.alpha(reliability_data=rd, level_of_measurement="interval") == pytest.approx(3 / 7, abs=1e-12)


def test_alpha_interval_matches_package_on_random_blocks_with_missing():
    rng = np.random.default_rng(3)
    # Multiples of 10 per-mille keep the package's units x V x V array small.
    X, present = random_splits(rng, 300, 3, step=10, p_missing=0.15)
    ours = ag.krippendorff_alpha_interval_per_class(X, present)
    n_checked = 0
    for c in range(K):
        rd = np.where(present, X[:, :, c], np.nan).T.astype(float)   # raters x units
        vals = rd[~np.isnan(rd)]
        if np.unique(vals).size < 2:
            assert np.isnan(ours[c])
            continue
        ref = krippendorff.alpha(reliability_data=rd, level_of_measurement="interval")
        assert abs(ours[c] - ref) < 1e-10, (c, ours[c], ref)
        n_checked += 1
    assert n_checked >= 15


def test_alpha_interval_per_mille_values_match_package():
    rng = np.random.default_rng(4)
    X, present = random_splits(rng, 120, 4, step=1, p_missing=0.25)
    ours = ag.krippendorff_alpha_interval_per_class(X, present)
    for c in (0, 5, 13):
        rd = np.where(present, X[:, :, c], np.nan).T.astype(float)
        ref = krippendorff.alpha(reliability_data=rd, level_of_measurement="interval")
        assert abs(ours[c] - ref) < 1e-10


def test_alpha_nominal_by_hand_and_package():
    # Dominant classes: u1 (0, 0), u2 (0, 1), u3 (1, 1, 1)
    # disagreeing ordered pairs within units: u1 0, u2 2^2 - (1 + 1) = 2 (/(2-1)), u3 0 -> 2
    # n = 7, n_0 = 3, n_1 = 4: pooled disagreeing pairs 49 - 9 - 16 = 24
    # alpha = 1 - (n - 1) * 2 / 24 = 1 - 12/24 = 0.5
    X = arr([
        [sp((0, 1000)), sp((0, 600), (1, 400)), MISSING],
        [sp((0, 900), (5, 100)), sp((1, 1000)), MISSING],
        [sp((1, 1000)), sp((1, 800), (0, 200)), sp((1, 510), (2, 490))],
    ])
    assert ag.krippendorff_alpha_nominal_dominant(X) == pytest.approx(0.5, abs=1e-15)
    dom = np.where((X >= 0).all(axis=2), X.argmax(axis=2), np.nan).T
    assert krippendorff.alpha(reliability_data=dom, level_of_measurement="nominal") == pytest.approx(0.5, abs=1e-12)


def test_alpha_nominal_matches_package_on_random_blocks():
    rng = np.random.default_rng(5)
    X, present = random_splits(rng, 300, 3, p_missing=0.2)
    dom = np.where(present, X.argmax(axis=2), np.nan).T
    ref = krippendorff.alpha(reliability_data=dom, level_of_measurement="nominal")
    assert abs(ag.krippendorff_alpha_nominal_dominant(X, present) - ref) < 1e-10


def test_alpha_undefined_is_nan():
    # Everyone says LCZ G everywhere: D_e = 0.
    X = arr([[sp((16, 1000))] * 3] * 4)
    assert np.isnan(ag.krippendorff_alpha_nominal_dominant(X))
    a = ag.krippendorff_alpha_interval_per_class(X)
    assert np.isnan(a).all()
    assert np.isnan(ag.fleiss_kappa_dominant(X))


# ------------------------------------------------------------------------------------------
# Fleiss' kappa
# ------------------------------------------------------------------------------------------

def test_fleiss_kappa_by_hand_and_statsmodels():
    # Dominant classes of 4 complete blocks: (0,0,0) (0,0,1) (1,1,1) (0,1,2); a fifth block with
    # a missing rating is left out (Fleiss needs the same number of ratings per block).
    # counts: [3,0,0] [2,1,0] [0,3,0] [1,1,1]; P_i = (sum n_ij^2 - 3)/6 = 1, 1/3, 1, 0
    # P_bar = (7/3)/4 = 7/12; p_j = 6/12, 5/12, 1/12; P_e = (36 + 25 + 1)/144 = 31/72
    # kappa = (7/12 - 31/72)/(1 - 31/72) = (11/72)/(41/72) = 11/41
    c0, c1, c2 = sp((0, 1000)), sp((1, 1000)), sp((2, 1000))
    X = arr([[c0, c0, c0], [c0, c0, c1], [c1, c1, c1], [c0, c1, c2], [c2, MISSING, c0]])
    kappa, info = ag.fleiss_kappa_dominant(X, return_info=True)
    assert kappa == pytest.approx(11 / 41, abs=1e-15)
    assert info == {"n_blocks": 4, "ratings_per_block": 3}
    table, _ = aggregate_raters(np.array([[0, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 2]]))
    assert fleiss_kappa(table) == pytest.approx(11 / 41, abs=1e-15)


def test_fleiss_kappa_matches_statsmodels_and_ratings_per_block():
    rng = np.random.default_rng(6)
    X, present = random_splits(rng, 400, 5, p_missing=0.3)
    dom = X.argmax(axis=2)
    m = present.sum(axis=1)
    # k = 3 ratings per block out of a pool of 5 interpreters
    rows = [dom[b, present[b]] for b in range(400) if m[b] == 3]
    ref = fleiss_kappa(aggregate_raters(np.array(rows))[0])
    kappa, info = ag.fleiss_kappa_dominant(X, present, n_ratings_per_block=3, return_info=True)
    assert info["n_blocks"] == len(rows)
    assert abs(kappa - ref) < 1e-12
    # default: all 5 raters present
    rows5 = [dom[b] for b in range(400) if m[b] == 5]
    assert abs(ag.fleiss_kappa_dominant(X, present) - fleiss_kappa(aggregate_raters(np.array(rows5))[0])) < 1e-12


# ------------------------------------------------------------------------------------------
# WUDAPT-weighted dominant agreement
# ------------------------------------------------------------------------------------------

def test_weighted_dominant_agreement_by_hand():
    W = similarity_matrix()
    X = arr([
        # LCZ 1, LCZ 2, LCZ 1: pairs W[0,1] = .92, W[0,0] = 1, W[1,0] = .92 -> 2.84/3
        [sp((0, 1000)), sp((1, 1000)), sp((0, 600), (1, 400))],
        # LCZ 1 vs LCZ D: W[0,13] = 0
        [sp((0, 1000)), sp((13, 1000)), MISSING],
        # LCZ A vs LCZ B: .92
        [MISSING, sp((10, 1000)), sp((11, 1000))],
        # one rating: NaN
        [MISSING, MISSING, sp((11, 1000))],
    ])
    w = ag.weighted_dominant_agreement(X)
    assert w[0] == pytest.approx(2.84 / 3, abs=1e-12)
    assert w[1] == 0.0
    assert w[2] == pytest.approx(0.92)
    assert np.isnan(w[3])
    assert W[0, 1] == 0.92 and W[0, 13] == 0.0
    # the identity gives the unweighted pairwise agreement: 1/3, 0, 0
    np.testing.assert_allclose(ag.weighted_dominant_agreement(X, W=np.eye(K))[:3], [1 / 3, 0, 0])


# ------------------------------------------------------------------------------------------
# interpreter bias, drift, confusion
# ------------------------------------------------------------------------------------------

def _biased_campaign(rng, n_blocks):
    """Raters 1 and 2 give the same base split; rater 0 adds +100 per-mille to class 0, taken
    from class 13."""
    X = np.zeros((n_blocks, 3, K), dtype=np.int64)
    for b in range(n_blocks):
        c0 = int(rng.integers(0, 9)) * 50            # 0..400
        c13 = int(rng.integers(2, 9)) * 50           # 100..400
        rest = 1000 - c0 - c13
        other = int(rng.integers(1, 13))
        if other == 13:
            other = 14
        base = np.zeros(K, dtype=np.int64)
        base[0], base[13], base[other] = c0, c13, rest
        X[b, 1] = X[b, 2] = base
        X[b, 0] = base
        X[b, 0, 0] += 100
        X[b, 0, 13] -= 100
    return X


def test_interpreter_bias_plus_100_on_class_0():
    rng = np.random.default_rng(7)
    X = _biased_campaign(rng, 60)
    res = ag.interpreter_bias(X)
    np.testing.assert_array_equal(res["n_blocks"], [60, 60, 60])
    # Rater 0 vs the mean of raters 1 and 2 (= base): d = +0.1 on class 0, -0.1 on class 13.
    expected0 = np.zeros(K)
    expected0[0], expected0[13] = 0.1, -0.1
    np.testing.assert_allclose(res["bias_per_class"][0], expected0, atol=1e-12)
    np.testing.assert_allclose(res["mad_per_class"][0], np.abs(expected0), atol=1e-12)
    assert res["mad"][0] == pytest.approx(0.2 / 17, abs=1e-12)     # (0.1 + 0.1) / 17
    assert res["tv_to_others"][0] == pytest.approx(0.1, abs=1e-12)  # 0.5 * (0.1 + 0.1)
    # Rater 1 vs the mean of raters 0 and 2 (= base + 50 on class 0, - 50 on class 13):
    # d = -0.05 on class 0, +0.05 on class 13; the same for rater 2.
    for r in (1, 2):
        assert res["bias_per_class"][r, 0] == pytest.approx(-0.05, abs=1e-12)
        assert res["bias_per_class"][r, 13] == pytest.approx(0.05, abs=1e-12)
        assert res["tv_to_others"][r] == pytest.approx(0.05, abs=1e-12)
    # the rater with the bias stands out
    assert np.argmax(res["mad"]) == 0


def test_interpreter_bias_counts_only_shared_blocks():
    X = arr([
        [sp((0, 1000)), sp((0, 800), (1, 200)), MISSING],
        [sp((0, 1000)), MISSING, MISSING],        # alone: not compared
        [MISSING, MISSING, sp((2, 1000))],        # alone
    ])
    res = ag.interpreter_bias(X)
    np.testing.assert_array_equal(res["n_blocks"], [1, 1, 0])
    assert res["bias_per_class"][0, 0] == pytest.approx(0.2)
    assert res["bias_per_class"][1, 1] == pytest.approx(0.2)
    assert np.isnan(res["mad"][2])


def test_drift_orders_by_submission_time():
    rng = np.random.default_rng(8)
    n = 40
    X = _biased_campaign(rng, n)
    # Rater 0 is unbiased on the blocks it submitted first: reverse time order vs block order.
    t0 = np.datetime64("2025-01-01T00:00:00", "ns")
    times = np.empty((n, 3), dtype="datetime64[ns]")
    times[:, 0] = t0 + (np.arange(n)[::-1] * 3600).astype("timedelta64[s]")
    times[:, 1] = times[:, 2] = t0 + (np.arange(n) * 60).astype("timedelta64[s]")
    early = np.arange(n) >= n // 2                     # rater 0's first 20 submissions
    X[early, 0] = X[early, 1]                          # ... agree with the others
    dr = ag.drift(X, submitted_at=times, n_bins=4)
    d0 = dr[0]
    np.testing.assert_array_equal(d0["n"], [10, 10, 10, 10])
    np.testing.assert_allclose(d0["mad"][:2], 0.0, atol=1e-15)
    np.testing.assert_allclose(d0["mad"][2:], 0.2 / 17, atol=1e-12)
    assert d0["start"][0] == times[n - 1, 0] and d0["end"][3] == times[0, 0]
    # without times: block order, so the biased blocks come first
    d0b = ag.drift(X, n_bins=4)[0]
    np.testing.assert_allclose(d0b["mad"][:2], 0.2 / 17, atol=1e-12)
    # fewer blocks than bins: one per bin
    assert ag.drift(X[:3], n_bins=10)[0]["n"].tolist() == [1, 1, 1]


def test_confusion_dominant_by_hand():
    c0, c1, c13 = sp((0, 1000)), sp((1, 1000)), sp((13, 1000))
    X = arr([
        [c0, c0, c1],
        [c0, c1, MISSING],
        [c13, c13, c13],
    ])
    C = ag.confusion_dominant(X)
    assert C.shape == (3, 3, K, K)
    # raters 0 and 1 share blocks 0..2: (0,0), (0,1), (13,13)
    assert C[0, 1, 0, 0] == 1 and C[0, 1, 0, 1] == 1 and C[0, 1, 13, 13] == 1 and C[0, 1].sum() == 3
    np.testing.assert_array_equal(C[1, 0], C[0, 1].T)
    # raters 0 and 2 share blocks 0 and 2: (0,1), (13,13)
    assert C[0, 2].sum() == 2 and C[0, 2, 0, 1] == 1
    s = ag.confusion_summary(C)
    np.testing.assert_array_equal(s["pair_n"], [[3, 3, 2], [3, 3, 2], [2, 2, 2]])
    assert s["pair_agreement"][0, 1] == pytest.approx(2 / 3)
    assert s["pair_agreement"][0, 2] == pytest.approx(1 / 2)
    assert s["pair_agreement"][1, 2] == pytest.approx(1 / 2)   # block 0: (0,1) no; block 2 yes
    # pooled: 7 unordered pairs of ratings, each in both orientations
    assert s["pooled"].sum() == 14
    np.testing.assert_array_equal(s["pooled"], s["pooled"].T)


def test_tv_histogram():
    h = ag.tv_histogram([0.0, 0.05, 0.25, 0.3, 1.0, np.nan], bins=10)
    assert h["n"] == 5 and len(h["edges"]) == 11 and sum(h["counts"]) == 5
    # 0.3 lands in [0.3, 0.4) and 1.0 in the last bin
    assert h["counts"] == [2, 0, 1, 1, 0, 0, 0, 0, 0, 1]


# ------------------------------------------------------------------------------------------
# the campaign dict, input handling
# ------------------------------------------------------------------------------------------

def test_campaign_agreement_is_json_serialisable():
    rng = np.random.default_rng(9)
    X, present = random_splits(rng, 150, 3)
    # Remove LCZ G from every split (moved to LCZ D) so its alpha is undefined -> None.
    moved = np.where(present, X[:, :, 16], 0)
    X[:, :, 13] = np.where(present, X[:, :, 13] + moved, -1)
    X[:, :, 16] = np.where(present, 0, -1)
    t = np.datetime64("2025-05-01T12:00:00", "ns") + rng.integers(0, 10**6, size=(150, 3)).astype("timedelta64[s]")
    t[~present] = np.datetime64("NaT")
    out = ag.campaign_agreement(X, present, t, rater_names=["ann", "bo", "cy"], include_blocks=True)
    text = json.dumps(out, allow_nan=False)
    back = json.loads(text)
    assert back["alpha_interval"]["per_class"]["lcz_g"] is None
    assert back["classes"] == list(KEYS)
    assert [i["name"] for i in back["interpreters"]] == ["ann", "bo", "cy"]
    assert back["n_blocks"] == 150 and back["n_raters"] == 3
    assert len(back["blocks"]["tv"]) == 150
    assert back["disputed"]["count"] == int(ag.disputed(X, present).sum())
    assert back["interpreters"][0]["drift"][0]["start"].endswith("Z")
    assert back["fleiss_kappa_dominant"]["n_blocks"] == int(present.all(axis=1).sum())
    assert back["alpha_nominal_dominant"] == pytest.approx(ag.krippendorff_alpha_nominal_dominant(X, present))
    multi = present.sum(axis=1) >= 2
    assert back["tv"]["mean"] == pytest.approx(np.nanmean(ag.pairwise_tv(X, present)[multi]))
    assert back["confusion"]["pair_n"][0][0] == int(present[:, 0].sum())


def test_campaign_agreement_empty_and_single_rater():
    X = np.full((4, 3, K), -1, dtype=np.int64)
    X[0, 0] = sp((0, 1000))
    out = ag.campaign_agreement(X)
    json.dumps(out, allow_nan=False)
    assert out["n_multi_rated_blocks"] == 0
    assert out["tv"]["mean"] is None and out["dominant_agreement_rate"] is None
    assert out["fleiss_kappa_dominant"]["kappa"] is None
    assert out["disputed"]["count"] == 0


def test_invalid_splits_rejected():
    X = arr([[sp((0, 1000)), sp((0, 1000))]])
    X[0, 1, 0] = 999
    with pytest.raises(ValueError, match="sum to 1000"):
        ag.pairwise_tv(X)
    with pytest.raises(ValueError, match="shape"):
        ag.pairwise_tv(np.zeros((2, 3, 16), dtype=int))


def test_to_arrays_from_long_table():
    df = pd.DataFrame([
        {"block_id": 10, "interpreter_id": 7, **dict(zip(KEYS, sp((0, 1000)))),
         "submitted_at": pd.Timestamp("2025-02-01 10:00", tz="Europe/Helsinki")},
        {"block_id": 10, "interpreter_id": 3, **dict(zip(KEYS, sp((0, 750), (1, 250)))),
         "submitted_at": pd.Timestamp("2025-02-01 09:00", tz="UTC")},
        {"block_id": 11, "interpreter_id": 7, **dict(zip(KEYS, sp((16, 1000)))),
         "submitted_at": pd.Timestamp("2025-02-02 09:00", tz="UTC")},
    ])
    a = ag.to_arrays(df, block_ids=[10, 11, 12])
    assert a.rater_ids.tolist() == [3, 7]
    np.testing.assert_array_equal(a.present, [[True, True], [False, True], [False, False]])
    assert (a.splits[1, 0] == -1).all() and a.splits[1, 1, 16] == 1000
    assert a.submitted_at[0, 1] == np.datetime64("2025-02-01T08:00:00")   # 10:00 EET in UTC
    assert np.isnat(a.submitted_at[2, 0])
    assert ag.pairwise_tv(a.splits, a.present)[0] == 0.25
