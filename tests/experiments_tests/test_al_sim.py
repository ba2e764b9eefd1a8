"""al_sim smoke test on a tiny package: CSV + PNG written, resume redoes nothing."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from experiments import al_sim
from lcz_model.package import read_package

pytestmark = pytest.mark.slow


def _cfg(pkg, out, **kw):
    base = dict(out=str(out), package=str(pkg), strategies=("bald", "random"), seed_labels=6,
                batch=4, rounds=1, epochs=1, img_size=64, fusion_dim=32, train_batch=8,
                mc_samples=3, threads=1)
    base.update(kw)
    return al_sim.SimConfig(**base)


def test_al_sim_writes_csv_png_and_resumes(tiny_pkg, tmp_path, monkeypatch):
    out = tmp_path / "sim"
    summ = al_sim.run_simulation(_cfg(tiny_pkg, out))
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert list(rows[0]) == al_sim.CSV_COLUMNS
    got = {(r["strategy"], int(r["round"])): r for r in rows}
    assert set(got) == {("bald", 0), ("bald", 1), ("random", 0), ("random", 1)}
    assert int(got["bald", 0]["n_labels"]) == 6 and int(got["bald", 1]["n_labels"]) == 10
    assert got["bald", 0]["test_mae"] == got["random", 0]["test_mae"]   # shared seed model
    for r in rows:
        assert 0 < float(r["test_mae"]) < 1 and 0 <= float(r["test_wd"]) < 1
    png = (out / "al_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(summ["strategies"]) == {"bald", "random"}
    assert summ["random_final"]["n_labels"] == 10

    # the batch was picked from the pool (never a labelled or test block), no duplicates
    pkg = read_package(tiny_pkg)
    train_ids = {b.block_id for b in pkg.split("train")}
    seed = set((out / "labelled" / "seed_r0.txt").read_text().split())
    for s in ("bald", "random"):
        sel = json.loads((out / "selections" / f"{s}_r1.json").read_text())
        assert len(sel["picked"]) == len(set(sel["picked"])) == 4
        assert set(sel["picked"]) <= train_ids - seed
        lab = (out / "labelled" / f"{s}_r1.txt").read_text().split()
        assert set(lab) == seed | set(sel["picked"])
    # the subset package holds the labelled + test blocks only (no pool labels)
    sub = read_package(out / "subsets" / "bald" / "r1")
    assert {b.block_id for b in sub.split("train")} == set(
        (out / "labelled" / "bald_r1.txt").read_text().split())
    assert len(sub) == 10 + len(pkg.split("test"))
    # warm start: round 1 was initialised from the whole round-0 model
    card = json.loads((out / "runs" / "bald" / "r1" / "model_card.json").read_text())
    assert card["train_config"]["init_from"].endswith("runs/seed/r0")
    assert card["train_config"]["encoder_checkpoint"] is None
    # round 0's checkpoint is pruned once every strategy finished round 1; the last round's stay
    assert not (out / "runs" / "seed" / "r0" / "checkpoint.pt").exists()
    assert (out / "runs" / "seed" / "r0" / "model_card.json").exists()
    assert (out / "runs" / "bald" / "r1" / "checkpoint.pt").exists()

    # resume: nothing is trained or selected again
    def boom(*a, **k):
        raise AssertionError("resume must not redo a finished (strategy, round)")
    monkeypatch.setattr("lcz_model.train.train", boom)
    monkeypatch.setattr(al_sim, "_select", boom)
    before = (out / "results.csv").read_text()
    al_sim.run_simulation(_cfg(tiny_pkg, out))
    assert (out / "results.csv").read_text() == before
    # other settings in the same folder are refused
    with pytest.raises(ValueError, match="other settings"):
        al_sim.run_simulation(_cfg(tiny_pkg, out, batch=5))


def test_labels_to_reach_and_summary():
    n = np.array([40, 60, 80, 100.0])
    m = np.array([0.10, 0.08, 0.06, 0.05])
    assert al_sim.labels_to_reach(n, m, 0.07) == (70.0, 80.0)
    assert al_sim.labels_to_reach(n, m, 0.10) == (40.0, 40.0)
    assert al_sim.labels_to_reach(n, m, 0.01) == (None, None)
    rows = [{"strategy": s, "round": i, "n_labels": int(n[i]), "test_mae": v, "test_wd": 0.0,
             "test_mae_mixed": 0.0, "seconds": 0.0}
            for s, mm in (("random", m), ("bald", [0.10, 0.06, 0.05, 0.045]))
            for i, v in enumerate(mm)]
    summ = al_sim.summarise(rows)
    assert summ["random_final"] == {"n_labels": 100, "test_mae": 0.05, "round": 3}
    b = summ["strategies"]["bald"]
    assert b["labels_to_random_final"] == 80.0 and b["fraction_of_random_labels"] == 0.8
    assert "BALD" in al_sim.format_summary(summ)


def _fake_sim(d, seed, maes, package="p"):
    d.mkdir(parents=True)
    cfg = {"package": package, "seed_labels": 40, "batch": 20, "epochs": 8, "img_size": 64,
           "variant": "full", "encoder": "swin_micro", "seed": seed}
    (d / "sim_config.json").write_text(json.dumps(cfg))
    rows = [{"strategy": s, "round": i, "n_labels": 40 + 20 * i, "test_mae": v, "test_wd": v / 3,
             "test_mae_mixed": v, "seconds": 1.0}
            for s, mm in maes.items() for i, v in enumerate(mm)]
    al_sim._write_results(d / "results.csv", rows)


def test_combine_averages_seeds(tmp_path):
    _fake_sim(tmp_path / "a", 0, {"random": [0.10, 0.08, 0.06], "bald": [0.10, 0.06, 0.05]})
    _fake_sim(tmp_path / "b", 1, {"random": [0.10, 0.06, 0.04], "bald": [0.10, 0.06]})
    summ = al_sim.combine([tmp_path / "a", tmp_path / "b"], tmp_path / "c")
    rows = list(csv.DictReader(open(tmp_path / "c" / "results.csv")))
    got = {(r["strategy"], int(r["round"])): r for r in rows}
    assert ("bald", 2) not in got                       # seed 1 never reached round 2
    assert float(got["random", 2]["test_mae"]) == pytest.approx(0.05)
    assert int(got["random", 2]["n_seeds"]) == 2
    assert summ["random_final"]["test_mae"] == pytest.approx(0.05)
    assert summ["seeds"] == [0, 1]
    assert len(list(csv.DictReader(open(tmp_path / "c" / "results_all.csv")))) == 11
    assert (tmp_path / "c" / "al_curve.png").read_bytes()[:4] == b"\x89PNG"
    # per seed: seed 0's BALD reaches random's final 0.06 between 2 labels-rounds, seed 1's never (ends 0.06 > 0.04)
    text = al_sim.format_summary(summ)
    assert "bald: reached random's final MAE on 1 of 2 seeds; ended below it on 1" in text
    per = summ["per_seed"]
    assert per["0"]["strategies"]["bald"]["fraction_of_random_labels"] is not None
    assert per["1"]["strategies"]["bald"]["fraction_of_random_labels"] is None
    _fake_sim(tmp_path / "d", 2, {"random": [0.1]}, package="other")
    with pytest.raises(ValueError, match="differ"):
        al_sim.combine([tmp_path / "a", tmp_path / "d"], tmp_path / "e")
