"""Pre-labels that save work? The reviewer's edit effort from the model's split vs from nothing,
and how well MC-dropout uncertainty tells which pre-labels to distrust.

    python -m experiments.prelabel_effort RUN [RUN ...] --dataset PKG [--out docs/figures]
        [--mc-samples 10] [--mc-mode full] [--split test]

For every run (one per seed) and every block of the split:
  effort   L1 distance in per-mille from the start split to the label (the consensus; in a
           synthetic package the ground truth), and the workspace keys needed to type the label in
           10 % steps: 2 keys for each class whose tens differ (its key, then one digit, or `r`
           for the remainder), then Enter. Starts: an empty split (what an interpreter meets
           today), the model's split (in 10 % steps, as a pre-label would be offered), and the
           training split's mean split (a prior that needs no model).
  calibration  the predicted error of a block = the mean L1 distance (per-mille) of the MC-dropout
           samples to their mean; the real error = L1 of the mean to the label. Spearman rho of
           predicted vs real error (and of BALD and entropy scores vs real error); a reliability
           curve (blocks in quantile bins of predicted error: mean predicted vs mean real error),
           raw and after one scale factor fitted on the val split (least squares through 0).
Outputs in --out: prelabel.json, prelabel.md and prelabel.png (``--prefix`` renames them).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from experiments.intervals import mean_interval
from lcz_model import acquisition
from lcz_model.classes import N_CLASSES
from lcz_model.package import read_package
from lcz_model.package_writer import fractions_to_permille

__all__ = ["to_tens", "keys_needed", "l1_permille", "reliability", "evaluate_run", "main"]


def to_tens(fractions) -> np.ndarray:
    """Rows of fractions (summing to 1) as whole tens of percent summing to 10 (largest remainder)."""
    f = np.atleast_2d(np.asarray(fractions, dtype=float))
    raw = f / f.sum(1, keepdims=True).clip(min=1e-12) * 10
    out = np.floor(raw).astype(int)
    rest = 10 - out.sum(1)
    order = np.argsort(-(raw - out), axis=1, kind="stable")
    for i, r in enumerate(rest):
        out[i, order[i, :r]] += 1
    return out


def keys_needed(start_tens, target_tens) -> np.ndarray:
    """Workspace keys from a start split to a target, both in tens of percent: 2 per class whose
    tens differ (class key + digit, or class key + r for 100 %), + Enter."""
    start, target = np.atleast_2d(start_tens), np.atleast_2d(target_tens)
    return 2 * (start != target).sum(1) + 1


def l1_permille(a_pm, b_pm) -> np.ndarray:
    return np.abs(np.atleast_2d(a_pm) - np.atleast_2d(b_pm)).sum(1)


def reliability(pred_err, real_err, bins: int = 5) -> list[dict]:
    """Blocks in quantile bins of predicted error: (mean predicted, mean real, n) per bin."""
    pred_err, real_err = np.asarray(pred_err, float), np.asarray(real_err, float)
    edges = np.quantile(pred_err, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, pred_err, side="right") - 1, 0, bins - 1)
    return [{"predicted": float(pred_err[idx == b].mean()), "real": float(real_err[idx == b].mean()),
             "n": int((idx == b).sum())} for b in range(bins) if (idx == b).any()]


def _mc(run, blocks, samples: int, mode: str, device: str, seed: int):
    import torch

    torch.manual_seed(seed)
    k_local = min(8, max(len(b.local_paths) for b in blocks))
    return acquisition.mc_predict(run, (b.load_chips() for b in blocks), n_samples=samples,
                                  device=device, k_local=k_local, mode=mode)


def evaluate_run(run, pkg, *, split: str = "test", samples: int = 10, mode: str = "full",
                 device: str = "cpu", seed: int = 0) -> dict:
    from scipy import stats

    blocks = pkg.split(split)
    true = np.stack([b.fractions for b in blocks])
    true_pm = fractions_to_permille(true)
    mean, samp = _mc(run, blocks, samples, mode, device, seed)
    model_pm = fractions_to_permille(mean)
    prior = pkg.fractions("train").mean(0)
    prior_pm = fractions_to_permille(prior[None, :])[0]
    target = to_tens(true)
    efforts = {
        "empty": {"l1": true_pm.sum(1).astype(float), "keys": keys_needed(np.zeros((1, N_CLASSES), int), target)},
        "model": {"l1": l1_permille(model_pm, true_pm).astype(float), "keys": keys_needed(to_tens(mean), target)},
        "mean-split": {"l1": l1_permille(prior_pm, true_pm).astype(float),
                       "keys": keys_needed(to_tens(prior[None, :]), target)},
    }
    real = 1000 * np.abs(mean - true).sum(1)
    predicted = 1000 * np.abs(samp - mean[None]).sum(-1).mean(0)
    scores = {"predicted error": predicted, "bald": acquisition.bald(samp), "entropy": acquisition.entropy(mean)}
    rho = {k: stats.spearmanr(v, real) for k, v in scores.items()}
    # one scale factor, fitted on the val split (never on the split scored here)
    val = pkg.split("val")
    scale = None
    if val and split != "val":
        vmean, vsamp = _mc(run, val, samples, mode, device, seed + 1)
        vreal = 1000 * np.abs(vmean - np.stack([b.fractions for b in val])).sum(1)
        vpred = 1000 * np.abs(vsamp - vmean[None]).sum(-1).mean(0)
        scale = float((vpred * vreal).sum() / max((vpred ** 2).sum(), 1e-12))
    mixed = true.max(1) < 0.999
    # the quarter of blocks the model is surest of (lowest entropy): where a reviewer would trust it
    sure = scores["entropy"] <= np.quantile(scores["entropy"], 0.25)
    return {
        "run": str(run), "split": split, "blocks": len(blocks), "mixed_blocks": int(mixed.sum()),
        "mc": {"samples": samples, "mode": mode},
        "effort": {k: {"l1_mean": float(v["l1"].mean()), "l1_median": float(np.median(v["l1"])),
                       "keys_mean": float(v["keys"].mean()), "keys_median": float(np.median(v["keys"])),
                       "keys_mean_mixed": float(v["keys"][mixed].mean()),
                       "accept_as_is": float((v["keys"] == 1).mean()),
                       "keys": v["keys"].tolist()} for k, v in efforts.items()},
        "model_saves_keys_on": float((efforts["model"]["keys"] < efforts["empty"]["keys"]).mean()),
        "model_costs_keys_on": float((efforts["model"]["keys"] > efforts["empty"]["keys"]).mean()),
        "surest_quarter": {"blocks": int(sure.sum()),
                           "keys_model": float(efforts["model"]["keys"][sure].mean()),
                           "keys_empty": float(efforts["empty"]["keys"][sure].mean()),
                           "l1_model": float(efforts["model"]["l1"][sure].mean())},
        "calibration": {
            "spearman": {k: {"rho": float(r.statistic), "p": float(r.pvalue)} for k, r in rho.items()},
            "real_error_mean": float(real.mean()), "predicted_error_mean": float(predicted.mean()),
            "val_scale": scale,
            "reliability": reliability(predicted, real),
            "reliability_scaled": reliability(predicted * scale, real) if scale else None,
        },
    }


def summary_md(res: list[dict]) -> str:
    def cell(vals, fmt="{:.1f}"):
        m, h = mean_interval(vals)
        return fmt.format(m) + ("" if not np.isfinite(h) else " ± " + fmt.format(h))

    n = len(res)
    lines = [f"Pre-label effort on the {res[0]['split']} split ({res[0]['blocks']} blocks, "
             f"{res[0]['mixed_blocks']} mixed), {n} runs (seeds); mean ± 95 % interval over runs.", "",
             "| start | L1 to label (‰) | keys (all blocks) | keys (mixed blocks) | accepted as is (Enter only) |",
             "|---|---|---|---|---|"]
    for k in ("empty", "mean-split", "model"):
        e = [r["effort"][k] for r in res]
        lines.append(f"| {k} | {cell([x['l1_mean'] for x in e])} | {cell([x['keys_mean'] for x in e], '{:.2f}')} | "
                     f"{cell([x['keys_mean_mixed'] for x in e], '{:.2f}')} | "
                     f"{cell([100 * x['accept_as_is'] for x in e])} % |")
    lines += ["", f"The model's pre-label needs fewer keys than an empty split on "
              f"{cell([100 * r['model_saves_keys_on'] for r in res])} % of blocks and more on "
              f"{cell([100 * r['model_costs_keys_on'] for r in res])} %. On the quarter of blocks it is surest of "
              f"(lowest entropy): {cell([r['surest_quarter']['keys_model'] for r in res], '{:.2f}')} keys from the "
              f"pre-label vs {cell([r['surest_quarter']['keys_empty'] for r in res], '{:.2f}')} from empty, L1 "
              f"{cell([r['surest_quarter']['l1_model'] for r in res])} ‰.", "",
              "Calibration of MC-dropout uncertainty (Spearman rho against the real L1 error; p of each run's test):", "",
              "| score | rho | p (largest over runs) |", "|---|---|---|"]
    for k in ("predicted error", "bald", "entropy"):
        rs = [r["calibration"]["spearman"][k] for r in res]
        lines.append(f"| {k} | {cell([x['rho'] for x in rs], '{:.2f}')} | {max(x['p'] for x in rs):.2g} |")
    sc = [r["calibration"]["val_scale"] for r in res if r["calibration"]["val_scale"]]
    lines += ["", f"Mean real error {cell([r['calibration']['real_error_mean'] for r in res])} ‰, mean predicted "
              f"(MC spread) {cell([r['calibration']['predicted_error_mean'] for r in res])} ‰"
              + (f"; scale fitted on val {cell(sc, '{:.2f}')}." if sc else "."), ""]
    return "\n".join(lines)


def plot(res: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    top = 2 * N_CLASSES + 2
    bins = np.arange(0.5, top, 2)
    for k, c in (("empty", "0.6"), ("mean-split", "tab:orange"), ("model", "tab:blue")):
        keys = np.concatenate([r["effort"][k]["keys"] for r in res])
        a.hist(keys, bins=bins, histtype="step", lw=2, color=c, label=f"{k} (mean {keys.mean():.2f})")
    a.set_xlabel("workspace keys to reach the label (10 % steps, incl. Enter)")
    a.set_ylabel("blocks (all runs)")
    a.set_title("edit effort per block", fontsize=10)
    a.legend(fontsize=8)
    mx = 0
    for r in res:
        for key, style in (("reliability", "o-"), ("reliability_scaled", "s--")):
            rel = r["calibration"][key]
            if not rel:
                continue
            x, y = [p["predicted"] for p in rel], [p["real"] for p in rel]
            mx = max(mx, *x, *y)
            b.plot(x, y, style, ms=3, alpha=.6, color="tab:blue" if key == "reliability" else "tab:green")
    b.plot([0, mx], [0, mx], "k:", lw=1)
    b.plot([], [], "o-", color="tab:blue", label="MC-dropout spread (raw)")
    b.plot([], [], "s--", color="tab:green", label="scaled by a factor fitted on val")
    rho = np.mean([r["calibration"]["spearman"]["predicted error"]["rho"] for r in res])
    b.set_title(f"reliability, quantile bins, a line per run (Spearman {rho:.2f})", fontsize=10)
    b.set_xlabel("predicted error (‰ L1)")
    b.set_ylabel("real error (‰ L1)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="trained run folders (one per seed)")
    ap.add_argument("--dataset", required=True, help="the dataset package they were trained on")
    ap.add_argument("--split", default="test")
    ap.add_argument("--mc-samples", type=int, default=10)
    ap.add_argument("--mc-mode", default="full", choices=acquisition.MC_MODES)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument("--prefix", default="prelabel", help="file names: PREFIX.json, PREFIX.md, PREFIX.png")
    a = ap.parse_args(argv)
    pkg = read_package(a.dataset)
    if not pkg.split(a.split):
        print(f"error: {a.dataset} has no {a.split} split", file=sys.stderr)
        return 2
    res = [evaluate_run(r, pkg, split=a.split, samples=a.mc_samples, mode=a.mc_mode, device=a.device, seed=i)
           for i, r in enumerate(a.runs)]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.prefix}.json").write_text(json.dumps(res, indent=1) + "\n")
    md = summary_md(res)
    (out / f"{a.prefix}.md").write_text(md)
    plot(res, out / f"{a.prefix}.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
