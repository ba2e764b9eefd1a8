import numpy as np
import pytest

from lcz_model.baselines import (SPECTRAL_FEATURE_NAMES, MeanSplitBaseline,
                                 RandomForestBaseline, block_spectral_features)
from lcz_model.classes import N_CLASSES


def test_block_spectral_features_inside_mask():
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[:, :2] = (255, 0, 0)          # inside: pure red
    img[:, 2:] = (0, 255, 0)          # outside: green, must be ignored
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, :2] = True
    f = block_spectral_features(img, mask)
    names = list(SPECTRAL_FEATURE_NAMES)
    assert f.shape == (len(names),) and f.dtype == np.float32
    assert f[names.index("r_mean")] == pytest.approx(1.0)
    assert f[names.index("g_mean")] == pytest.approx(0.0)
    assert f[names.index("r_std")] == pytest.approx(0.0)
    assert f[names.index("g_q90")] == pytest.approx(0.0)
    assert f[names.index("brightness_mean")] == pytest.approx(1 / 3)
    assert f[names.index("exg_mean")] == pytest.approx(-1.0)      # 2G - R - B
    assert f[names.index("mask_share")] == pytest.approx(0.5)
    # empty mask falls back to non-black pixels
    g = block_spectral_features(img, np.zeros((4, 4), dtype=bool))
    assert np.isfinite(g).all()
    with pytest.raises(ValueError):
        block_spectral_features(img, np.ones((3, 3), dtype=bool))


def _toy(n_per=20, classes=(0, 5, 16), seed=0):
    rng = np.random.default_rng(seed)
    X, Y = [], []
    for c in classes:
        X.append(rng.normal(loc=10.0 * c, scale=0.5, size=(n_per, 4)))
        y = np.zeros((n_per, N_CLASSES))
        y[:, c] = 1.0
        Y.append(y)
    return np.concatenate(X), np.concatenate(Y)


@pytest.mark.parametrize("mode", ["dominant", "soft"])
def test_random_forest_learns_separable_toy(mode, tmp_path):
    X, Y = _toy()
    Xt, Yt = _toy(n_per=5, seed=1)
    rf = RandomForestBaseline(n_estimators=20, mode=mode, n_jobs=1).fit(X, Y)
    P = rf.predict(Xt)
    assert P.shape == (len(Xt), N_CLASSES)
    assert np.allclose(P.sum(1), 1.0) and (P >= 0).all()
    assert (P.argmax(1) == Yt.argmax(1)).all()
    assert P[:, [1, 2, 3]].sum() == 0                   # unseen classes get 0
    path = tmp_path / "rf.joblib"
    rf.save(path)
    assert np.allclose(RandomForestBaseline.load(path).predict(Xt), P)


def test_random_forest_soft_mode_learns_mixtures():
    rng = np.random.default_rng(0)
    share = rng.uniform(size=200)
    X = share[:, None] + rng.normal(scale=0.01, size=(200, 1))
    Y = np.zeros((200, N_CLASSES))
    Y[:, 0], Y[:, 10] = share, 1 - share
    rf = RandomForestBaseline(n_estimators=50, mode="soft", n_jobs=1,
                              min_samples_leaf=5).fit(X, Y)
    P = rf.predict(np.array([[0.2], [0.8]]))
    assert np.allclose(P.sum(1), 1.0)
    assert P[0, 0] < 0.4 and P[1, 0] > 0.6


def test_mean_split_baseline():
    Y = np.zeros((2, N_CLASSES))
    Y[0, 0] = 1.0
    Y[1, 0], Y[1, 1] = 0.5, 0.5
    P = MeanSplitBaseline().fit(Y).predict(3)
    assert P.shape == (3, N_CLASSES)
    assert P[0, 0] == pytest.approx(0.75) and P[0, 1] == pytest.approx(0.25)
    assert np.allclose(P.sum(1), 1.0)
    with pytest.raises(RuntimeError):
        MeanSplitBaseline().predict(1)
