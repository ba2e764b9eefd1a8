"""Mean and 95 % t-interval over seeds: the one home of the intervals the evidence reports
(scripts/evidence_summary.py, experiments.prelabel_effort)."""
from __future__ import annotations

import numpy as np

__all__ = ["mean_interval"]


def mean_interval(values) -> tuple[float, float]:
    """Mean of the finite values and the half-width of its 95 % t-interval (nan with fewer than two)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
