"""Known-answer tests of the acquisition scores and the batch selection."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lcz_model import acquisition as acq
from lcz_model.classes import N_CLASSES


def onehot(i, n=N_CLASSES):
    v = np.zeros(n)
    v[i] = 1.0
    return v


def split(**fr):
    v = np.zeros(N_CLASSES)
    for k, x in fr.items():
        v[int(k[1:])] = x
    return v


UNIFORM = np.full(N_CLASSES, 1.0 / N_CLASSES)


def test_entropy_known_answers():
    h = acq.entropy(np.stack([UNIFORM, onehot(3), split(c0=0.5, c1=0.5)]))
    assert h.shape == (3,)
    assert h[0] == pytest.approx(math.log(17), abs=1e-12)
    assert h[1] == 0.0                                      # 0 log 0 = 0, no NaN
    assert h[2] == pytest.approx(math.log(2), abs=1e-12)
    # hand-worked: (0.7, 0.2, 0.1)
    want = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert acq.entropy(split(c0=.7, c1=.2, c2=.1)[None])[0] == pytest.approx(want, abs=1e-12)


def test_margin_known_answers():
    m = acq.margin(np.stack([split(c0=0.5, c1=0.5), onehot(16), split(c4=0.6, c9=0.3, c2=0.1),
                             UNIFORM]))
    assert m[0] == pytest.approx(1.0)                       # tie at the top: most useful
    assert m[1] == pytest.approx(0.0)                       # pure split: least useful
    assert m[2] == pytest.approx(1 - (0.6 - 0.3))
    assert m[3] == pytest.approx(1.0)


def test_bald_zero_when_samples_agree():
    p = np.stack([split(c0=.7, c1=.2, c2=.1), UNIFORM, onehot(5)])
    samples = np.repeat(p[None], 6, axis=0)                 # (S=6, N=3, 17), all the same
    np.testing.assert_allclose(acq.bald(samples), 0.0, atol=1e-12)


def test_bald_hand_worked_two_samples():
    # block 0: samples (1,0) and (0,1): H(mean) = ln 2, each sample H = 0 -> I = ln 2
    # block 1: samples (0.8,0.2) and (0.2,0.8): H(mean) = ln 2, each H = h(0.8) -> ln 2 - h(0.8)
    h08 = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    s = np.stack([np.stack([onehot(0), split(c0=.8, c1=.2)]),
                  np.stack([onehot(1), split(c0=.2, c1=.8)])])        # (2, 2, 17)
    b = acq.bald(s)
    assert b[0] == pytest.approx(math.log(2), abs=1e-12)
    assert b[1] == pytest.approx(math.log(2) - h08, abs=1e-12)
    assert b[1] == pytest.approx(0.19274, abs=1e-5)


def test_bald_at_most_entropy_of_mean():
    rng = np.random.default_rng(0)
    s = rng.dirichlet(np.full(N_CLASSES, 0.3), size=(8, 50))
    b = acq.bald(s)
    assert np.all(b >= 0) and np.all(b <= acq.entropy(s.mean(0)) + 1e-12)


def test_score_dispatch_and_random():
    mean = np.stack([UNIFORM, onehot(0)])
    np.testing.assert_allclose(acq.score("entropy", mean=mean), acq.entropy(mean))
    np.testing.assert_allclose(acq.score("margin", mean=mean), acq.margin(mean))
    samples = np.stack([mean, mean[::-1]])
    np.testing.assert_allclose(acq.score("bald", samples=samples), acq.bald(samples))
    # entropy from samples alone uses their mean
    np.testing.assert_allclose(acq.score("entropy", samples=samples),
                               acq.entropy(samples.mean(0)))
    r1 = acq.score("random", mean=mean, seed=3)
    assert r1.shape == (2,) and np.all((r1 >= 0) & (r1 < 1))
    np.testing.assert_array_equal(r1, acq.random_scores(2, 3))
    assert not np.array_equal(acq.random_scores(20, 3), acq.random_scores(20, 4))
    assert acq.STRATEGIES == {"bald", "entropy", "margin", "random"}
    with pytest.raises(ValueError, match="unknown strategy"):
        acq.score("coreset", mean=mean)
    with pytest.raises(ValueError, match="samples"):
        acq.score("bald", mean=mean)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="17"):
        acq.entropy(np.ones((2, 5)) / 5)
    with pytest.raises(ValueError, match="NaN"):
        acq.margin(np.full((1, N_CLASSES), np.nan))


def test_select_batch_by_score_without_guard():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.7])
    # ties broken by the lower index
    np.testing.assert_array_equal(acq.select_batch(s, None, 3), [1, 3, 4])
    np.testing.assert_array_equal(acq.select_batch(s, None, 10), [1, 3, 4, 2, 0])
    np.testing.assert_array_equal(acq.select_batch(s, None, 2, exclude=[1]), [3, 4])
    assert acq.select_batch(s, None, 0).shape == (0,)
    # NaN scores go last
    np.testing.assert_array_equal(acq.select_batch([np.nan, 0.2, 0.1], None, 3), [1, 2, 0])


def test_select_batch_skips_near_duplicates():
    feats = np.stack([onehot(0), onehot(0), onehot(0), split(c0=.5, c1=.5), onehot(7),
                      split(c0=.98, c1=.02)])
    scores = np.array([0.9, 0.9, 0.9, 0.5, 0.4, 0.8])
    # three identical candidates at the top: only one of them is chosen with the guard on;
    # block 5 (TV 0.02 from them) is a near-duplicate too
    got = acq.select_batch(scores, feats, 3)          # default guard (TV 0.1)
    np.testing.assert_array_equal(got, [0, 3, 4])
    # guard off: plain score order
    np.testing.assert_array_equal(acq.select_batch(scores, feats, 3, diversity=0), [0, 1, 2])
    # fewer distinct candidates than k: filled with the skipped ones in score order
    np.testing.assert_array_equal(acq.select_batch(scores, feats, 5, diversity=0.05),
                                  [0, 3, 4, 1, 2])
    # cosine metric on embeddings: parallel vectors are duplicates
    emb = np.array([[1.0, 0], [2.0, 0], [0, 1.0]])
    np.testing.assert_array_equal(
        acq.select_batch([3, 2, 1], emb, 2, diversity=0.01, metric="cosine"), [0, 2])


def test_select_batch_deterministic_and_valid():
    rng = np.random.default_rng(1)
    feats = rng.dirichlet(np.full(N_CLASSES, 0.5), size=200)
    scores = np.round(rng.random(200), 2)                  # many ties
    a = acq.select_batch(scores, feats, 20, diversity=0.3)
    b = acq.select_batch(scores.copy(), feats.copy(), 20, diversity=0.3)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 20 and len(set(a.tolist())) == 20 and a.dtype == np.int64
    d = acq.pairwise_distance(feats[a], feats[a])
    assert d[~np.eye(20, dtype=bool)].min() >= 0.3


def test_pairwise_distance_tv():
    d = acq.pairwise_distance(np.stack([onehot(0), UNIFORM]), np.stack([onehot(1)]))
    assert d[0, 0] == pytest.approx(1.0)
    assert d[1, 0] == pytest.approx(1 - 1 / 17)
