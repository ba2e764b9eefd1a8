"""Honest evaluation (issue #15, item 1): epochs are chosen on the validation split only, the
test split is read once, after the last epoch, on the selected weights.

Two ways to fail if selection ever reads test: every evaluation is recorded with its split and
when it ran; and a copy of the package whose TEST labels are scrambled must select the same
epoch and end with the same weights (only the reported test figures may differ).
"""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

import lcz_model.train as lcz_train
from lcz_model.classes import KEYS
from lcz_model.package import PackageError, read_package
from lcz_model.train import TrainConfig, train, weights_hash

pytestmark = pytest.mark.slow

EPOCHS = 4


def _cfg(pkg, out, **kw):
    base = dict(dataset=str(pkg), out=str(out), variant="baseline", encoder="swin_micro",
                epochs=EPOCHS, batch_size=8, img_size=64, device="cpu", seed=0, progress=False,
                augment={"scope": "none"}, eval_batch_size=8, warmup_epochs=0.5, threads=1,
                lr=3e-3)
    base.update(kw)
    return TrainConfig(**base)


def _copy(pkg, dst):
    shutil.copytree(pkg, dst)
    (dst / "SHA256SUMS").unlink()            # edited below; the reader does not need it
    return dst


def _scramble_test_labels(pkg):
    """Every test block's label replaced by another (pure LCZ G), the rest unchanged."""
    test = set((pkg / "splits" / "test.txt").read_text().split())
    rows = list(csv.reader(open(pkg / "labels.csv")))
    for r in rows[1:]:
        if r[0] in test:
            r[1:] = ["0"] * (len(KEYS) - 1) + ["1"]
    with open(pkg / "labels.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


@pytest.fixture(scope="module")
def runs(synthetic_pkg, tmp_path_factory):
    root = tmp_path_factory.mktemp("sel")
    calls = []
    real = lcz_train._evaluate

    def recording(cfg, st, data, device, split):
        calls.append((split, st.epoch))
        return real(cfg, st, data, device, split)

    lcz_train._evaluate = recording
    try:
        clean = train(_cfg(synthetic_pkg, root / "clean"))
        clean_calls = list(calls)
        poisoned_pkg = _copy(synthetic_pkg, root / "poisoned-pkg")
        _scramble_test_labels(poisoned_pkg)
        poisoned = train(_cfg(poisoned_pkg, root / "poisoned"))
    finally:
        lcz_train._evaluate = real
    load = lambda run: (json.loads((run / "model_card.json").read_text()),  # noqa: E731
                        torch.load(run / "checkpoint.pt", weights_only=False))
    return {"clean": load(clean), "poisoned": load(poisoned), "calls": clean_calls,
            "clean_run": clean}


def test_package_has_a_disjoint_val_split(synthetic_pkg):
    pkg = read_package(synthetic_pkg, verify=True)
    ids = {s: {b.block_id for b in pkg.split(s)} for s in ("train", "val", "test")}
    assert all(ids.values())
    assert not (ids["val"] & ids["test"]) and not (ids["val"] & ids["train"])
    assert not (ids["train"] & ids["test"])
    assert pkg.meta["has_val_split"] and pkg.meta["counts"]["val"] == len(ids["val"])
    # and every block's local patches carry their box in the global image
    assert all(b.local_boxes and len(b.local_boxes) == len(b.local_paths) for b in pkg.blocks)


def test_test_is_read_once_after_the_last_epoch(runs):
    assert runs["calls"] == [("val", e) for e in range(1, EPOCHS + 1)] + [("test", EPOCHS)]


def test_selected_epoch_is_the_val_minimum_and_its_weights_are_kept(runs):
    card, ck = runs["clean"]
    val = {m["epoch"]: m["val"]["mixed"]["mae"] for m in card["metrics"]}
    assert all(v is not None for v in val.values())
    best = min(val, key=lambda e: (val[e], e))
    assert card["selected_epoch"] == best == ck["selection"]["epoch"]
    assert card["selection"]["split"] == "val" and "val MAE (mixed blocks)" in card["selection"]["rule"]
    assert [m["epoch"] for m in card["metrics"] if m["test"]] == [EPOCHS]
    assert card["test_metrics_of_these_weights"]["all"]["mae"] == pytest.approx(
        card["metrics"][-1]["test"]["all"]["mae"])
    # the checkpoint's model (what predict loads) is the selected epoch's; the last epoch's is
    # kept apart for --resume when they differ
    assert card["weights_sha256"] == weights_hash(ck["model"])
    assert ("last_model" in ck) == (best != EPOCHS)


def test_scrambled_test_labels_change_nothing_but_the_test_figures(runs):
    (c1, k1), (c2, k2) = runs["clean"], runs["poisoned"]
    assert c1["selected_epoch"] == c2["selected_epoch"]
    assert [m["val"] for m in c1["metrics"]] == [m["val"] for m in c2["metrics"]]
    assert c1["weights_sha256"] == c2["weights_sha256"]            # the same weights kept
    assert c1["test_metrics_of_these_weights"]["all"]["mae"] != pytest.approx(
        c2["test_metrics_of_these_weights"]["all"]["mae"])          # the poison did reach test


def test_a_package_without_val_loads_and_training_carves_one(synthetic_pkg, tmp_path):
    old = _copy(synthetic_pkg, tmp_path / "old")
    val = (old / "splits" / "val.txt").read_text()
    with open(old / "splits" / "train.txt", "a") as f:
        f.write(val)
    (old / "splits" / "val.txt").unlink()
    pkg = read_package(old)
    assert pkg.meta["counts"]["val"] == 0 and not pkg.meta["has_val_split"]
    carved = pkg.carve_val(0.1, seed=0)
    assert carved and carved == read_package(old).carve_val(0.1, seed=0)   # seeded
    assert {b.block_id for b in pkg.split("val")} == set(carved)
    assert not set(carved) & {b.block_id for b in pkg.split("test")}
    run = train(_cfg(old, tmp_path / "run", epochs=1))
    card = json.loads((run / "model_card.json").read_text())
    assert "carved from the package's train split" in card["dataset"]["val_source"]
    assert card["dataset"]["counts"]["val"] == len(carved) and card["selected_epoch"] == 1


def test_val_overlapping_test_is_refused(synthetic_pkg, tmp_path):
    bad = _copy(synthetic_pkg, tmp_path / "bad")
    t = (bad / "splits" / "test.txt").read_text().split()[0]
    with open(bad / "splits" / "val.txt", "a") as f:
        f.write(t + "\n")
    with pytest.raises(PackageError, match="in both splits/val.txt and splits/test.txt"):
        read_package(bad)


def test_no_val_at_all_keeps_the_last_epoch(synthetic_pkg, tmp_path):
    old = _copy(synthetic_pkg, tmp_path / "old")
    (old / "splits" / "val.txt").unlink()          # its blocks are then in no split
    run = train(_cfg(old, tmp_path / "run", epochs=2, val_fraction=0.0))
    card = json.loads((run / "model_card.json").read_text())
    assert card["selection"]["split"] is None and card["selected_epoch"] == 2
    assert all(m["val"] == {} for m in card["metrics"])
    assert card["test_metrics_of_these_weights"]["all"]["mae"] is not None
    assert np.isfinite(card["metrics"][-1]["test"]["mixed"]["mae"])
