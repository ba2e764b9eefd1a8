"""Training writes checkpoint + card + log + curve, resumes exactly; predict and evaluate."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from lcz_model.chips import load_chips
from lcz_model.package import package_checksum, read_package
from lcz_model.train import TrainConfig, train, weights_hash

pytestmark = pytest.mark.slow


def _cfg(pkg, out, **kw):
    base = dict(dataset=str(pkg), out=str(out), variant="full", encoder="swin_micro",
                epochs=2, batch_size=8, img_size=64, device="cpu", seed=0, progress=False,
                augment={"scope": "rare", "rare_oversample": 1}, eval_batch_size=8,
                warmup_epochs=0.5, threads=1)   # 1 thread: far faster on a busy CPU
    base.update(kw)
    return TrainConfig(**base)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def runs(synthetic_pkg, tmp_path_factory):
    """run 'a': 2 epochs straight; run 'b': interrupted after epoch 1 (snapshot), resumed."""
    root = tmp_path_factory.mktemp("runs")
    a = train(_cfg(synthetic_pkg, root / "a"))

    def stop(epoch, rec):
        if epoch == 1:
            raise Interrupt
    with pytest.raises(Interrupt):
        train(_cfg(synthetic_pkg, root / "b"), callbacks=[stop])
    after_one = {
        "card": json.loads((root / "b" / "model_card.json").read_text()),
        "log": list(csv.DictReader(open(root / "b" / "log.csv"))),
        "png": (root / "b" / "learning_curve.png").read_bytes(),
        "ck": torch.load(root / "b" / "checkpoint.pt", weights_only=False),
        "files": sorted(p.name for p in (root / "b").iterdir()),
    }
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(synthetic_pkg, root / "b"))
    b = train(_cfg(synthetic_pkg, root / "b", resume=True))
    return {"a": a, "b": b, "after_one": after_one, "pkg": synthetic_pkg}


def test_one_epoch_writes_checkpoint_card_csv_png(runs):
    one = runs["after_one"]
    assert one["files"] == ["checkpoint.pt", "learning_curve.png", "log.csv",
                            "model_card.json"]                   # no temp files left behind
    card, ck = one["card"], one["ck"]
    assert card["epochs_done"] == 1 and not card["finished"]
    assert card["model_version"] == f"msunet-full-{weights_hash(ck['model'])[:16]}"
    assert card["weights_sha256"] == weights_hash(ck["model"])
    assert card["dataset"]["checksum_sha256"] == package_checksum(runs["pkg"])
    assert card["model_config"]["encoder"] == "swin_micro" and card["tasks"] == [
        "global", "pure", "local"]
    assert any("DECISION" in d or "padded" in d for d in card["decisions"])
    assert card["metrics"][0]["test"] == {}              # test: once, after the last epoch
    m = card["metrics"][0]["val"]
    assert set(m) == {"mixed", "all"} and m["all"]["mae"] is not None
    assert 0 <= m["all"]["mae"] <= 1 and 0 <= m["all"]["wd"] <= 1
    assert ck["epoch"] == 1 and {"optimizer", "scheduler", "gradnorm", "rng"} <= set(ck)
    assert len(one["log"]) == 1 and one["log"][0]["epoch"] == "1"
    assert float(one["log"][0]["val_MAE_all"]) == pytest.approx(m["all"]["mae"], rel=1e-4)
    assert one["log"][0]["test_MAE_all"] == ""
    assert one["png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_at_next_epoch_and_matches_uninterrupted(runs):
    ca = json.loads((runs["a"] / "model_card.json").read_text())
    cb = json.loads((runs["b"] / "model_card.json").read_text())
    assert [m["epoch"] for m in cb["metrics"]] == [1, 2] and cb["finished"]
    assert cb["metrics"][0] == runs["after_one"]["card"]["metrics"][0]   # epoch 1 not redone
    assert len(list(csv.DictReader(open(runs["b"] / "log.csv")))) == 2
    # same weights as the uninterrupted run: optimizer, scheduler, GradNorm, RNG restored
    assert cb["model_version"] == ca["model_version"]
    ga, gb = ca["metrics"][-1]["task_weights"], cb["metrics"][-1]["task_weights"]
    assert ga == gb and ga != {"global": 1.0, "pure": 1.0, "local": 1.0}   # GradNorm moved


def test_predict_rows_sum_to_one_and_match_training_eval(runs):
    from lcz_model.predict import predict_blocks

    pkg = read_package(runs["pkg"])
    test = pkg.split("test")
    chips = [load_chips(b.global_path, b.mask_path, b.local_paths) for b in test]
    p = predict_blocks(runs["a"], iter(chips), batch_size=3)
    assert p.shape == (len(test), 17)
    assert (p >= 0).all() and np.allclose(p.sum(axis=1), 1, atol=1e-9)
    from lcz_model.metrics import evaluate_fractions
    card = json.loads((runs["a"] / "model_card.json").read_text())
    mae = evaluate_fractions(pkg.fractions("test"), p, subset="all")["mae"]
    assert mae == pytest.approx(card["metrics"][-1]["test"]["all"]["mae"], rel=1e-4)


def test_predict_and_evaluate_cli(runs, tmp_path, capsys):
    from lcz_model import evaluate, predict

    out = tmp_path / "preds.csv"
    assert predict.main(["--checkpoint", str(runs["a"]), "--dataset", str(runs["pkg"]),
                         "--split", "test", "--out", str(out), "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert rows and rows[0]["model_version"].startswith("msunet-full-")
    assert evaluate.main([str(runs["a"]), "--baselines", "--dataset", str(runs["pkg"])]) == 0
    text = capsys.readouterr().out
    assert "over MIXED test blocks" in text and "over ALL test blocks" in text
    for name in ("mean-split", "random-forest", "a "):
        assert f"| {name}" in text
    for col in ("OA", "OP", "MAE", "WD", "MAE_B", "MAE_N"):
        assert col in text


def test_baseline_variant_trains_without_gradnorm(synthetic_pkg, tmp_path):
    run = train(_cfg(synthetic_pkg, tmp_path / "base", variant="baseline", epochs=1))
    card = json.loads((run / "model_card.json").read_text())
    assert card["tasks"] == ["global"] and card["variant"] == "baseline"
    assert card["metrics"][0]["task_weights"] == {"global": 1.0}


def test_bad_arguments_give_clear_errors(synthetic_pkg, tmp_path):
    with pytest.raises(ValueError, match="unknown variant"):
        train(_cfg(synthetic_pkg, tmp_path / "x", variant="nope"))
    from lcz_model.package import PackageError
    with pytest.raises(PackageError, match="does not exist"):
        train(_cfg(tmp_path / "missing-pkg", tmp_path / "y"))
    with pytest.raises(TypeError, match="unknown training options"):
        train({"dataset": str(synthetic_pkg), "out": str(tmp_path / "z"), "epoch": 3})


def test_model_options_from_cli():
    from lcz_model.train import build_parser, config_from_args

    a = build_parser().parse_args(["--dataset", "d", "--out", "o", "--model", "token_pool=all",
                                   "--model", "local-gate-init=0.5", "--no-pure-always",
                                   "--pure-fraction", "0.5", "--eval-every", "5"])
    c = config_from_args(a)
    assert c.model_kwargs == {"token_pool": "all", "local_gate_init": 0.5}
    assert c.augment["pure_always"] is False and c.pure_fraction == 0.5 and c.eval_every == 5
    assert config_from_args(build_parser().parse_args(["--dataset", "d", "--out", "o"])
                            ).augment["pure_always"] is True
    for bad in (["--model", "nope=1"], ["--model", "variant=full"], ["--model", "token_pool"]):
        with pytest.raises(ValueError, match="--model"):
            config_from_args(build_parser().parse_args(["--dataset", "d", "--out", "o", *bad]))


def test_eval_every_skips_test_metrics_between(synthetic_pkg, tmp_path):
    run = train(_cfg(synthetic_pkg, tmp_path / "ev", variant="baseline", epochs=3,
                     eval_every=2))
    card = json.loads((run / "model_card.json").read_text())
    scored = [m["epoch"] for m in card["metrics"] if m["val"]]
    assert scored == [2, 3]                 # every 2nd epoch and always the last
    assert [m["epoch"] for m in card["metrics"] if m["test"]] == [3]   # test once, at the end
    assert card["test_metrics_of_these_weights"]["all"]["mae"] is not None
    rows = (run / "log.csv").read_text().splitlines()
    assert len(rows) == 4 and ",,," in rows[1]   # epoch 1: empty metric cells


def test_config_from_cli_and_django_style_options():
    from lcz_model.train import build_parser

    a = build_parser().parse_args(["--dataset", "P", "--out", "R", "--variant", "psg",
                                   "--augment-scope", "all", "--no-progress", "--epochs", "3"])
    c = TrainConfig.from_any(a)
    assert (c.variant, c.epochs, c.progress, c.augment["scope"]) == ("psg", 3, False, "all")
    # a Django command's options: its standard keys are ignored, None means the default
    c = TrainConfig.from_any({"dataset": "P", "out": "R", "verbosity": 1, "no_color": False,
                              "encoder": None, "batch_size": 4})
    assert c.encoder == "swin_tiny" and c.batch_size == 4
