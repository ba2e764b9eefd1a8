"""Dashboard plots: PNG bytes drawn server-side with matplotlib's Agg canvas.

Every function takes the figures dict of ``annotator.selectors.campaign_agreement`` (the shape of
``annotator.agreement.campaign_agreement``) and returns PNG bytes. Where the figures cannot carry a
plot yet (no complete block, one interpreter, ...) the PNG says so in words instead of drawing an
empty or misleading chart. Class order and colours come only from ``lcz_model.classes``.

Thread-safe: no pyplot (global state); each call builds its own ``Figure`` on an Agg canvas.
"""
from __future__ import annotations

import io
import math

import numpy as np

from lcz_model.classes import CLASSES, KEYS

#: The plots the dashboard shows, in order: kind -> (title, alt text)
KINDS = {
    "alpha": ("Krippendorff's alpha per class", "Bar chart of Krippendorff's alpha (interval) per LCZ class"),
    "tv": ("Disagreement per block", "Histogram of the blocks' mean pairwise total-variation distance"),
    "pairs": ("Interpreter vs interpreter", "Heatmap of dominant-class agreement between interpreters"),
    "confusion": ("Dominant-class confusion", "Heatmap of pooled dominant-class confusion between interpreters"),
    "bias": ("Bias per class", "Heatmap of each interpreter's bias per class against the others"),
    "drift": ("Drift", "Lines of each interpreter's difference to the others over their submissions"),
}

DPI = 100
GRID = "#d0d7de"
TEXT = "#1b1f24"
MUTED = "#57606a"
ACCENT = "#cf222e"
#: Distinct line colours for interpreters (not class colours: those mean classes).
SERIES = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]


class NotEnoughData(Exception):
    """The figures cannot carry this plot yet; the message says what is missing."""


def render(kind: str, figures: dict) -> bytes:
    """PNG bytes of plot `kind` (one of KINDS) for these figures; a worded placeholder PNG when
    there is not enough data for it yet."""
    try:
        _check(kind, figures)
        return _DRAW[kind](figures)
    except NotEnoughData as exc:
        return placeholder(KINDS[kind][0], f"Not enough data yet: {exc}.")


def size_px(kind: str, figures: dict) -> tuple[int, int]:
    """(width, height) in pixels of the PNG ``render(kind, figures)`` draws, without drawing it: the
    page gives its <img> this size so the layout does not jump when the plot arrives."""
    try:
        _check(kind, figures)
        w, h = _SIZE[kind](figures)
    except NotEnoughData:
        w, h = PLACEHOLDER_SIZE
    # Agg's rounding of inches x dpi (FigureCanvasBase.get_width_height), without importing matplotlib
    # into the page's request
    return int(w * DPI + 1e-8), int(h * DPI + 1e-8)


def _check(kind: str, figures: dict) -> None:
    if kind not in KINDS:
        raise KeyError(f"unknown plot {kind!r}; known: {', '.join(KINDS)}")
    if not figures or not figures.get("n_blocks"):
        raise NotEnoughData("no block has all its interpreters' splits yet")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _style(ax):
    ax.tick_params(colors=TEXT, labelsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)


def _num(v) -> float:
    return math.nan if v is None else float(v)


#: Inches of the worded "not enough data" PNG.
PLACEHOLDER_SIZE = (6.4, 3.2)


def placeholder(title: str, message: str) -> bytes:
    fig = _figure(*PLACEHOLDER_SIZE)
    fig.text(0.5, 0.62, title, ha="center", va="center", fontsize=13, color=TEXT, weight="bold")
    fig.text(0.5, 0.42, message, ha="center", va="center", fontsize=10, color=MUTED, wrap=True)
    fig.patches.append(_frame(fig))
    return _png(fig)


def _frame(fig):
    from matplotlib.patches import Rectangle

    return Rectangle((0.01, 0.02), 0.98, 0.96, transform=fig.transFigure, fill=False,
                     edgecolor=GRID, linestyle="--", linewidth=1)


# ------------------------------------------------------------------------------------------------
# the plots
# ------------------------------------------------------------------------------------------------

# Each plot has a size function (inches; raises NotEnoughData where the figures cannot carry the
# plot) that its drawing uses, so size_px is the drawn PNG's size by construction.

def _alpha_values(figures: dict) -> np.ndarray:
    per_class = figures.get("alpha_interval", {}).get("per_class", {})
    return np.array([_num(per_class.get(k)) for k in KEYS])


