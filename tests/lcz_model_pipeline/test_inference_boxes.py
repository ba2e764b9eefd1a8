"""Live inference gives MSU-Net's DCAF each local patch's box only when the run trained on boxes
(issue #15 follow-up): boxes are computed from the cut chips exactly as the export writes
images/local_boxes.csv; a run whose package had no boxes file gets none."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from lcz_model.acquisition import mc_predict
from lcz_model.chips import cut_block_chips
from lcz_model.package import LOCAL_BOXES_FILE, local_boxes, read_package
from lcz_model.package_writer import write_sha256sums
from lcz_model.predict import load_model, model_uses_local_boxes, predict_blocks, prepared_batches
from lcz_model.train import TrainConfig, train

pytestmark = pytest.mark.slow


def _cfg(pkg, out):
    return TrainConfig(dataset=str(pkg), out=str(out), variant="full", encoder="swin_micro", epochs=1,
                       batch_size=8, img_size=64, device="cpu", seed=0, progress=False,
                       augment={"scope": "rare", "rare_oversample": 1}, eval_batch_size=8,
                       warmup_epochs=0.5, threads=1)


@pytest.fixture(scope="module")
def runs(synthetic_pkg, tmp_path_factory):
    """A 1-epoch run on the synthetic package (it has images/local_boxes.csv) and one on a copy
    without that file (as packages exported before it)."""
    root = tmp_path_factory.mktemp("box-runs")
    bare = root / "pkg-no-boxes"
    shutil.copytree(synthetic_pkg, bare)
    (bare / LOCAL_BOXES_FILE).unlink()
    (bare / "SHA256SUMS").unlink()
    write_sha256sums(bare)
    return {"boxes": train(_cfg(synthetic_pkg, root / "boxes")), "none": train(_cfg(bare, root / "none")),
            "pkg": synthetic_pkg}


def test_the_card_says_which_run_trained_on_boxes(runs):
    assert json.loads((runs["boxes"] / "model_card.json").read_text())["dataset"]["local_boxes"] is True
    assert json.loads((runs["none"] / "model_card.json").read_text())["dataset"]["local_boxes"] is False
    assert model_uses_local_boxes(load_model(runs["boxes"])[0])
    assert not model_uses_local_boxes(load_model(runs["none"])[0])


def _multi_patch_chips(pkg):
    blocks = [b for b in read_package(pkg).blocks if len(b.local_paths) >= 2][:4]
    assert blocks, "fixture: no block with several local patches"
    return [b.load_chips() for b in blocks], blocks


def _boxes_seen(model):
    """The local_boxes argument of each forward pass of the (real) model, recorded by a hook."""
    seen = []
    model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw.get("local_boxes")), with_kwargs=True)
    return seen


def test_a_run_trained_on_boxes_predicts_with_them_and_one_without_never(runs):
    chips, blocks = _multi_patch_chips(runs["pkg"])
    expected = torch.full((len(blocks), 4, 4), float("nan"))
    for i, b in enumerate(blocks):
        kb = torch.tensor(b.local_boxes[:4], dtype=torch.float32)
        expected[i, :len(kb)] = kb
    with_boxes, _ = load_model(runs["boxes"])
    seen = _boxes_seen(with_boxes)
    auto = predict_blocks(with_boxes, chips, batch_size=4, k_local=4)       # as the checkpoint says
    assert len(seen) == 1 and seen[0] is not None
    torch.testing.assert_close(seen[0], expected, equal_nan=True)
    np.testing.assert_allclose(auto, predict_blocks(runs["boxes"], chips, batch_size=4, k_local=4), atol=1e-7)
    # the live prediction jobs' path (MC dropout, whole network) and the cheap head-only one
    for mode in ("full", "head"):
        seen.clear()
        mc_predict(with_boxes, chips, n_samples=2, batch_size=4, k_local=4, mode=mode)
        assert seen and all(s is not None for s in seen), mode
        torch.testing.assert_close(seen[0], expected, equal_nan=True)
    without, _ = load_model(runs["none"])
    seen = _boxes_seen(without)
    predict_blocks(without, chips, batch_size=4, k_local=4)
    mc_predict(without, chips, n_samples=2, batch_size=4, k_local=4, mode="full")
    mc_predict(without, chips, n_samples=2, batch_size=4, k_local=4, mode="head")
    assert seen and all(s is None for s in seen)     # never learned the terms: never given boxes


def test_batches_carry_the_boxes_the_export_writes(runs, tmp_path):
    """Chips cut live from a raster get the boxes images/local_boxes.csv would record for them;
    chips read from a package get the package's."""
    import rasterio
    from rasterio.transform import from_origin
    from shapely.geometry import box as rect

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(3, 200, 200), dtype=np.uint8)
    tif = tmp_path / "r.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=200, height=200, count=3, dtype="uint8",
                       crs="EPSG:3067", transform=from_origin(0, 200, 1, 1)) as dst:
        dst.write(img)
    chips = cut_block_chips(tif, rect(10, 20, 150, 110), size=32, max_local=8)
    assert chips.n_local >= 4
    expected = local_boxes(chips.local_origins, chips.global_window, 32)
    assert chips.boxes() == expected
    (_, _, valid, boxes), = prepared_batches([chips], img_size=32, k_local=8, local_boxes=True)
    n = chips.n_local
    np.testing.assert_allclose(boxes[0, :n].numpy(), np.array(expected, dtype=np.float32))
    assert torch.isnan(boxes[0, n:]).all() and valid[0, :n].all() and not valid[0, n:].any()
    (*_, none), = prepared_batches([chips], img_size=32, k_local=8)
    assert none is None
    pkg_chips, blocks = _multi_patch_chips(runs["pkg"])
    (*_, from_pkg), = prepared_batches(pkg_chips[:1], img_size=64, k_local=8, local_boxes=True)
    k = len(blocks[0].local_boxes)
    np.testing.assert_allclose(from_pkg[0, :k].numpy(), np.array(blocks[0].local_boxes, dtype=np.float32))


def test_predict_cli_takes_the_val_split(runs, tmp_path):
    from lcz_model.predict import main

    val = [b.block_id for b in read_package(runs["pkg"]).split("val")]
    assert val, "fixture: the synthetic package has no val split"
    out = tmp_path / "val.csv"
    assert main(["--checkpoint", str(runs["boxes"]), "--dataset", str(runs["pkg"]), "--split", "val",
                 "--out", str(out), "--device", "cpu"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == val
