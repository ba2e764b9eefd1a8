"""The paper's comparison baselines (Tables 4-5), besides the plain encoder (MSU-Net variant
"baseline"):

- :class:`RandomForestBaseline`: WUDAPT-style. Per-block spectral statistics inside the polygon
  (:func:`block_spectral_features`) -> scikit-learn random forest *classifier* of the dominant
  class; its class probabilities are read as the 17 abundances (classes never seen in training
  get 0).
  DECISION: dominant-class classification (as WUDAPT and the paper do) is the default; ``mode=
  "soft"`` instead expands every block into one row per class with its fraction as sample weight,
  so mixed blocks teach the forest their mixture (an option, not the paper's baseline).
- :class:`MeanSplitBaseline`: predicts the training set's mean split for every block.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from lcz_model.atomic import atomic_file
from lcz_model.classes import N_CLASSES

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
SPECTRAL_FEATURE_NAMES: tuple[str, ...] = tuple(
    [f"{b}_{s}" for b in ("r", "g", "b") for s in ("mean", "std")]
    + [f"{b}_q{int(q * 100)}" for b in ("r", "g", "b") for q in QUANTILES]
    + ["brightness_mean", "brightness_std", "exg_mean", "exg_std", "gradient_mean",
       "dark_share", "mask_share"]
)


def block_spectral_features(global_rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(F,) float32 features of the pixels inside the block polygon.

    Per band (R, G, B, scaled to 0..1): mean, std, quantiles 10/25/50/75/90; then brightness
    mean/std, excess-green (2G - R - B) mean/std, mean gradient magnitude of the brightness
    inside the mask (a texture cue), the share of dark pixels (brightness < 0.2, shadows/water)
    and the mask's share of the image (block compactness at the global scale).
    An empty mask falls back to the image's non-black pixels, then to the whole image.
    """
    img = np.asarray(global_rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"global_rgb must be (H, W, 3); got {img.shape}")
    x = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    m = np.asarray(mask).astype(bool)
    if m.shape != x.shape[:2]:
        raise ValueError(f"mask shape {m.shape} differs from image shape {x.shape[:2]}")
    if not m.any():
        m = x.sum(axis=2) > 0
    if not m.any():
        m = np.ones(x.shape[:2], dtype=bool)
    pix = x[m]                                             # (n, 3)
    feats: list[float] = []
    for c in range(3):
        feats += [pix[:, c].mean(), pix[:, c].std()]
    for c in range(3):
        feats += list(np.quantile(pix[:, c], QUANTILES))
    bright = x.mean(axis=2)
    exg = 2 * x[..., 1] - x[..., 0] - x[..., 2]
    gy, gx = np.gradient(bright)
    grad = np.hypot(gx, gy)
    feats += [bright[m].mean(), bright[m].std(), exg[m].mean(), exg[m].std(), grad[m].mean(),
              (bright[m] < 0.2).mean(), m.mean()]
    return np.asarray(feats, dtype=np.float32)


def _dominant(fractions: np.ndarray) -> np.ndarray:
    return np.asarray(fractions, dtype=np.float64).argmax(axis=1)


class RandomForestBaseline:
    """Random forest on block features; predict() -> (N, 17) rows summing to 1."""

    def __init__(self, n_estimators: int = 300, mode: str = "dominant", random_state: int = 0,
                 n_jobs: int = -1, **rf_kwargs):
        if mode not in ("dominant", "soft"):
            raise ValueError(f"mode must be 'dominant' or 'soft', got {mode!r}")
        from sklearn.ensemble import RandomForestClassifier

        self.mode = mode
        self.model = RandomForestClassifier(n_estimators=n_estimators, random_state=random_state,
                                            n_jobs=n_jobs, **rf_kwargs)
        self.feature_names: Sequence[str] | None = None

    def fit(self, features: np.ndarray, fractions: np.ndarray) -> "RandomForestBaseline":
        X = np.asarray(features, dtype=np.float32)
        Y = np.asarray(fractions, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[1] != N_CLASSES or len(Y) != len(X):
            raise ValueError(f"fractions must be (N, {N_CLASSES}) with N = {len(X)} rows; "
                             f"got {Y.shape}")
        if self.mode == "dominant":
            self.model.fit(X, _dominant(Y))
        else:
            rows, cls = np.nonzero(Y > 0)
            self.model.fit(X[rows], cls, sample_weight=Y[rows, cls])
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        X = np.asarray(features, dtype=np.float32)
        proba = self.model.predict_proba(X)
        out = np.zeros((len(X), N_CLASSES), dtype=np.float64)
        out[:, self.model.classes_.astype(int)] = proba
        s = out.sum(axis=1, keepdims=True)
        return out / np.where(s > 0, s, 1.0)

    def save(self, path: str | os.PathLike) -> None:
        import joblib

        with atomic_file(path) as tmp:
            joblib.dump({"kind": "RandomForestBaseline", "mode": self.mode, "model": self.model,
                         "feature_names": list(SPECTRAL_FEATURE_NAMES)}, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RandomForestBaseline":
        import joblib

        obj = joblib.load(path)
        if not isinstance(obj, dict) or obj.get("kind") != "RandomForestBaseline":
            raise ValueError(f"{path!r} is not a saved RandomForestBaseline")
        self = cls.__new__(cls)
        self.mode, self.model = obj["mode"], obj["model"]
        self.feature_names = obj.get("feature_names")
        return self


class MeanSplitBaseline:
    """Predicts the mean training split for every block."""

    def __init__(self):
        self.mean_: np.ndarray | None = None

    def fit(self, fractions: np.ndarray) -> "MeanSplitBaseline":
        Y = np.asarray(fractions, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[1] != N_CLASSES or not len(Y):
            raise ValueError(f"fractions must be a non-empty (N, {N_CLASSES}) array; "
                             f"got {Y.shape}")
        m = Y.mean(axis=0)
        self.mean_ = m / m.sum()
        return self

    def predict(self, n: int) -> np.ndarray:
        if self.mean_ is None:
            raise RuntimeError("MeanSplitBaseline.predict before fit")
        return np.tile(self.mean_, (int(n), 1))