def _alpha_size(figures: dict) -> tuple[float, float]:
    if not np.isfinite(_alpha_values(figures)).any():
        raise NotEnoughData("alpha needs at least two different values per class over the complete blocks")
    return 7.6, 3.4


def alpha_bars(figures: dict) -> bytes:
    fig = _figure(*_alpha_size(figures))
    values = _alpha_values(figures)
    ax = fig.add_axes([0.09, 0.17, 0.78, 0.72])
    _style(ax)
    x = np.arange(len(CLASSES))
    shown = np.where(np.isfinite(values), values, 0.0)
    ax.bar(x, shown, color=[c.colour for c in CLASSES], edgecolor=TEXT, linewidth=0.6, width=0.75)
    lo = min(-0.1, np.nanmin(values) - 0.05)
    ax.set_ylim(lo, 1.05)
    ax.axhline(0, color=MUTED, linewidth=0.8)
    for level, label in ((0.8, "0.8 reliable"), (0.667, "0.667 tentative")):
        ax.axhline(level, color=MUTED, linewidth=0.8, linestyle=":")
        ax.text(len(CLASSES) - 0.3, level, label, ha="left", va="center", fontsize=7.5, color=MUTED)
    for xi, v in zip(x, values):
        if not np.isfinite(v):
            ax.text(xi, 0.02, "n/a", ha="center", va="bottom", fontsize=7, color=MUTED, rotation=90)
        else:
            ax.text(xi, v + (0.015 if v >= 0 else -0.015), f"{v:.2f}", ha="center",
                    va="bottom" if v >= 0 else "top", fontsize=6.5, color=TEXT)
    ax.set_xticks(x, [c.code for c in CLASSES])
    ax.set_xlim(-0.6, len(CLASSES) - 0.4)
    ax.set_xlabel("LCZ class", fontsize=9, color=TEXT)
    ax.set_ylabel("alpha (interval)", fontsize=9, color=TEXT)
    mean = figures["alpha_interval"].get("mean")
    title = "Krippendorff's alpha per class"
    if mean is not None:
        title += f" (mean {mean:.3f})"
    ax.set_title(title, fontsize=11, color=TEXT, loc="left")
    return _png(fig)


def _tv_size(figures: dict) -> tuple[float, float]:
    counts = ((figures.get("tv") or {}).get("histogram") or {}).get("counts") or []
    if sum(counts) == 0:
        raise NotEnoughData("no block has two or more splits to compare")
    return 6.4, 3.4


def tv_histogram(figures: dict) -> bytes:
    fig = _figure(*_tv_size(figures))
    tv = figures["tv"]
    counts = np.asarray(tv["histogram"]["counts"], dtype=float)
    edges = np.asarray(tv["histogram"]["edges"], dtype=float)
    threshold = float(figures.get("tv_threshold", 0.25))
    ax = fig.add_axes([0.1, 0.16, 0.86, 0.72])
    _style(ax)
    left = edges[:-1]
    width = np.diff(edges)
    colours = ["#f4a6a6" if lo_ >= threshold else "#8fb8de" for lo_ in left]
    ax.bar(left, counts, width=width, align="edge", color=colours, edgecolor="white", linewidth=1)
    ax.axvline(threshold, color=ACCENT, linestyle="--", linewidth=1.6)
    top = counts.max()
    ax.text(threshold + 0.01, top * 1.02, f"dispute threshold {threshold:g}", color=ACCENT, fontsize=8.5,
            ha="left", va="bottom")
    ax.set_ylim(0, top * 1.15 + 0.5)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("mean pairwise total-variation distance (0 = same split, 1 = disjoint)", fontsize=9, color=TEXT)
    ax.set_ylabel("blocks", fontsize=9, color=TEXT)
    ax.yaxis.get_major_locator().set_params(integer=True)
    med = tv.get("median")
    title = f"TV per block (n = {int(counts.sum())}"
    title += f", median {med:.3f})" if med is not None else ")"
    ax.set_title(title, fontsize=11, color=TEXT, loc="left")
    return _png(fig)


def _annotated_heatmap(ax, m, fmt, cmap, vmin, vmax):
    """imshow of m (NaN cells greyed) with each finite value written in a colour readable on its cell."""
    import matplotlib

    cm = matplotlib.colormaps[cmap].with_extremes(bad="#eaeef2")
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    for (i, j), v in np.ndenumerate(m):
        if np.isfinite(v):
            r, g, b, _ = cm(im.norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, fmt(v), ha="center", va="center", fontsize=7.5, color="white" if dark else TEXT)
    return im


