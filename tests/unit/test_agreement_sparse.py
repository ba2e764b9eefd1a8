"""Many interpreters with few per block (a city: 3 of 30): the pairwise statistics pair each
block's own ratings only, and give exactly what pairing every interpreter column gives."""
import itertools

import numpy as np
import pytest

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


def _with_skips(seed):
    X, pres = _sparse(seed=seed)
    skip = pres & (np.random.default_rng(seed + 100).random(pres.shape) < 0.08)
    X[skip] = -1
    return X, pres & ~skip, skip


def _dense_confusion(dom, pres):
    R = pres.shape[1]
    C = np.zeros((R, R, 17, 17), dtype=np.int64)
    for a in range(R):
        for b in range(a, R):
            both = pres[:, a] & pres[:, b]
            flat = np.bincount(dom[both, a] * 17 + dom[both, b], minlength=17 * 17).reshape(17, 17)
            C[a, b], C[b, a] = flat, flat.T
    return C


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_confusion_fleiss_and_bias_equal_the_dense_computations(seed):
    """The city-scale paths: confusion counts over each block's rating pairs, Fleiss' table counted
    directly, bias summed per interpreter: exactly the dense loops' and statsmodels' figures."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    splits, present, skip = _with_skips(seed)
    X, pres, m = agreement._prepare(splits, present)
    dom = X.argmax(axis=2)
    assert np.array_equal(agreement._confusion(dom, pres), _dense_confusion(dom, pres))

    nom, npres, n_cat = agreement._nominal(dom, pres, skip)
    use = npres.sum(axis=1) == 3
    order = np.argsort(~npres[use], axis=1, kind="stable")[:, :3]
    table, _ = aggregate_raters(np.take_along_axis(nom[use], order, axis=1), n_cat=n_cat)
    kappa, info = agreement._fleiss(nom, npres, 3, n_cat)
    assert info["n_blocks"] == int(use.sum()) > 0
    assert kappa == float(fleiss_kappa(table, method="fleiss"))          # to the last bit

    dv = agreement._loo_diff(X, pres, m)
    dense = np.zeros(X.shape)
    dense[dv.b, dv.r] = dv.d
    nb = dv.valid.sum(axis=0)
    den = np.where(nb > 0, nb, np.nan)[:, None]
    bias = agreement._bias(X, pres, m, dv)
    assert np.array_equal(bias["bias_per_class"], dense.sum(axis=0) / den, equal_nan=True)
    assert np.array_equal(bias["mad_per_class"], np.abs(dense).sum(axis=0) / den, equal_nan=True)


def test_campaign_figures_do_not_depend_on_idle_interpreters():
    """Interpreters with no rating at all widen the dense arrays but change no figure."""
    splits, present, skip = _with_skips(7)
    pad = lambda a, fill: np.concatenate([a, np.full((a.shape[0], 9) + a.shape[2:], fill, dtype=a.dtype)], axis=1)  # noqa: E731
    narrow = agreement.campaign_agreement(splits, present, skipped=skip, fleiss_ratings_per_block=3)
    wide = agreement.campaign_agreement(pad(splits, -1), pad(present, False), skipped=pad(skip, False),
                                        fleiss_ratings_per_block=3)
    wide["interpreters"] = wide["interpreters"][:splits.shape[1]]
    for key in ("tv", "dominant_agreement_rate", "fleiss_kappa_dominant", "alpha_nominal_dominant",
                "alpha_interval", "disputed", "interpreters"):
        assert wide[key] == narrow[key], key
