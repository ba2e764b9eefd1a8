"""Paper-style accuracy table (Li et al., Tables 2-6) for trained runs and the baselines.

    python -m lcz_model.evaluate var/runs/baseline var/runs/full [--dataset PKG]
    python -m lcz_model.evaluate --baselines --dataset PKG [RUN ...]

Every model is scored on the same test split of the same package, with the weights its training
selected on the validation split (lcz_model.train: test is only ever reported, never used to
choose; compare settings on the runs' val figures in their model cards). OA and OP are over the pure
test blocks; the MAE family (MAE, WD, MAE_B, MAE_N) is printed twice, over the MIXED test
blocks and over ALL test blocks, and each table says which (design/metrics.md).

Baselines (``--baselines``, fitted on the package's training split):
  mean-split     every block gets the mean training split (a floor any model must beat)
  random-forest  WUDAPT-style: per-band mean/std inside the polygon -> scikit-learn RF,
                 class probabilities read as abundances
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .package import package_checksum, read_package

__all__ = ["evaluate_run", "evaluate_baselines", "format_table", "main"]

COLUMNS = ("OA", "OP", "MAE", "WD", "MAE_B", "MAE_N")   # evaluate_fractions keys, lower-cased


def _scores(true: np.ndarray, pred: np.ndarray) -> dict:
    from .metrics import evaluate_fractions

    return {subset: dict(evaluate_fractions(true, pred, subset=subset))
            for subset in ("mixed", "all")}


def evaluate_run(run, dataset=None, *, device="cpu", batch_size: int = 16,
                 k_local: int = 8) -> dict:
    """Predict the test split with a run's checkpoint; returns name, card info, scores, preds."""
    from .data import BlockDataset
    from .checkpoints import resolve_checkpoint
    from .predict import load_model, predict_dataset

    ck_path = resolve_checkpoint(run)
    model, info = load_model(ck_path, device)
    ds_path = dataset or info.get("dataset", {}).get("path")
    if not ds_path:
        raise ValueError(f"{run}: no --dataset given and the checkpoint records none")
    pkg = read_package(ds_path)
    warn = None
    recorded = info.get("dataset", {}).get("checksum_sha256")
    if recorded and recorded != package_checksum(ds_path):
        warn = (f"{run} was trained on a different package (checksum {recorded[:12]}); "
                f"scores on {ds_path} may include training blocks")
    img_size = int(model.cfg.img_size)
    ds = BlockDataset(pkg, "test", img_size=img_size, train=False, k_local=k_local)
    pred = predict_dataset(model, ds, batch_size, device)
    true = pkg.fractions("test")
    run_dir = ck_path.parent
    tc = info.get("train_config", {})
    hist = info.get("history") or []
    return {
        "name": run_dir.name,
        "label": f"{info.get('model_version', '?')}; {tc.get('variant', '?')}, "
                 f"{tc.get('encoder', '?')}, {img_size} px, lr {tc.get('lr', '?')}, "
                 f"{info.get('epoch', '?')}/{tc.get('epochs', '?')} epochs"
                 + (f", weights of epoch {sel['epoch']} (selected on val)"
                    if (sel := info.get("selection") or {}).get("epoch") is not None else "")
                 + (" (stopped by --max-minutes)" if hist and hist[-1].get("partial") else ""),
        "model_version": info.get("model_version"),
        "scores": _scores(true, pred),
        "pred": pred, "true": true, "package": pkg, "warning": warn,
    }


def evaluate_baselines(dataset, *, seed: int = 0, n_estimators: int = 300) -> list[dict]:
    """Fit mean-split and the WUDAPT-style random forest on the training split; score test."""
    from .baselines import MeanSplitBaseline, RandomForestBaseline, block_spectral_features

    pkg = read_package(dataset)
    train, test = pkg.split("train"), pkg.split("test")
    ytr, yte = pkg.fractions("train"), pkg.fractions("test")

    def feats(blocks):
        rows = []
        for b in blocks:
            ch = b.load_chips()
            rows.append(block_spectral_features(ch.global_rgb, ch.mask))
        return np.asarray(rows, dtype=np.float64)

    out = []
    pred = MeanSplitBaseline().fit(ytr).predict(len(test))
    out.append({"name": "mean-split", "label": "mean-split (mean training split for every "
                "block)", "scores": _scores(yte, pred), "pred": pred, "true": yte,
                "package": pkg})
    xtr, xte = feats(train), feats(test)
    for mode, name, label in (
            ("dominant", "random-forest",
             "WUDAPT-style RF on block colour statistics, trained on dominant classes; class "
             "probabilities read as abundances (the paper's baseline)"),
            ("soft", "random-forest-soft",
             "same RF trained on every class weighted by its fraction")):
        rf = RandomForestBaseline(n_estimators=n_estimators, mode=mode, random_state=seed)
        pred = rf.fit(xtr, ytr).predict(xte)
        out.append({"name": name, "label": label, "scores": _scores(yte, pred), "pred": pred,
                    "true": yte, "package": pkg})
    return out


