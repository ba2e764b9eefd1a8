"""The 17 Local Climate Zone classes (Stewart & Oke 2012): the one place they are defined.

Order used everywhere (arrays, CSV columns, model outputs, database per-mille vectors):
index 0..16 = LCZ 1..10, A..G. Colours are the WUDAPT palette.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LCZClass:
    index: int
    code: str          # "1".."10", "A".."G"
    name: str
    group: str         # "built" or "natural"
    colour: str        # "#RRGGBB"
    description: str   # what it looks like from above (editor help text)

    @property
    def key(self) -> str:
        """Column / field name: lcz_1..lcz_10, lcz_a..lcz_g."""
        return f"lcz_{self.code.lower()}"

    @property
    def label(self) -> str:
        return f"LCZ {self.code}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        h = self.colour.lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))


_TABLE = [
    ("1", "Compact high-rise", "built", "#8C0000",
     "tall buildings (ten storeys and more) packed densely; few or no trees; ground mostly paved"),
    ("2", "Compact mid-rise", "built", "#D10000",
     "dense 3-9 storey buildings; few or no trees; mostly paved"),
    ("3", "Compact low-rise", "built", "#FF0000",
     "dense 1-3 storey buildings; few or no trees; mostly paved"),
    ("4", "Open high-rise", "built", "#BF4D00",
     "tall buildings spaced openly, with plenty of grass and scattered trees between"),
    ("5", "Open mid-rise", "built", "#FF6600",
     "3-9 storey buildings spaced openly, with plenty of pervious cover"),
    ("6", "Open low-rise", "built", "#FF9955",
     "1-3 storey buildings spaced openly (detached houses), gardens and trees"),
    ("7", "Lightweight low-rise", "built", "#FAEE05",
     "dense single-storey lightweight structures (informal settlements), hard-packed ground"),
    ("8", "Large low-rise", "built", "#BCBCBC",
     "large low buildings (warehouses, malls, depots) spaced openly; mostly paved; few trees"),
    ("9", "Sparsely built", "built", "#FFCCAA",
     "small or mid-size buildings sparsely spread in a natural setting"),
    ("10", "Heavy industry", "built", "#555555",
     "low and mid-rise industrial structures (tanks, stacks, towers); paved or hard-packed"),
    ("A", "Dense trees", "natural", "#006A00",
     "heavily wooded: continuous tree canopy"),
    ("B", "Scattered trees", "natural", "#00AA00",
     "lightly wooded: scattered trees over low plants"),
    ("C", "Bush, scrub", "natural", "#648525",
     "open bushes, shrubs and short woody trees, often over bare soil"),
    ("D", "Low plants", "natural", "#B9DB79",
     "featureless grass, herbs or crops; few or no trees"),
    ("E", "Bare rock or paved", "natural", "#000000",
     "featureless bare rock or pavement (plazas, car parks, runways)"),
    ("F", "Bare soil or sand", "natural", "#FBF7AE",
     "featureless bare soil or sand"),
    ("G", "Water", "natural", "#6A6AFF",
     "open water: sea, lakes, rivers, ponds"),
]

CLASSES: tuple[LCZClass, ...] = tuple(
    LCZClass(i, code, name, group, colour, desc)
    for i, (code, name, group, colour, desc) in enumerate(_TABLE)
)
N_CLASSES = len(CLASSES)  # 17
CODES: tuple[str, ...] = tuple(c.code for c in CLASSES)
KEYS: tuple[str, ...] = tuple(c.key for c in CLASSES)
BUILT_INDICES: tuple[int, ...] = tuple(c.index for c in CLASSES if c.group == "built")
NATURAL_INDICES: tuple[int, ...] = tuple(c.index for c in CLASSES if c.group == "natural")
BY_CODE = {c.code: c for c in CLASSES}
BY_KEY = {c.key: c for c in CLASSES}

# WUDAPT similarity matrix (symmetric; rows/columns in the order above).
_SIMILARITY_ROWS = """
1.00,0.92,0.83,0.67,0.58,0.50,0.58,0.75,0.42,0.75,0.33,0.25,0.08,0.00,0.25,0.00,0.00
0.92,1.00,0.92,0.58,0.67,0.58,0.67,0.83,0.42,0.83,0.42,0.33,0.25,0.08,0.33,0.08,0.08
0.83,0.92,1.00,0.50,0.58,0.67,0.75,0.92,0.58,0.92,0.50,0.42,0.33,0.17,0.42,0.17,0.17
0.67,0.58,0.50,1.00,0.92,0.83,0.75,0.50,0.75,0.58,0.50,0.58,0.50,0.33,0.08,0.33,0.33
0.58,0.67,0.58,0.92,1.00,0.92,0.83,0.67,0.83,0.67,0.58,0.67,0.50,0.42,0.17,0.42,0.42
0.50,0.58,0.67,0.83,0.92,1.00,0.92,0.75,0.92,0.75,0.67,0.75,0.67,0.58,0.25,0.50,0.50
0.58,0.67,0.75,0.75,0.83,0.92,1.00,0.67,0.83,0.67,0.75,0.67,0.58,0.42,0.17,0.42,0.42
0.75,0.83,0.92,0.50,0.67,0.75,0.67,1.00,0.75,0.92,0.42,0.50,0.42,0.25,0.50,0.33,0.33
0.42,0.42,0.58,0.75,0.83,0.92,0.83,0.75,1.00,0.67,0.58,0.67,0.75,0.58,0.33,0.58,0.58
0.75,0.83,0.92,0.58,0.67,0.75,0.67,0.92,0.67,1.00,0.42,0.50,0.42,0.25,0.50,0.33,0.33
0.33,0.42,0.50,0.50,0.58,0.67,0.75,0.42,0.58,0.42,1.00,0.92,0.83,0.67,0.42,0.67,0.67
0.25,0.33,0.42,0.58,0.67,0.75,0.67,0.50,0.67,0.50,0.92,1.00,0.92,0.75,0.50,0.75,0.75
0.08,0.25,0.33,0.50,0.50,0.67,0.58,0.42,0.75,0.42,0.83,0.92,1.00,0.83,0.58,0.83,0.83
0.00,0.08,0.17,0.33,0.42,0.58,0.42,0.25,0.58,0.25,0.67,0.75,0.83,1.00,0.75,0.92,0.92
0.25,0.33,0.42,0.08,0.17,0.25,0.17,0.50,0.33,0.50,0.42,0.50,0.58,0.75,1.00,0.75,0.75
0.00,0.08,0.17,0.33,0.42,0.50,0.42,0.33,0.58,0.33,0.67,0.75,0.83,0.92,0.75,1.00,0.92
0.00,0.08,0.17,0.33,0.42,0.50,0.42,0.33,0.58,0.33,0.67,0.75,0.83,0.92,0.75,0.92,1.00
"""


def similarity_matrix() -> np.ndarray:
    """The 17x17 WUDAPT class-similarity matrix W as a fresh float64 array."""
    rows = [r for r in _SIMILARITY_ROWS.strip().splitlines()]
    return np.array([[float(v) for v in r.split(",")] for r in rows], dtype=np.float64)


def index_of(code_or_key: str) -> int:
    """Index of a class given its code ("5", "b") or key ("lcz_5", "lcz_b")."""
    s = str(code_or_key).strip()
    if s.lower().startswith("lcz_"):
        s = s[4:]
    elif s.upper().startswith("LCZ "):
        s = s[4:]
    s = s.upper()
    if s not in BY_CODE:
        raise KeyError(f"unknown LCZ class {code_or_key!r}; expected one of {', '.join(CODES)}")
    return BY_CODE[s].index
