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

A test that finds nothing says little unless it could have found something: :func:`power_analysis`
gives, from the spread of the paired differences and the number of seeds, the smallest difference the
test detects with 80 % power (:func:`detectable_effect`) and the seeds it would need to detect the
observed one (:func:`seeds_needed`). The power of the two-sided paired t-test (:func:`paired_power`)
is that of a one-sample t-test on the differences: t follows a noncentral t with n - 1 degrees of
freedom and noncentrality d_z sqrt(n) (statsmodels' ``TTestPower`` computes the same; the tests
check against it).
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


POWER = 0.8
"""The power the benchmark's reports plan for: a true difference is found 4 times in 5."""
MAX_SEEDS = 10**9
""":func:`seeds_needed` looks no further: a d_z that needs more is no difference a benchmark can find."""


@dataclass(frozen=True)
class Power:
    """What a paired t-test over ``n`` differences can detect (:func:`power_analysis`).

    ``difference``: the smallest absolute mean difference (the differences' units) detected with the
    power asked, for the differences' observed standard deviation; ``d_z``: the same as an effect size
    (it depends on n and the level only); ``seeds``: the pairs (seeds) needed to detect the observed
    d_z with that power, None where no number does (no difference observed, or more than
    :data:`MAX_SEEDS`). NaN and None where the differences have no spread, are fewer than two, or are
    not all finite.
    """

    difference: float
    d_z: float
    seeds: int | None


def _levels(alpha: float, power: float | None = None) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if power is not None and not alpha < power < 1:
        raise ValueError(f"power must be in (alpha, 1) = ({alpha}, 1), got {power}")


def _upper_tail(t: float, df: float, nc: float) -> float:
    """P(T > t) for T noncentral t; scipy gives NaN far in a tail, where the value is 0 (nc << t) or 1."""
    with warnings.catch_warnings():  # its series can stop short far out (one degree of freedom, a tiny alpha)
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(stats.nct.sf(t, df, nc))
    return value if not math.isnan(value) else 0.0 if nc < t else 1.0


def paired_power(d_z: float, n: int, alpha: float = 0.05) -> float:
    """The power of the two-sided paired t-test at level ``alpha`` over ``n`` pairs when the true effect is ``d_z``.

    With c the t distribution's upper alpha/2 point on n - 1 degrees of freedom and T noncentral t with
    noncentrality d_z sqrt(n): P(T > c) + P(T < -c). NaN for n < 2 or a d_z that is not finite.
    """
    _levels(alpha)
    if n < 2 or not math.isfinite(d_z):
        return math.nan
    df, nc = n - 1, d_z * math.sqrt(n)
    critical = float(stats.t.isf(alpha / 2, df))
    return _upper_tail(critical, df, nc) + _upper_tail(critical, df, -nc)  # P(T < -c) = P(-T > c), -T: nc -> -nc


def detectable_effect(n: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest d_z (>= 0) that the two-sided paired t-test over ``n`` pairs detects with ``power`` at ``alpha``.

    The root of :func:`paired_power` = ``power`` in d_z (the power rises with |d_z| from alpha at 0);
    NaN for n < 2, and where scipy's noncentral t fails so far out that no root holds (two pairs at an
    alpha below about 1e-5). Times the differences' standard deviation, the smallest detectable mean difference.
    """
    _levels(alpha, power)
    if n < 2:
        return math.nan
    high = 1.0
    while paired_power(high, n, alpha) < power:
        high *= 2
    d = float(optimize.brentq(lambda d: paired_power(d, n, alpha) - power, 0.0, high, xtol=1e-12, rtol=1e-12))
    return d if abs(paired_power(d, n, alpha) - power) < 1e-6 else math.nan


def seeds_needed(d_z: float, alpha: float = 0.05, power: float = POWER) -> int | None:
    """The fewest pairs (>= 2) with which the two-sided paired t-test finds a true ``d_z`` with ``power`` at ``alpha``.

    The power rises with n (a larger noncentrality, a smaller critical value): doubling brackets it,
    bisection finds the first n that reaches ``power``. None for a d_z that is 0 or not finite, or
    that needs more than :data:`MAX_SEEDS`.
    """
    _levels(alpha, power)
    if not math.isfinite(d_z) or d_z == 0:
        return None
    low, high = 1, 2  # paired_power(low) < power <= paired_power(high) once bracketed
    while paired_power(d_z, high, alpha) < power:
        if high >= MAX_SEEDS:
            return None
        low, high = high, min(2 * high, MAX_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if paired_power(d_z, middle, alpha) >= power else (middle, high)
    return high


def power_analysis(differences: Sequence[float], alpha: float = 0.05, power: float = POWER) -> Power:
    """What a paired t-test on ``differences`` could detect at ``alpha`` with ``power``, and the seeds it needs.

    The smallest detectable mean difference is :func:`detectable_effect` times the differences'
    sample standard deviation; the seeds needed are :func:`seeds_needed` for the observed d_z (mean /
    sample sd), an estimate as uncertain as that d_z (see :func:`effect_size`'s interval). NaN and
    None for fewer than two differences, no spread, or values that are not all finite.
    """
    _levels(alpha, power)
    array = np.asarray(differences, dtype=float)
    n = len(array)
    if n < 2 or not np.isfinite(array).all():
        return Power(math.nan, math.nan, None)
    if np.ptp(array) == 0:  # no spread (as :func:`paired`: the sd of equal floats may be 1e-17, not 0)
        return Power(math.nan, math.nan, None)
    sd = float(array.std(ddof=1))
    d = detectable_effect(n, alpha, power)
    return Power(d * sd, d, seeds_needed(float(array.mean()) / sd, alpha, power))