def format_table(rows: list[dict], subset: str) -> str:
    """Fixed-width table, one row per model, columns OA OP MAE WD MAE_B MAE_N."""
    name_w = max([len("model")] + [len(r["name"]) for r in rows])
    head = f"| {'model':<{name_w}} | " + " | ".join(f"{c:>7}" for c in COLUMNS) + " |"
    sep = "|" + "-" * (name_w + 2) + "|" + "|".join("-" * 9 for _ in COLUMNS) + "|"
    lines = [head, sep]
    for r in rows:
        s = r["scores"].get(subset, {})
        cells = []
        for c in COLUMNS:
            v = s.get(c.lower())
            cells.append(f"{'n/a':>7}" if v is None or not np.isfinite(v) else f"{v:7.4f}")
        lines.append(f"| {r['name']:<{name_w}} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows: list[dict]) -> str:
    pkg = rows[0]["package"]
    true = rows[0]["true"]
    pure = (true.max(axis=1) >= 1 - 1e-9)
    n, n_pure = len(true), int(pure.sum())
    out = [f"Test split of {pkg.meta['name']} ({pkg.path}): {n} blocks, {n_pure} pure, "
           f"{n - n_pure} mixed; package sha256(SHA256SUMS) {package_checksum(pkg.path)[:16]}",
           "OA and OP: over the pure test blocks (OP = macro precision over classes present).",
           "",
           f"MAE, WD, MAE_B, MAE_N over MIXED test blocks ({n - n_pure}):",
           format_table(rows, "mixed"),
           "",
           f"MAE, WD, MAE_B, MAE_N over ALL test blocks ({n}):",
           format_table(rows, "all"),
           "",
           "Models:"]
    for r in rows:
        out.append(f"  {r['name']}: {r['label']}")
        if r.get("warning"):
            out.append(f"    WARNING: {r['warning']}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lcz_model.evaluate",
                                 description="Paper-style accuracy table for trained runs "
                                 "(and baselines) on a package's test split.")
    ap.add_argument("runs", nargs="*", help="run folders (or checkpoint files)")
    ap.add_argument("--dataset", default=None,
                    help="dataset package (default: the one each run was trained on)")
    ap.add_argument("--baselines", action="store_true",
                    help="also fit/evaluate mean-split and random forest (needs --dataset "
                         "or a run)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--k-local", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="random forest seed")
    ap.add_argument("--json", default=None, help="also write the scores to this JSON file")
    a = ap.parse_args(argv)
    if not a.runs and not a.baselines:
        ap.error("give at least one run folder, or --baselines with --dataset")
    device = a.device
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    try:
        for r in a.runs:
            rows.append(evaluate_run(r, a.dataset, device=device, batch_size=a.batch_size,
                                     k_local=a.k_local))
        if a.baselines:
            ds = a.dataset or (str(rows[0]["package"].path) if rows else None)
            if ds is None:
                ap.error("--baselines needs --dataset")
            rows = evaluate_baselines(ds, seed=a.seed) + rows
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = {str(r["package"].path.resolve()) for r in rows}
    if len(paths) > 1:
        print(f"error: the runs were trained on different packages {sorted(paths)}; pass "
              f"--dataset to score them on one", file=sys.stderr)
        return 2
    print(report(rows))
    if a.json:
        data = [{"name": r["name"], "label": r["label"],
                 "model_version": r.get("model_version"),
                 "scores": {s: {k: (None if isinstance(v, float) and not np.isfinite(v)
                                    else v) for k, v in sc.items()}
                            for s, sc in r["scores"].items()}} for r in rows]
        Path(a.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