def _pair_names_and_agreement(figures: dict) -> tuple[list, np.ndarray]:
    conf = figures.get("confusion") or {}
    names = conf.get("raters") or figures.get("raters") or []
    agree = np.array([[_num(v) for v in row] for row in conf.get("pair_agreement", [])], dtype=float)
    return names, agree


def _pair_size(figures: dict) -> tuple[float, float]:
    names, agree = _pair_names_and_agreement(figures)
    if len(names) < 2:
        raise NotEnoughData("the heatmap compares interpreters and needs at least two")
    if not np.isfinite(agree[~np.eye(len(names), dtype=bool)]).any():
        raise NotEnoughData("no two interpreters have rated the same block yet")
    size = 1.4 + 0.55 * len(names)
    return max(4.8, size + 1.6), max(3.6, size)


def pair_heatmap(figures: dict) -> bytes:
    fig = _figure(*_pair_size(figures))
    names, agree = _pair_names_and_agreement(figures)
    pair_n = np.asarray((figures.get("confusion") or {}).get("pair_n", []), dtype=float)
    off = ~np.eye(len(names), dtype=bool)
    show = agree.copy()
    show[~off] = np.nan
    ax = fig.add_axes([0.2, 0.18, 0.62, 0.7])
    im = _annotated_heatmap(ax, show, lambda v: f"{v:.0%}", "viridis", 0.0, 1.0)
    for (i, j), n in np.ndenumerate(pair_n):
        if i != j and n > 0:
            ax.text(j, i + 0.3, f"n={int(n)}", ha="center", va="center", fontsize=6,
                    color="white" if show[i, j] < 0.55 else MUTED)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8.5)
    ax.set_yticks(range(len(names)), names, fontsize=8.5)
    ax.set_title("Same dominant class (share of shared blocks)", fontsize=10.5, color=TEXT, loc="left")
    cax = fig.add_axes([0.85, 0.18, 0.03, 0.7])
    fig.colorbar(im, cax=cax).ax.tick_params(labelsize=8)
    return _png(fig)


def _confusion_pooled_and_classes(figures: dict) -> tuple[np.ndarray, np.ndarray]:
    """The pooled counts and the indexes of the classes any interpreter gave as dominant."""
    pooled = np.asarray((figures.get("confusion") or {}).get("pooled") or [], dtype=float)
    if pooled.size == 0 or pooled.sum() == 0:
        raise NotEnoughData("no pair of interpreters has rated the same block yet")
    return pooled, np.flatnonzero((pooled.sum(axis=0) + pooled.sum(axis=1)) > 0)


def _confusion_size(figures: dict) -> tuple[float, float]:
    side = 2.0 + 0.28 * len(_confusion_pooled_and_classes(figures)[1])
    return max(4.8, side + 1.2), max(3.8, side)


def confusion_heatmap(figures: dict) -> bytes:
    fig = _figure(*_confusion_size(figures))
    pooled, idx = _confusion_pooled_and_classes(figures)
    sub = pooled[np.ix_(idx, idx)]
    row = sub.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(row > 0, sub / row, np.nan)
    k = len(idx)
    ax = fig.add_axes([0.16, 0.16, 0.66, 0.72])
    im = _annotated_heatmap(ax, share, lambda v: f"{v:.0%}" if v >= 0.005 else "", "Blues", 0.0, 1.0)
    labels = [CLASSES[i].code for i in idx]
    ax.set_xticks(range(k), labels, fontsize=8.5)
    ax.set_yticks(range(k), labels, fontsize=8.5)
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        for t, i in zip(ticks, idx):
            t.set_bbox({"facecolor": CLASSES[i].colour, "edgecolor": TEXT, "linewidth": 0.4, "pad": 1.5})
            t.set_color("white" if _dark(CLASSES[i].colour) else TEXT)
    ax.set_xlabel("the other interpreter's dominant class", fontsize=9)
    ax.set_ylabel("dominant class", fontsize=9)
    ax.set_title("Pooled dominant-class confusion (row shares)", fontsize=10.5, color=TEXT, loc="left")
    cax = fig.add_axes([0.85, 0.16, 0.03, 0.72])
    fig.colorbar(im, cax=cax).ax.tick_params(labelsize=8)
    return _png(fig)


