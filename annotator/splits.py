"""The abundance split: 17 per-mille integers (lcz_model.classes order) that sum to exactly 1000.

The browser works in percent with one decimal; the API and the database in per-mille integers,
so sum-to-one is checked exactly. Validation names every bad field.
"""
from __future__ import annotations

import math

from lcz_model.classes import KEYS, N_CLASSES

TOTAL = 1000


class SplitError(ValueError):
    """Carries {field: [messages]} for a 400 response."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def parse_split(data, *, require_total: bool) -> list[int]:
    """{lcz_1: int, ..., lcz_g: int} -> list of 17 ints, or SplitError naming the bad fields.

    require_total: submitted splits must sum to exactly 1000; drafts may be incomplete.
    """
    if not isinstance(data, dict):
        raise SplitError({"split": [f"must be an object with the 17 keys {', '.join(KEYS)}."]})
    errors: dict[str, list[str]] = {}
    for key in sorted(set(data) - set(KEYS)):
        errors[key] = [f"unknown class; the classes are {', '.join(KEYS)}."]
    values: list[int] = []
    for key in KEYS:
        if key not in data:
            errors[key] = ["missing; give every class, 0 for absent ones."]
            values.append(0)
            continue
        raw = data[key]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (isinstance(raw, float) and (
                math.isnan(raw) or math.isinf(raw) or raw != int(raw))):
            errors[key] = [f"must be a whole number of per-mille (0..1000); got {raw!r}."]
            values.append(0)
            continue
        value = int(raw)
        if value < 0:
            errors[key] = [f"must not be negative; got {value}."]
        elif value > TOTAL:
            errors[key] = [f"must be at most {TOTAL}; got {value}."]
        values.append(value)
    if not errors:
        total = sum(values)
        if require_total and total != TOTAL:
            errors["split"] = [f"must sum to exactly {TOTAL} per-mille (100.0 %); the sum is {total} "
                               f"({'short' if total < TOTAL else 'over'} by {abs(TOTAL - total)})."]
        elif total > TOTAL:
            errors["split"] = [f"sums to {total} per-mille, over {TOTAL}."]
    if errors:
        raise SplitError(errors)
    return values


def as_dict(permille: list[int]) -> dict[str, int]:
    assert len(permille) == N_CLASSES
    return dict(zip(KEYS, permille))

