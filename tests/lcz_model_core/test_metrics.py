"""Metrics with hand-worked answers (metrics.md). Four blocks; e_i is the one-hot of class i
(0 = LCZ 1, 1 = LCZ 2, 10 = LCZ A, 13 = LCZ D):

    block  true                 pred                  pure  argmax t -> p
    b1     e0                   0.7 e0 + 0.3 e1       yes   0 -> 0  (right)
    b2     e1                   0.6 e0 + 0.4 e1       yes   1 -> 0  (wrong)
    b3     e10                  0.6 e10 + 0.4 e13     yes   10 -> 10 (right)
    b4     0.6 e0 + 0.4 e10     0.3 e0 + 0.7 e10      no    0 -> 10

sum_i |t - p| per block:  b1 0.3+0.3 = 0.6; b2 0.6+0.6 = 1.2; b3 0.4+0.4 = 0.8; b4 0.3+0.3 = 0.6
sum_i t |t - p|:          b1 0.3; b2 0.6; b3 0.4; b4 0.6*0.3 + 0.4*0.3 = 0.3
"""
import numpy as np
import pytest

from lcz_model import metrics as M
from lcz_model.classes import N_CLASSES, similarity_matrix


def e(i):
    v = np.zeros(N_CLASSES)
    v[i] = 1.0
    return v


TRUE = np.stack([e(0), e(1), e(10), 0.6 * e(0) + 0.4 * e(10)])
PRED = np.stack([0.7 * e(0) + 0.3 * e(1), 0.6 * e(0) + 0.4 * e(1), 0.6 * e(10) + 0.4 * e(13),
                 0.3 * e(0) + 0.7 * e(10)])


def test_oa_on_pure_blocks_only():
    # pure blocks b1-b3: 2 of 3 right; the mixed b4 is not counted, nor are true negatives
    assert M.oa(TRUE, PRED) == pytest.approx(2 / 3)
    assert M.is_pure(TRUE).tolist() == [True, True, True, False]


def test_op_macro_precision_over_occurring_classes():
    # labels {0, 1, 10}; predictions [0, 0, 10]
    # class 0: TP 1 (b1), FP 1 (b2) -> 0.5; class 1: never predicted -> 0; class 10: 1/1 = 1
    assert M.op(TRUE, PRED) == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    from sklearn.metrics import precision_score

    y, yhat = TRUE[:3].argmax(1), PRED[:3].argmax(1)
    assert M.op(TRUE, PRED) == pytest.approx(
        precision_score(y, yhat, labels=[0, 1, 10], average="macro", zero_division=0))


def test_mae_family_all_blocks():
    assert M.mae(TRUE, PRED) == pytest.approx((0.6 + 1.2 + 0.8 + 0.6) / 4 / 17)       # 0.047059
    assert M.wd(TRUE, PRED) == pytest.approx((0.3 + 0.6 + 0.4 + 0.3) / 4 / 17)        # 0.023529
    # built classes 0..9: b1 0.6, b2 1.2, b3 0, b4 0.3 (each / 10)
    assert M.mae_b(TRUE, PRED) == pytest.approx((0.06 + 0.12 + 0.0 + 0.03) / 4)       # 0.0525
    # natural classes 10..16: b1 0, b2 0, b3 0.8, b4 0.3 (each / 7)
    assert M.mae_n(TRUE, PRED) == pytest.approx((0.8 / 7 + 0.3 / 7) / 4)              # 0.039286


def test_mae_family_mixed_block_only():
    t, p = TRUE[3:], PRED[3:]
    assert M.mae(t, p) == pytest.approx(0.6 / 17)
    assert M.wd(t, p) == pytest.approx(0.3 / 17)
    assert M.mae_b(t, p) == pytest.approx(0.03)
    assert M.mae_n(t, p) == pytest.approx(0.3 / 7)


def test_perfect_prediction_is_zero_error():
    assert M.mae(TRUE, TRUE) == 0 and M.wd(TRUE, TRUE) == 0 and M.oa(TRUE, TRUE) == 1