def _dark(colour: str) -> bool:
    h = colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return 0.299 * r + 0.587 * g + 0.114 * b < 110


def _bias_people(figures: dict) -> list[dict]:
    people = [p for p in figures.get("interpreters", []) if p.get("n_blocks_compared")]
    if not people:
        raise NotEnoughData("bias compares an interpreter with the others on shared blocks; none yet")
    return people


def _bias_size(figures: dict) -> tuple[float, float]:
    return 8.2, 1.9 + 0.42 * len(_bias_people(figures))


def bias_heatmap(figures: dict) -> bytes:
    fig = _figure(*_bias_size(figures))
    people = _bias_people(figures)
    m = np.array([[_num(p["bias_per_class"].get(k)) for k in KEYS] for p in people]) * 100.0
    lim = max(5.0, float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 5.0)
    h = fig.get_figheight()
    top = 1 - 0.45 / h
    bottom = 0.6 / h
    ax = fig.add_axes([0.12, bottom, 0.76, top - bottom - 0.12 / h])
    im = _annotated_heatmap(ax, m, lambda v: f"{v:+.0f}" if abs(v) >= 0.5 else "0", "RdBu_r", -lim, lim)
    ax.set_yticks(range(len(people)), [p["name"] for p in people], fontsize=8.5)
    ax.set_xticks(range(len(CLASSES)), [c.code for c in CLASSES], fontsize=8.5)
    for t, c in zip(ax.get_xticklabels(), CLASSES):
        t.set_bbox({"facecolor": c.colour, "edgecolor": TEXT, "linewidth": 0.4, "pad": 1.5})
        t.set_color("white" if _dark(c.colour) else TEXT)
    ax.set_title("Bias per class: interpreter minus the others' mean (percentage points)", fontsize=10.5,
                 color=TEXT, loc="left")
    cax = fig.add_axes([0.9, bottom, 0.02, top - bottom - 0.12 / h])
    fig.colorbar(im, cax=cax).ax.tick_params(labelsize=8)
    return _png(fig)


def _drift_people(figures: dict) -> list[dict]:
    people = [p for p in figures.get("interpreters", []) if p.get("drift")]
    if not people:
        raise NotEnoughData("drift needs interpreters' submissions on shared blocks")
    return people


def _drift_size(figures: dict) -> tuple[float, float]:
    _drift_people(figures)
    return 6.4, 3.4


def drift_lines(figures: dict) -> bytes:
    fig = _figure(*_drift_size(figures))
    people = _drift_people(figures)
    ax = fig.add_axes([0.1, 0.16, 0.66, 0.72])
    _style(ax)
    ymax = 0.0
    for i, p in enumerate(people):
        bins = p["drift"]
        x = [b["first_index"] + b["n"] / 2 for b in bins]
        y = [_num(b["tv_to_others"]) for b in bins]
        ymax = max(ymax, np.nanmax(y) if np.isfinite(y).any() else 0.0)
        ax.plot(x, y, marker="o", markersize=3.5, linewidth=1.5, color=SERIES[i % len(SERIES)],
                label=f"{p['name']} ({p['n_blocks_compared']})")
    threshold = float(figures.get("tv_threshold", 0.25))
    ax.axhline(threshold, color=ACCENT, linestyle="--", linewidth=1)
    ax.text(ax.get_xlim()[1], threshold, f"dispute threshold {threshold:g} ", color=ACCENT, fontsize=7.5,
            ha="right", va="bottom")
    ax.set_ylim(0, max(ymax, threshold) * 1.15 + 0.01)
    ax.set_xlabel("the interpreter's submissions, in order (bin centres)", fontsize=9)
    ax.set_ylabel("TV to the others' mean", fontsize=9)
    ax.set_title("Drift: difference to the others over time", fontsize=10.5, color=TEXT, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False,
              title="interpreter (blocks)", title_fontsize=8)
    return _png(fig)


_SIZE = {
    "alpha": _alpha_size,
    "tv": _tv_size,
    "pairs": _pair_size,
    "confusion": _confusion_size,
    "bias": _bias_size,
    "drift": _drift_size,
}

_DRAW = {
    "alpha": alpha_bars,
    "tv": tv_histogram,
    "pairs": pair_heatmap,
    "confusion": confusion_heatmap,
    "bias": bias_heatmap,
    "drift": drift_lines,
}
