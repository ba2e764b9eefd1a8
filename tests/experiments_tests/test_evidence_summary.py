"""scripts/evidence_summary.py: the ablation's intervals and per-module steps are the seeds' own
numbers (a t-interval over seeds; differences paired by seed)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("evidence_summary", ROOT / "scripts" / "evidence_summary.py")
es = importlib.util.module_from_spec(spec)
spec.loader.exec_module(es)


def _scores(mae):
    sub = {"mae": mae, "wd": mae / 3, "oa": 0.9}
    return {"mixed": dict(sub), "all": dict(sub)}


def _models():
    rows = [{"name": "mean-split", "scores": _scores(0.1)}]
    table = {"baseline": [0.030, 0.032, 0.031], "psg": [0.031, 0.030, 0.029],
             "psg_lsg": [0.028, 0.029, 0.027], "full": [0.026, 0.027, 0.026]}
    for v, maes in table.items():
        rows += [{"name": f"{v}-s{s}", "scores": _scores(m)} for s, m in enumerate(maes)]
    return rows, table


def test_interval_is_the_t_interval_over_seeds():
    from experiments.intervals import mean_interval

    v = [0.030, 0.032, 0.031]
    m, h = mean_interval(v)
    assert m == pytest.approx(np.mean(v))
    assert h == pytest.approx(stats.t.ppf(0.975, 2) * np.std(v, ddof=1) / np.sqrt(3))
    assert np.isnan(mean_interval([0.1])[1]) and mean_interval([0.1, np.nan, 0.3])[0] == pytest.approx(0.2)


def test_steps_are_paired_by_seed_and_say_which_helped():
    rows, table = _models()
    st = {r["step"]: r for r in es.steps(es.group(rows))}
    full_vs_base = st["full vs baseline"]["mixed"]
    assert full_vs_base["per_seed"] == pytest.approx(np.subtract(table["full"], table["baseline"]).tolist())
    assert full_vs_base["helped"] == 3
    assert st["+PSG (vs baseline)"]["mixed"]["helped"] == 2
    text = es.steps_table(list(st.values()))
    assert "helps (mixed)" in text.splitlines()[-1]         # full vs baseline: the interval is below 0


def test_main_writes_markdown_and_figure(tmp_path):
    rows, _ = _models()
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps(rows))
    assert es.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--names", "std,hard",
                    "--md", str(tmp_path / "t.md"), "--png", str(tmp_path / "f.png")]) == 0
    md = (tmp_path / "t.md").read_text()
    assert "### std:" in md and "### hard:" in md and "| full | 3 |" in md
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
