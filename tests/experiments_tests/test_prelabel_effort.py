"""Pre-label effort and calibration (issue #15, item 3): the key count follows the workspace's
keys, the reliability bins are the blocks' own numbers, and the script writes its tables and
figure for trained runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import prelabel_effort as pe
from lcz_model.classes import N_CLASSES


def test_to_tens_sums_to_ten_by_largest_remainder():
    f = np.zeros((3, N_CLASSES))
    f[0, [0, 1, 2]] = [0.34, 0.33, 0.33]
    f[1, 5] = 1.0
    f[2, [3, 4]] = [0.26, 0.74]
    t = pe.to_tens(f)
    assert (t.sum(1) == 10).all()
    assert t[0, :3].tolist() == [4, 3, 3]
    assert t[1, 5] == 10 and t[2, 3] == 3 and t[2, 4] == 7


def test_keys_follow_the_workspace():
    target = np.zeros((1, N_CLASSES), int)
    target[0, [0, 1, 2]] = [5, 3, 2]
    empty = np.zeros_like(target)
    assert pe.keys_needed(empty, target)[0] == 7          # 3 classes x (key + digit) + Enter
    assert pe.keys_needed(target, target)[0] == 1         # accepted as it is: Enter
    near = target.copy()
    near[0, [1, 3]] = [2, 1]                             # one share off, one stray class
    assert pe.keys_needed(near, target)[0] == 5


def test_reliability_bins_are_the_blocks_means():
    pred = np.arange(10, dtype=float)
    real = 2 * pred
    bins = pe.reliability(pred, real, bins=5)
    assert [b["n"] for b in bins] == [2] * 5
    for b in bins:
        assert b["real"] == pytest.approx(2 * b["predicted"])


@pytest.mark.slow
def test_prelabel_effort_writes_tables_and_figure(tiny_pkg, tmp_path):
    from lcz_model.train import TrainConfig, train

    runs = [train(TrainConfig(dataset=str(tiny_pkg), out=str(tmp_path / f"r{s}"), variant="full",
                              encoder="swin_micro", epochs=1, batch_size=8, img_size=64, device="cpu",
                              seed=s, progress=False, threads=1, lr=3e-3,
                              model_kwargs={"fusion_dim": 32})) for s in (0, 1)]
    out = tmp_path / "out"
    assert pe.main([*map(str, runs), "--dataset", str(tiny_pkg), "--out", str(out), "--mc-samples", "3"]) == 0
    res = json.loads((out / "prelabel.json").read_text())
    assert len(res) == 2
    for r in res:
        e = r["effort"]
        assert e["empty"]["l1_mean"] == pytest.approx(1000.0)      # from nothing: the whole label
        assert len(e["model"]["keys"]) == r["blocks"]
        assert all(k % 2 == 1 and 1 <= k <= 2 * N_CLASSES + 1 for k in e["model"]["keys"])
        assert -1 <= r["calibration"]["spearman"]["predicted error"]["rho"] <= 1
        assert sum(b["n"] for b in r["calibration"]["reliability"]) == r["blocks"]
    md = (out / "prelabel.md").read_text()
    assert "| model |" in md and "Spearman" in md
    assert (out / "prelabel.png").read_bytes()[:4] == b"\x89PNG"
