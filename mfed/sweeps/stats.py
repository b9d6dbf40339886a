"""Confidence intervals over seeds and paired comparisons of two strategies on the same seeds (scipy.stats).

A benchmark runs every strategy on the same seeds: seed ``s`` fixes the data, the partition, the
initial model and every client's shuffling, so the runs of two strategies on one seed differ only
in the strategy. Comparing them seed by seed (a paired t-test on the differences) removes the
seed-to-seed spread that the per-strategy intervals carry.

A benchmark tests one strategy against every other on every task: a family of tests. Holm's
step-down procedure (:func:`holm`) adjusts the family's p-values so that the chance of any false
"significant" in the family stays below the level; a claim rests on the adjusted value. Each
difference also comes as a standardised effect size, Cohen's d_z (the mean paired difference over
the differences' standard deviation), with its interval from the noncentral t distribution.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


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
    """Mean of ``a - b`` over paired values, its interval, the paired t-test's p-value, the effect size d_z.

    The p-value is two-sided; d_z and its interval are NaN where the differences have no spread or n < 2.
    """

    difference: Interval
    p_value: float
    effect: Interval = Interval(math.nan, math.nan, math.nan, 0)


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
        return Paired(difference, math.nan, Interval(math.nan, math.nan, math.nan, len(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(stats.ttest_rel(x, y).pvalue)
    return Paired(difference, p_value, effect_size(list(x - y), confidence))


def effect_size(differences: Sequence[float], confidence: float = 0.95) -> Interval:
    """Cohen's d_z of paired ``differences`` (mean / sample sd) and its interval by inverting the noncentral t.

    With n differences, t = d_z sqrt(n) follows a noncentral t with n - 1 degrees of freedom and
    noncentrality delta sqrt(n); the bounds are the noncentralities under which the observed t
    sits at the upper and lower tail (Steiger and Fouladi's method), divided by sqrt(n).
    """
    array = _finite(differences)
    n = len(array)
    sd = float(array.std(ddof=1)) if n > 1 else 0.0
    if n < 2 or sd == 0:
        return Interval(math.nan, math.nan, math.nan, n)
    d = float(array.mean()) / sd
    t, df, tail = abs(d) * math.sqrt(n), n - 1, (1 - confidence) / 2  # d < 0: the mirror image of |d|

    def cdf(nc: float) -> float:  # scipy's nct gives NaN far in a tail, where the value is 0 (nc >> t) or 1
        value = float(stats.nct.cdf(t, df, nc))
        return value if not math.isnan(value) else 0.0 if nc > t else 1.0

    def bound(target: float) -> float:  # the noncentrality whose cdf at t equals target (cdf falls as it grows)
        low, high = t - 10.0, t + 10.0
        while cdf(low) < target:
            low -= 10.0 * (1 + abs(low))
        while cdf(high) > target:
            high += 10.0 * (1 + abs(high))
        return float(optimize.brentq(lambda nc: cdf(nc) - target, low, high, xtol=1e-10))

    low, high = bound(1 - tail) / math.sqrt(n), bound(tail) / math.sqrt(n)
    return Interval(d, low, high, n) if d >= 0 else Interval(d, -high, -low, n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of one family's p-values, in their order; NaN stays NaN and is not counted.

    Sorted ascending p_(1) <= ... <= p_(m) over the m finite values, the adjusted
    p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    finite = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running, m = 0.0, len(finite)
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
