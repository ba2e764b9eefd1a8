"""Seed-averaged summary of `python -m lcz_model.evaluate --json` files: tables and a figure.

    .venv/bin/python scripts/evidence_summary.py scores.json [more.json ...] [--names a,b]
        [--png out.png] [--md out.md] [--title T]

Runs named NAME-sN (one per seed) are grouped under NAME. Per file (one package each) the table
gives the mean and the 95 % t-interval over seeds of MAE and WD on mixed and on all test blocks,
and OA on pure ones; then the ablation's paired differences: each module's step (+PSG vs
baseline, +LSG vs +PSG, DCAF vs +PSG+LSG, full vs baseline) per seed, on the same seed's runs,
with its mean, 95 % interval and how many seeds it helped. The figure shows each model's mean as
a bar with its interval and every seed as a dot, one row of panels per package.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.intervals import mean_interval  # noqa: E402

METRICS = (("mixed", "mae", "MAE mixed"), ("mixed", "wd", "WD mixed"),
           ("all", "mae", "MAE all"), ("all", "wd", "WD all"), ("all", "oa", "OA (pure)"))
# the ablation's steps: (label, model, reference); a step is read on runs of the same seed
STEPS = (("+PSG (vs baseline)", "psg", "baseline"),
         ("+LSG (vs +PSG)", "psg_lsg", "psg"),
         ("+DCAF (full vs +PSG+LSG)", "full", "psg_lsg"),
         ("full vs baseline", "full", "baseline"))


def group(models: list[dict]) -> "OrderedDict[str, dict[int | None, dict]]":
    """NAME -> {seed: scores} (seed None for a run without -sN, e.g. the baselines)."""
    groups: OrderedDict[str, dict] = OrderedDict()
    for m in models:
        hit = re.search(r"-s(\d+)$", m["name"])
        name = m["name"][:hit.start()] if hit else m["name"]
        groups.setdefault(name, {})[int(hit.group(1)) if hit else None] = m["scores"]
    return groups


def _cell(v) -> str:
    m, h = mean_interval(v)
    return f"{m:.4f}" + (f" ± {h:.4f}" if np.isfinite(h) else "")


def _values(scores: dict, sub: str, key: str) -> np.ndarray:
    return np.array([s[sub][key] if s[sub][key] is not None else np.nan for s in scores.values()], float)


def table(groups) -> str:
    head = "| model | seeds | " + " | ".join(t for _, _, t in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for name, scores in groups.items():
        cells = [_cell(_values(scores, sub, key)) for sub, key, _ in METRICS]
        lines.append(f"| {name} | {len(scores)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def steps(groups) -> list[dict]:
    """Paired per-seed differences (model - reference) of MAE mixed and MAE all; negative helps."""
    out = []
    for label, model, ref in STEPS:
        if model not in groups or ref not in groups:
            continue
        seeds = sorted(s for s in groups[model] if s is not None and s in groups[ref])
        if not seeds:
            continue
        row = {"step": label, "seeds": len(seeds)}
        for sub in ("mixed", "all"):
            d = np.array([groups[model][s][sub]["mae"] - groups[ref][s][sub]["mae"] for s in seeds])
            m, h = mean_interval(d)
            row[sub] = {"mean": m, "half_width": h, "helped": int((d < 0).sum()), "per_seed": d.tolist()}
        out.append(row)
    return out


def steps_table(rows: list[dict]) -> str:
    lines = ["| step | seeds | Δ MAE mixed (95 % interval) | helped on | Δ MAE all (95 % interval) | helped on | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = []
        for sub in ("mixed", "all"):
            m, h = r[sub]["mean"], r[sub]["half_width"]
            cells += [f"{m:+.4f} [{m - h:+.4f}, {m + h:+.4f}]", f"{r[sub]['helped']}/{r['seeds']}"]
        m, h = r["mixed"]["mean"], r["mixed"]["half_width"]
        verdict = ("helps" if m + h < 0 else "hurts" if m - h > 0 else "no clear effect")
        lines.append(f"| {r['step']} | {r['seeds']} | " + " | ".join(cells) + f" | {verdict} (mixed) |")
    return "\n".join(lines)


def plot(all_groups: "OrderedDict[str, OrderedDict]", path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = METRICS[:4]
    rows = len(all_groups)
    fig, axes = plt.subplots(rows, len(panels), figsize=(3.2 * len(panels), 3.4 * rows), squeeze=False)
    for r, (pkg, groups) in enumerate(all_groups.items()):
        names = list(groups)
        x = np.arange(len(names))
        for ax, (sub, key, label) in zip(axes[r], panels):
            vals = {n: _values(groups[n], sub, key) for n in names}
            # the mean split is far worse than the rest: clip its bar and print its value
            top = 1.3 * max(np.nanmax(v) for n, v in vals.items() if n != "mean-split")
            for i, n in enumerate(names):
                v = vals[n]
                m, h = mean_interval(v)
                ax.bar(i, min(m, top), width=0.7,
                       color="tab:blue" if n.startswith(("full", "msunet")) else
                       "tab:cyan" if n in ("psg", "psg_lsg") else "0.7")
                if np.isfinite(h):
                    ax.errorbar(i, m, yerr=h, color="k", capsize=3, lw=1)
                ax.plot(np.full(len(v), i), np.minimum(v, top), "k.", ms=4)
                if m > top:
                    ax.text(i, top * 0.97, f"{m:.3f}", rotation=90, ha="center", va="top",
                            fontsize=7, color="white")
            ax.set_ylim(0, top)
            ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
            ax.set_title(f"{pkg}: {label} (lower is better)", fontsize=9)
            ax.grid(axis="y", alpha=.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores", nargs="+", help="JSON written by `python -m lcz_model.evaluate --json`")
    ap.add_argument("--names", default=None, help="comma-separated package names, one per file")
    ap.add_argument("--png", default=None, help="also draw the bar chart here")
    ap.add_argument("--md", default=None, help="also write the tables here (Markdown)")
    ap.add_argument("--title", default="test split; bars = mean over seeds with 95 % interval, dots = seeds")
    a = ap.parse_args(argv)
    names = a.names.split(",") if a.names else [Path(p).stem for p in a.scores]
    if len(names) != len(a.scores):
        ap.error("--names needs one name per scores file")
    all_groups: OrderedDict = OrderedDict()
    parts = []
    for name, path in zip(names, a.scores):
        groups = group(json.loads(Path(path).read_text()))
        all_groups[name] = groups
        parts += [f"### {name}: test split, mean ± 95 % interval over seeds", "", table(groups), ""]
        st = steps(groups)
        if st:
            parts += [f"### {name}: what each module adds (paired by seed; negative Δ = lower error)", "",
                      steps_table(st), ""]
    text = "\n".join(parts)
    print(text)
    if a.md:
        Path(a.md).write_text(text)
    if a.png:
        plot(all_groups, Path(a.png), a.title)
        print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
