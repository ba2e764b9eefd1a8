"""Many interpreters with few per block (a city: 3 of 30): the pairwise statistics pair each
block's own ratings only, and give exactly what pairing every interpreter column gives."""
import itertools

import numpy as np

from annotator import agreement


def _sparse(B=300, R=30, per_block=3, seed=1):
    rng = np.random.default_rng(seed)
    X = np.full((B, R, 17), -1, dtype=np.int64)
    pres = np.zeros((B, R), dtype=bool)
    for b in range(B):
        for r in rng.choice(R, size=rng.integers(1, per_block + 1), replace=False):
            p = rng.multinomial(1000, rng.dirichlet(np.full(17, 0.3)))
            X[b, r], pres[b, r] = p, True
    return X, pres


def test_tv_and_weighted_agreement_equal_the_all_pairs_definition():
    X, pres = _sparse()
    tv = agreement.pairwise_tv(X, pres)
    wda = agreement.weighted_dominant_agreement(X, pres)
    W = agreement.similarity_matrix()
    for b in range(X.shape[0]):
        raters = np.flatnonzero(pres[b])
        pairs = list(itertools.combinations(raters, 2))
        if not pairs:
            assert np.isnan(tv[b]) and np.isnan(wda[b])
            continue
        l1 = sum(np.abs(X[b, i] - X[b, j]).sum() for i, j in pairs)
        assert np.isclose(tv[b], l1 / len(pairs) / 2000, rtol=0, atol=1e-15)
        w = sum(W[X[b, i].argmax(), X[b, j].argmax()] for i, j in pairs) / len(pairs)
        assert np.isclose(wda[b], w, rtol=0, atol=1e-12)


def test_campaign_figures_from_own_ratings_equal_the_dense_functions():
    X, pres = _sparse(seed=3)
    out = agreement.campaign_agreement(X, pres, include_blocks=True)
    alpha = agreement.krippendorff_alpha_interval_per_class(X, pres)       # every interpreter column
    got = [out["alpha_interval"]["per_class"][k] for k in agreement.KEYS]
    assert np.allclose(np.asarray(got, dtype=float), alpha, rtol=0, atol=1e-12, equal_nan=True)
    cons = agreement.consensus(X, pres)
    rated = pres.any(axis=1)
    assert out["blocks"]["consensus_dominant"] == np.where(rated, cons.argmax(axis=1), -1).tolist()
    tv = np.asarray([np.nan if v is None else v for v in out["blocks"]["tv"]], dtype=float)
    assert np.allclose(tv, agreement.pairwise_tv(X, pres), rtol=0, atol=1e-12, equal_nan=True)
