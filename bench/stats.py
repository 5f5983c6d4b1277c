"""The few statistics the benchmark reports: nearest-rank percentiles, medians, and the
median of per-round ratios (each round's pair measured back to back, so a noisy round
moves both sides and the ratio less than either number)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of an already sorted sequence (None if empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (None if there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratios(numerators: Sequence[float | None], denominators: Sequence[float | None]) -> list[float | None]:
    """Round-by-round ratios; None where either side is missing or the denominator is 0."""
    return [n / d if n is not None and d else None for n, d in zip(numerators, denominators, strict=True)]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
