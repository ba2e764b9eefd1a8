"""Seed-averaged summary of a `python -m lcz_model.evaluate --json` file, as a table and a PNG.

    .venv/bin/python scripts/evidence_summary.py scores.json [--png out.png] [--title T]

Runs named NAME-sN (one per seed) are grouped under NAME; the table gives mean +- SD over seeds
of MAE and WD on mixed and on all test blocks, and OA on pure ones. The picture shows each
model's mean as a bar and every seed as a dot, so a gap can be read against the seed spread.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

METRICS = (("mixed", "mae", "MAE mixed"), ("mixed", "wd", "WD mixed"),
           ("all", "mae", "MAE all"), ("all", "wd", "WD all"), ("all", "oa", "OA (pure)"))


def group(models: list[dict]) -> "OrderedDict[str, list[dict]]":
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for m in models:
        groups.setdefault(re.sub(r"-s\d+$", "", m["name"]), []).append(m["scores"])
    return groups


def table(groups) -> str:
    head = "| model | seeds | " + " | ".join(t for _, _, t in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for name, scores in groups.items():
        cells = []
        for sub, key, _ in METRICS:
            v = np.array([s[sub][key] for s in scores], dtype=float)
            cells.append(f"{v.mean():.4f}" + (f" ± {v.std(ddof=1):.4f}" if len(v) > 1 else ""))
        lines.append(f"| {name} | {len(scores)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(groups, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = METRICS[:4]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    names = list(groups)
    x = np.arange(len(names))
    for ax, (sub, key, label) in zip(axes, panels):
        vals = {n: np.array([s[sub][key] for s in groups[n]], dtype=float) for n in names}
        # the mean split is far worse than the rest: clip its bar and print its value
        top = 1.3 * max(v.max() for n, v in vals.items() if n != "mean-split")
        for i, n in enumerate(names):
            v = vals[n]
            ax.bar(i, min(v.mean(), top), width=0.7,
                   color="tab:blue" if n.startswith(("full", "msunet")) else "0.7")
            ax.plot(np.full(len(v), i), np.minimum(v, top), "k.", ms=5)
            if v.mean() > top:
                ax.text(i, top * 0.97, f"{v.mean():.3f}", rotation=90, ha="center", va="top",
                        fontsize=7, color="white")
        ax.set_ylim(0, top)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.set_title(label + " (lower is better)", fontsize=9)
        ax.grid(axis="y", alpha=.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores", help="JSON written by `python -m lcz_model.evaluate --json`")
    ap.add_argument("--png", default=None, help="also draw the bar chart here")
    ap.add_argument("--title", default="test split; bars = mean over seeds, dots = seeds")
    a = ap.parse_args(argv)
    groups = group(json.loads(Path(a.scores).read_text()))
    print(table(groups))
    if a.png:
        plot(groups, Path(a.png), a.title)
        print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
