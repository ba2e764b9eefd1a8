"""Training on several processes (DistributedDataParallel, gloo on this CPU) against one process.

Two torchrun ranks train the tiny model (swin_micro, 64 px, GradNorm on) with the global batch
of 10 split 5 + 5 (2 steps an epoch, 16 training items); one process trains the same global
batches in this test process. After epoch 1 (interrupted there) and after epoch 2 (resumed by a
second torchrun on 2 ranks) the weights, the gradients and GradNorm's task weights must match.

Tolerances (float32): the ranks sum their halves of the batch and average over ranks, one
process sums the whole batch, so gradients differ by rounding only: the optimiser's gradient
EMA (exp_avg) must agree to 1e-4 of each tensor's largest value (seen: ~2e-5; elements
whose gradient is pure rounding noise, ~1e-13, are covered by the 1e-12 floor). Weights: AdamW
divides each gradient by its own running RMS, so an element whose gradient is rounding noise
can move differently by a share of the learning rate (1e-3 here); atol 2e-4 = lr/5 (seen:
~4e-5), while the weights move by ~2e-3 per 2 steps (checked, so the comparison can fail).
GradNorm's weights: atol 1e-5. Dropout and drop-path are off: their masks are random per rank.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lcz_model.data import GlobalBatchSampler
from lcz_model.train import TrainConfig, train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LR = 1e-3
W_ATOL = 2e-4          # weights (see the module docstring)
G_RTOL = 1e-4          # gradient EMA, relative to each tensor's largest value
GN_ATOL = 1e-5         # GradNorm task weights


def _cfg(pkg, out, **kw) -> TrainConfig:
    base = dict(dataset=str(pkg), out=str(out), variant="full", encoder="swin_micro", epochs=2,
                batch_size=10, img_size=64, device="cpu", seed=0, progress=False, lr=LR,
                warmup_epochs=0.0, augment={"scope": "rare", "rare_oversample": 1},
                eval_every=2, eval_batch_size=8, threads=1,
                model_kwargs={"fusion_dim": 32, "dropout": 0.0, "drop_path": 0.0})
    base.update(kw)
    return TrainConfig(**base)


def _torchrun(cfg: TrainConfig, record: Path, *extra: str) -> subprocess.CompletedProcess:
    record.mkdir(parents=True, exist_ok=True)
    conf = record / "config.json"
    conf.write_text(json.dumps(cfg.to_dict()))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", "-m", "tests.lcz_model_ddp.ddp_worker",
                        str(conf), str(record), *extra],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False, map_location="cpu")


@pytest.fixture(scope="module")
def runs(synthetic_pkg, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    # one process: 2 epochs, the checkpoint after epoch 1 kept
    single = {}
    train(_cfg(synthetic_pkg, root / "single"),
          callbacks=[lambda e, rec: single.setdefault(e, _load(root / "single" / "checkpoint.pt"))])
    single[2] = _load(root / "single" / "checkpoint.pt")
    # 2 ranks: stopped after epoch 1, then a new torchrun resumes it
    cfg = _cfg(synthetic_pkg, root / "ddp")
    _torchrun(cfg, root / "rec1", "--stop-after", "1")
    ddp1 = _load(root / "ddp" / "checkpoint.pt")
    card1 = json.loads((root / "ddp" / "model_card.json").read_text())
    resumed = _torchrun(_cfg(synthetic_pkg, root / "ddp", resume=True), root / "rec2")
    return {"single": single, "ddp1": ddp1, "card1": card1, "resumed": resumed,
            "ddp2": _load(root / "ddp" / "checkpoint.pt"), "root": root}


def _assert_same_training(one: dict, ddp: dict) -> None:
    assert ddp["epoch"] == one["epoch"] and ddp["step"] == one["step"]
    for k, w in one["model"].items():
        assert torch.allclose(ddp["model"][k].float(), w.float(), atol=W_ATOL, rtol=0), k
    s1, s2 = one["optimizer"]["state"], ddp["optimizer"]["state"]
    assert set(s1) == set(s2)
    for i in s1:
        m1, m2 = s1[i]["exp_avg"], s2[i]["exp_avg"]
        assert float((m1 - m2).abs().max()) <= G_RTOL * float(m1.abs().max()) + 1e-12, i
    g1, g2 = one["gradnorm"], ddp["gradnorm"]
    assert torch.allclose(g2["w"], g1["w"], atol=GN_ATOL, rtol=0)
    assert torch.allclose(g2["initial_losses"], g1["initial_losses"], rtol=1e-5, atol=0)
    for h1, h2 in zip(one["history"], ddp["history"]):
        assert h2["losses"] == pytest.approx(h1["losses"], rel=1e-5)
        assert h2["task_weights"] == pytest.approx(h1["task_weights"], abs=GN_ATOL)


def test_two_ranks_match_one_process_on_the_same_global_batches(runs):
    one = runs["single"]
    # the comparison can fail: the steps moved the weights and GradNorm's weights far more
    moved = max(float((one[2]["model"][k].float() - w.float()).abs().max())
                for k, w in one[1]["model"].items())
    assert moved > 5 * W_ATOL
    assert float((one[2]["gradnorm"]["w"] - 1).abs().max()) > 100 * GN_ATOL
    _assert_same_training(one[1], runs["ddp1"])          # after epoch 1 (2 steps)
    _assert_same_training(one[2], runs["ddp2"])          # after the resumed epoch 2


def test_evaluation_over_two_ranks_matches(runs):
    one, ddp = runs["single"][2]["history"][-1]["test"], runs["ddp2"]["history"][-1]["test"]
    assert set(ddp) == {"mixed", "all"}
    for subset in ("mixed", "all"):
        for k in ("mae", "wd", "oa_w"):
            assert ddp[subset][k] == pytest.approx(one[subset][k], abs=1e-5), (subset, k)


def test_each_item_once_per_epoch_across_ranks(runs, synthetic_pkg):
    n = runs["ddp2"]["dataset"]["train_items_per_epoch"]
    assert n == 16                       # 24 blocks: 6 test, 2 val, 16 train
    for rec, epoch in (("rec1", "1"), ("rec2", "2")):
        per_rank = [json.loads((runs["root"] / rec / f"items-rank{r}.json").read_text())[epoch]
                    for r in (0, 1)]
        assert len(per_rank[0]) == len(per_rank[1]) == n // 2       # 5 + 4 each
        assert sorted(per_rank[0] + per_rank[1]) == list(range(n))  # each item exactly once


def test_only_rank_0_writes_and_resume_continues(runs):
    root = runs["root"]
    for rec in ("rec1", "rec2"):
        assert not (root / rec / "writes-rank1.txt").exists()
        written = (root / rec / "writes-rank0.txt").read_text().split()
        assert sorted(written) == ["checkpoint.pt", "learning_curve.png", "log.csv",
                                   "model_card.json"]                # one epoch's files, once
    assert runs["ddp1"]["epoch"] == 1 and not runs["card1"]["finished"]
    assert "resuming" in runs["resumed"].stderr and "at epoch 2/2" in runs["resumed"].stderr
    card = json.loads((root / "ddp" / "model_card.json").read_text())
    assert card["world_size"] == 2 and card["finished"] and card["epochs_done"] == 2
    assert [m["epoch"] for m in card["metrics"]] == [1, 2]
    assert card["metrics"][0] == runs["card1"]["metrics"][0]         # epoch 1 not redone
    assert sorted(p.name for p in (root / "ddp").iterdir()) == [
        "checkpoint.pt", "learning_curve.png", "log.csv", "model_card.json"]


@pytest.mark.parametrize("n,batch,world", [(18, 10, 2), (21, 10, 2), (25, 8, 3), (7, 3, 3),
                                           (40, 8, 4), (5, 5, 1), (23, 20, 2)])
def test_global_batch_sampler_partitions_each_global_batch(n, batch, world):
    ranks = [list(GlobalBatchSampler(n, batch, world, r)) for r in range(world)]
    single = [list(b) for b in GlobalBatchSampler(n, batch, 1, 0)]
    assert len({len(r) for r in ranks}) == 1                     # same step count on every rank
    seen = []
    for step, parts in enumerate(zip(*ranks)):
        assert all(parts)                                       # no rank has an empty batch
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        together = sorted(sum(parts, []))
        seen += together
        if step < len(ranks[0]) - 1:                            # all but the last: as one process
            assert together == single[step]
    assert seen == list(range(n))                               # every item exactly once
    if world == 1:                                              # exactly today's batches
        assert single == [list(range(s, min(s + batch, n))) for s in range(0, n, batch)]


def test_global_batch_sampler_refuses_too_few_items():
    with pytest.raises(ValueError, match="at least one block per"):
        GlobalBatchSampler(20, 2, 3, 0)
    with pytest.raises(ValueError, match="cannot feed"):
        GlobalBatchSampler(2, 4, 3, 0)
