"""Confidence intervals over seeds and paired comparisons of two strategies on the same seeds (scipy.stats).

A benchmark runs every strategy on the same seeds: seed ``s`` fixes the data, the partition, the
initial model and every client's shuffling, so the runs of two strategies on one seed differ only
in the strategy. Comparing them seed by seed (a paired t-test on the differences) removes the
seed-to-seed spread that the per-strategy intervals carry.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided Student-t confidence interval over ``n`` values (NaN bounds when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval's width: the ``±`` of ``mean ± half_width``."""
        return (self.high - self.low) / 2

    def text(self, digits: int = 2) -> str:
        """``12.34 ± 0.56`` (or ``12.34`` for a single value)."""
        if math.isnan(self.mean):
            return "-"
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


@dataclass(frozen=True)
class Paired:
    """Mean of ``a - b`` over paired values, its confidence interval and the paired t-test's two-sided p-value."""

    difference: Interval
    p_value: float


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.isfinite(array).all():
        raise ValueError(f"confidence intervals need finite values, got {list(values)}")
    return array


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean of ``values`` and its Student-t interval at ``confidence`` (df = n - 1)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    array = _finite(values)
    n = len(array)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(array.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    sem = float(stats.sem(array))
    if sem == 0:
        return Interval(mean, mean, mean, n)
    low, high = stats.t.interval(confidence, df=n - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), n)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Paired:
    """``a`` against ``b`` value by value (the same seeds): the mean difference, its interval, the p-value.

    The p-value is NaN for fewer than two pairs, and for differences that are all equal (no spread:
    the t statistic is undefined); the interval then has zero width.
    """
    if len(a) != len(b):
        raise ValueError(f"a paired comparison needs as many values on each side, got {len(a)} and {len(b)}")
    x, y = _finite(a), _finite(b)
    difference = mean_ci(list(x - y), confidence)
    if len(x) < 2 or np.ptp(x - y) == 0:
        return Paired(difference, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(stats.ttest_rel(x, y).pvalue)
    return Paired(difference, p_value)