def test_oa_weighted_wudapt():
    # pure-block confusion: (0,0) = 1, (1,0) = 1, (10,10) = 1; W[0,0] = 1, W[1,0] = 0.92
    assert M.oa_weighted(TRUE, PRED) == pytest.approx((1 + 0.92 + 1) / 3)             # 0.97333
    assert M.oa_weighted(TRUE, PRED, W=np.eye(N_CLASSES)) == pytest.approx(M.oa(TRUE, PRED))


def test_soft_similarity():
    # b4: 0.6*0.3*W00 + 0.6*0.7*W0A + 0.4*0.3*WA0 + 0.4*0.7*WAA = 0.18 + 0.54*0.33 + 0.28
    assert similarity_matrix()[0, 10] == 0.33
    assert M.soft_similarity(TRUE[3:], PRED[3:]) == pytest.approx(0.46 + 0.54 * 0.33)


def test_oa_urban_and_built_natural():
    # built block of the pure confusion: (0,0) = 1, (1,0) = 1 -> trace 1 / sum 2
    assert M.oa_urban(TRUE, PRED) == pytest.approx(0.5)
    # groups: b1 built->built, b2 built->built, b3 natural->natural
    assert M.oa_built_natural(TRUE, PRED) == pytest.approx(1.0)


def test_per_class_mae_r2_and_confusion():
    pcm = M.per_class_mae(TRUE, PRED)
    expected = np.zeros(N_CLASSES)
    expected[[0, 1, 10, 13]] = [(0.3 + 0.6 + 0 + 0.3) / 4, (0.3 + 0.6) / 4, (0.4 + 0.3) / 4,
                                0.4 / 4]
    assert np.allclose(pcm, expected)
    # class 0: t = [1, 0, 0, .6], p = [.7, .6, 0, .3]; SS_res = .09+.36+0+.09 = .54;
    # mean t = .4, SS_tot = .36+.16+.16+.04 = .72; R2 = 1 - .54/.72 = .25
    r2 = M.r2_per_class(TRUE, PRED)
    assert r2[0] == pytest.approx(0.25)
    assert np.isnan(r2[5])                               # class never present: undefined
    cm = M.dominant_confusion(TRUE, PRED)
    assert cm.sum() == 4 and cm[0, 0] == 1 and cm[1, 0] == 1 and cm[10, 10] == 1
    assert cm[0, 10] == 1


def test_evaluate_fractions_subsets():
    mixed = M.evaluate_fractions(TRUE, PRED, subset="mixed")
    allb = M.evaluate_fractions(TRUE, PRED, subset="all")
    assert mixed["subset"] == "mixed" and allb["subset"] == "all"
    assert (mixed["n_pure"], mixed["n_mixed"], mixed["n_subset"], allb["n_subset"]) == (3, 1, 1, 4)
    for k in ("oa", "op", "oa_w"):                       # always on pure blocks
        assert mixed[k] == allb[k]
    assert mixed["oa"] == pytest.approx(2 / 3)
    assert mixed["mae"] == pytest.approx(0.6 / 17) and allb["mae"] == pytest.approx(3.2 / 68)
    assert allb["wd"] == pytest.approx(1.6 / 68) and allb["mae_b"] == pytest.approx(0.0525)
    assert len(allb["per_class_mae"]) == 17 and len(allb["confusion"]) == 17
    with pytest.raises(ValueError):
        M.evaluate_fractions(TRUE, PRED, subset="pure")


def test_empty_subsets_and_bad_input():
    assert np.isnan(M.oa(TRUE[3:], PRED[3:]))            # no pure block
    assert np.isnan(M.mae(TRUE[:0], PRED[:0]))
    with pytest.raises(ValueError):
        M.mae(TRUE[:, :16], PRED[:, :16])
    with pytest.raises(ValueError):
        M.mae(TRUE, PRED[:3])
