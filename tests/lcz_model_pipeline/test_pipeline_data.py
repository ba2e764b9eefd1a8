"""lcz_model.data: items, determinism, rare-class oversampling, augmentation."""
from __future__ import annotations

import numpy as np
import torch

from lcz_model.data import AugmentConfig, BlockDataset, rare_classes, to_model_batch
from lcz_model.package import read_package


def test_training_items(synthetic_pkg):
    pkg = read_package(synthetic_pkg)
    ds = BlockDataset(pkg, "train", img_size=32, seed=1)
    it = ds[0]
    assert it["global"].shape == (3, 32, 32) and it["local"].shape == (3, 32, 32)
    assert it["mask"].shape == (1, 32, 32)
    assert (it["global"][:, it["mask"][0] == 0] == 0).all()        # outside the block = 0
    assert it["fractions"].shape == (17,) and abs(float(it["fractions"].sum()) - 1) < 1e-6
    assert it["pure"].shape == (3, 32, 32) and it["pure_label"].dtype == torch.long
    if ds.pure_blocks:
        assert 0 <= int(it["pure_label"]) < 17
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    mb = to_model_batch(batch)
    assert mb["global"].shape == (4, 3, 32, 32) and mb["pure"].shape[0] == mb["pure_labels"].shape[0]
    n_pure = int((batch["pure_label"] >= 0).sum())
    few = to_model_batch(batch, max_pure=1)
    assert few["pure"].shape[0] == few["pure_labels"].shape[0] == min(1, n_pure)
    if n_pure:
        first = int(torch.nonzero(batch["pure_label"] >= 0)[0])
        assert torch.equal(few["pure"][0], batch["pure"][first])


def test_pure_images_augmented_always_unless_told_not_to(synthetic_pkg):
    pkg = read_package(synthetic_pkg)
    assert AugmentConfig().pure_always                                # the default
    plain = BlockDataset(pkg, "train", img_size=32, seed=3,
                         augment=AugmentConfig(scope="none", rare_oversample=1,
                                               pure_always=False))
    always = BlockDataset(pkg, "train", img_size=32, seed=3,
                          augment=AugmentConfig(scope="none", rare_oversample=1))
    assert plain.pure_blocks, "the fixture package has pure training blocks"
    same_global = diff_pure = 0
    for i in range(len(plain)):
        a, b = plain[i], always[i]
        assert int(a["pure_label"]) == int(b["pure_label"])       # same draws, same classes
        same_global += torch.equal(a["global"], b["global"])       # block images untouched
        diff_pure += not torch.equal(a["pure"], b["pure"])
    assert same_global == len(plain)
    assert diff_pure > len(plain) // 2


def test_eval_items_hold_all_local_patches(synthetic_pkg):
    pkg = read_package(synthetic_pkg)
    ds = BlockDataset(pkg, "test", img_size=32, train=False, k_local=8)
    assert len(ds) == len(pkg.split("test"))
    for i in range(len(ds)):
        it = ds[i]
        n = min(len(ds.blocks[i].local_paths), 8)
        assert it["local"].shape == (8, 3, 32, 32)
        assert int(it["local_valid"].sum()) == n and it["local_valid"][:n].all()
        assert (it["local"][n:] == 0).all()


def test_deterministic_per_seed_and_epoch(synthetic_pkg):
    pkg = read_package(synthetic_pkg)
    aug = AugmentConfig(scope="all")
    a = BlockDataset(pkg, "train", img_size=32, seed=7, augment=aug)
    b = BlockDataset(pkg, "train", img_size=32, seed=7, augment=aug, cache=False)
    for e in (1, 2):
        a.set_epoch(e)
        b.set_epoch(e)
        for i in (0, 3, len(a) - 1):
            x, y = a[i], b[i]
            for k in ("global", "local", "pure", "fractions"):
                assert torch.equal(x[k], y[k]), (e, i, k)
    a.set_epoch(1)
    first = [a[i]["index"] for i in range(len(a))]
    a.set_epoch(2)
    assert [a[i]["index"] for i in range(len(a))] != first              # reshuffled per epoch
    c = BlockDataset(pkg, "train", img_size=32, seed=8, augment=aug)
    c.set_epoch(2)
    assert not np.array_equal(c._plan, a._plan)                       # another seed, other order


def test_rare_classes_are_oversampled_and_augmented(synthetic_pkg):
    pkg = read_package(synthetic_pkg)
    train = pkg.split("train")
    rare = rare_classes(train, threshold=10.0)         # generous: every class below 10x median
    assert rare
    n_rare = sum(b.dominant in set(rare) for b in train)
    aug = AugmentConfig(scope="rare", rare_oversample=3, rare_threshold=10.0)
    ds = BlockDataset(pkg, "train", img_size=32, augment=aug)
    assert len(ds) == len(train) + 2 * n_rare
    none = BlockDataset(pkg, "train", img_size=32, augment=AugmentConfig(scope="none"))
    assert len(none) == len(train)
    # an augmented rare block differs from its plain image in some draw; a common one never
    plain = BlockDataset(pkg, "train", img_size=32, augment=AugmentConfig(scope="none"))
    pos = {int(plain._plan[i]): i for i in range(len(plain))}
    changed = False
    for i in range(len(ds)):
        bi = int(ds._plan[i])
        same = torch.equal(ds[i]["global"], plain[pos[bi]]["global"])
        if ds.blocks[bi].dominant in ds._rare_set:
            changed |= not same
        else:
            assert same
    assert changed
    explicit = BlockDataset(pkg, "train", img_size=32,
                            augment=AugmentConfig(rare_classes=("lcz_1", "lcz_g")))
    assert explicit.rare == [0, 16]


def test_augmentation_keeps_outside_zero(synthetic_pkg):
    pkg = read_package(synthetic_pkg)
    ds = BlockDataset(pkg, "train", img_size=64, seed=0,
                      augment=AugmentConfig(scope="all", colour_jitter=0.4, scale=(0.7, 1.3)))
    for i in range(6):
        it = ds[i]
        outside = it["mask"][0] == 0
        assert (it["global"][:, outside] == 0).all()
        assert torch.isfinite(it["global"]).all() and np.isfinite(it["local"].numpy()).all()


def test_pure_sampling_uniform_follows_the_data(synthetic_pkg):
    pkg = read_package(synthetic_pkg)
    ds = BlockDataset(pkg, "train", img_size=32, seed=0,
                      augment=AugmentConfig(scope="none", pure_sampling="uniform"))
    counts = np.bincount([b.dominant for b in ds.pure_blocks], minlength=17)
    drawn = np.zeros(17)
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            drawn[int(ds[i]["pure_label"])] += 1
    present = counts > 0
    assert counts[present].max() > counts[present].min(), "fixture: unequal pure classes"
    # the draws follow the pure blocks' class counts (class-balanced would flatten them)
    share_drawn = drawn[present] / drawn.sum()
    share_data = counts[present] / counts.sum()
    assert np.abs(share_drawn - share_data).max() < 0.06
    try:
        BlockDataset(pkg, "train", augment=AugmentConfig(pure_sampling="nope"))
    except ValueError as e:
        assert "pure_sampling" in str(e)
    else:
        raise AssertionError("a bad pure_sampling must be refused")
