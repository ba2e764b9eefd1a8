"""mc_predict on a tiny swin_micro MSU-Net: shapes, sums, dropout really samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lcz_model.acquisition import bald, mc_predict
from lcz_model.classes import N_CLASSES
from lcz_model.msunet import build_model

SIZE = 64


def _chips(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        g = rng.integers(1, 255, (80, 80, 3), dtype=np.uint8)
        mask = np.full((80, 80), 255, np.uint8)
        mask[:10] = 0
        loc = [rng.integers(1, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(1 + i % 3)]
        out.append({"global_rgb": g, "mask": mask, "local": loc})
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    # dropout raised from the default 0.1 so samples surely differ on a random-init model
    m = build_model("full", encoder="swin_micro", img_size=SIZE, fusion_dim=32, dropout=0.3)
    with torch.no_grad():                       # spread the head's logits (random init is ~flat)
        m.head.fc.weight.normal_(0, 1.0)
    return m.eval()


def test_mc_predict_shapes_sums_and_spread(model):
    chips = _chips(5)
    torch.manual_seed(1)
    mean, samples = mc_predict(model, iter(chips), n_samples=4, batch_size=2, k_local=4)
    assert samples.shape == (4, 5, N_CLASSES) and mean.shape == (5, N_CLASSES)
    np.testing.assert_allclose(samples.sum(-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(mean.sum(-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(mean, samples.mean(0), atol=1e-9)
    assert np.all(samples >= 0)
    # dropout is on: the samples of one block differ, so BALD is positive
    assert np.abs(samples[0] - samples[1]).max() > 1e-4
    assert np.all(bald(samples) > 0)
    # MC dropout is switched off again afterwards: plain predictions are deterministic
    assert not model._mc_dropout and not model.training


def test_mc_predict_repeatable_with_seed_and_matches_batching(model):
    chips = _chips(3, seed=2)
    torch.manual_seed(7)
    m1, s1 = mc_predict(model, chips, n_samples=3, batch_size=3, k_local=4)
    torch.manual_seed(7)
    m2, s2 = mc_predict(model, chips, n_samples=3, batch_size=3, k_local=4)
    np.testing.assert_array_equal(s1, s2)
    # one sample without dropout randomness (p=0) equals the plain prediction
    model.head.drop.p = 0.0
    try:
        from lcz_model.predict import predict_blocks
        mean, samples = mc_predict(model, chips, n_samples=2, batch_size=2, k_local=4)
        ref = predict_blocks(model, chips, batch_size=2, k_local=4)
        np.testing.assert_allclose(samples[0], samples[1], atol=1e-7)
        np.testing.assert_allclose(mean, ref, atol=1e-5)
    finally:
        model.head.drop.p = 0.3


def test_mc_predict_empty(model):
    mean, samples = mc_predict(model, [], n_samples=3)
    assert mean.shape == (0, N_CLASSES) and samples.shape == (3, 0, N_CLASSES)


def test_mc_predict_full_mode_samples_whole_network(model):
    chips = _chips(3, seed=4)
    torch.manual_seed(3)
    mean, samples = mc_predict(model, chips, n_samples=3, batch_size=2, k_local=4, mode="full")
    assert samples.shape == (3, 3, N_CLASSES)
    np.testing.assert_allclose(samples.sum(-1), 1.0, atol=1e-9)
    assert np.abs(samples[0] - samples[1]).max() > 1e-4
    assert not model.training                        # back in eval mode
    valid_before = model.bank.valid.clone()
    mc_predict(model, chips, n_samples=2, mode="full")
    assert torch.equal(model.bank.valid, valid_before)   # no endmember-bank update
    with pytest.raises(ValueError, match="MC mode"):
        mc_predict(model, chips, mode="encoder")
