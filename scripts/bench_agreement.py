"""Benchmark: campaign_agreement on 16,000 blocks x 3 interpreters (goal < 2 s on 2 cores).

    .venv/bin/python scripts/bench_agreement.py [--blocks 16000] [--raters 3] [--repeat 5]

Synthetic but realistic splits, seeded: each block has a true mix of 1-3 LCZ classes; each
interpreter sees it with noise (a Dirichlet around the truth), rounds to whole per-mille summing
to 1000, sometimes in 5 % steps; about 2 % of ratings are missing; submission times spread over
a month. Prints the median of --repeat timings of the whole dict (including json.dumps), after
a first call timed on its own (it also imports statsmodels).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotator.agreement import campaign_agreement  # noqa: E402
from lcz_model.classes import N_CLASSES  # noqa: E402


def make_data(n_blocks: int, n_raters: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    B, R, K = n_blocks, n_raters, N_CLASSES
    # True composition: 1-3 classes with Dirichlet weights.
    k = rng.choice([1, 2, 3], size=B, p=[0.3, 0.45, 0.25])
    scores = rng.random((B, K))
    rank = np.argsort(np.argsort(-scores, axis=1), axis=1)
    active = rank < k[:, None]
    w = np.where(active, rng.gamma(2.0, size=(B, K)), 0.0)
    truth = w / w.sum(axis=1, keepdims=True)
    # Interpreters: Dirichlet noise around the truth, plus a small chance of a stray class.
    conc = rng.uniform(8, 40, size=(B, R, 1))
    alpha = truth[:, None, :] * conc + 0.02
    g = rng.gamma(alpha)
    p = g / g.sum(axis=2, keepdims=True)
    # Round: half of the interpreters' ratings in 5 % steps (50 per-mille), the rest per-mille.
    step = np.where(rng.random((B, R, 1)) < 0.5, 50, 1)
    units = TOTAL_UNITS = 1000 // step
    raw = p * units
    fl = np.floor(raw).astype(np.int64)
    short = (units[..., 0] - fl.sum(axis=2))
    order = np.argsort(-(raw - fl), axis=2, kind="stable")
    rk = np.empty_like(order)
    np.put_along_axis(rk, order, np.broadcast_to(np.arange(K), order.shape), axis=2)
    fl += rk < short[..., None]
    splits = fl * step
    assert (splits.sum(axis=2) == 1000).all(), TOTAL_UNITS
    present = rng.random((B, R)) > 0.02
    splits[~present] = -1
    t0 = np.datetime64("2025-03-01T08:00:00", "s")
    secs = rng.integers(0, 30 * 24 * 3600, size=(B, R))
    submitted = (t0 + secs.astype("timedelta64[s]")).astype("datetime64[ns]")
    submitted[~present] = np.datetime64("NaT")
    return splits, present, submitted


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=16_000)
    ap.add_argument("--raters", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    splits, present, submitted = make_data(args.blocks, args.raters, args.seed)
    names = [f"interpreter_{i + 1}" for i in range(args.raters)]
    # The first call also pays the lazy import of statsmodels (seconds on a cold disk cache);
    # time it separately, then the median of --repeat calls.
    t = time.perf_counter()
    out = campaign_agreement(splits, present, submitted, rater_names=names)
    first = time.perf_counter() - t
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        out = campaign_agreement(splits, present, submitted, rater_names=names)
        text = json.dumps(out, allow_nan=False)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"campaign_agreement: {args.blocks} blocks x {args.raters} interpreters, "
          f"median of {args.repeat}: {med * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}); JSON {len(text) / 1024:.0f} KiB")
    print(f"  first call (includes the lazy statsmodels import): {first * 1000:.1f} ms")
    print(f"  TV mean {out['tv']['mean']:.3f}, dominant agreement {out['dominant_agreement_rate']:.3f}, "
          f"disputed {out['disputed']['count']} ({out['disputed']['share']:.1%}), "
          f"alpha(interval) mean {out['alpha_interval']['mean']:.3f}, "
          f"alpha(nominal) {out['alpha_nominal_dominant']:.3f}, "
          f"Fleiss kappa {out['fleiss_kappa_dominant']['kappa']:.3f} "
          f"on {out['fleiss_kappa_dominant']['n_blocks']} complete blocks")
    goal = 2.0
    print(f"  goal < {goal:.0f} s: {'met' if med < goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
