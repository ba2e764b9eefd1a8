"""Whole-model warm starts (issue #15, item 3): `TrainConfig.init_from` starts a run from every
weight of another run's selected model (encoder, guidance branches, fusion, head, endmember
bank); the optimiser and schedule start fresh; another architecture is refused, not half-loaded.
"""
from __future__ import annotations

import pytest
import torch

import lcz_model.train as lcz_train
from lcz_model.checkpoints import load_checkpoint
from lcz_model.train import TrainConfig, train

pytestmark = pytest.mark.slow


def _cfg(pkg, out, **kw):
    base = dict(dataset=str(pkg), out=str(out), variant="full", encoder="swin_micro", epochs=1,
                batch_size=8, img_size=64, device="cpu", seed=0, progress=False,
                augment={"scope": "none"}, eval_batch_size=8, threads=1, lr=3e-3)
    base.update(kw)
    return TrainConfig(**base)


def test_init_from_starts_from_every_weight_of_the_source(synthetic_pkg, tmp_path, monkeypatch):
    src = train(_cfg(synthetic_pkg, tmp_path / "src"))
    source = load_checkpoint(src)["model"]
    seen = {}
    real = lcz_train._train_epoch

    def first_epoch(cfg, st, *a, **k):        # the weights the new run starts its first epoch with
        seen.setdefault("start", {k_: v.detach().clone() for k_, v in st.model.state_dict().items()})
        seen.setdefault("opt_state", len(st.opt.state))
        return real(cfg, st, *a, **k)

    monkeypatch.setattr(lcz_train, "_train_epoch", first_epoch)
    run = train(_cfg(synthetic_pkg, tmp_path / "warm", init_from=str(src), seed=1))
    assert set(seen["start"]) == set(source)
    for k, v in source.items():
        assert torch.equal(seen["start"][k], v), k          # every tensor, buffers included
    assert seen["opt_state"] == 0                          # a fresh optimiser
    card = load_checkpoint(run)
    assert card["train_config"]["init_from"] == str(src)
    # the new run trained on from there: its weights moved
    assert any(not torch.equal(card["model"][k], v) for k, v in source.items() if v.is_floating_point())


def test_init_from_another_architecture_is_refused(synthetic_pkg, tmp_path):
    src = train(_cfg(synthetic_pkg, tmp_path / "base", variant="baseline"))
    with pytest.raises(ValueError, match="not this model's architecture"):
        train(_cfg(synthetic_pkg, tmp_path / "full", init_from=str(src)))
    assert not (tmp_path / "full" / "checkpoint.pt").exists()


def test_runs_record_their_chip_size_for_inference(synthetic_pkg, tmp_path):
    from lcz_model.predict import load_model, model_chip_size

    run = train(_cfg(synthetic_pkg, tmp_path / "r", variant="baseline"))
    ck = load_checkpoint(run)
    assert ck["dataset"]["chip_size"] == 64                 # the package's chips are 64 px
    model, _ = load_model(run)
    assert model_chip_size(model) == 64
