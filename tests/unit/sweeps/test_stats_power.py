"""The paired t-test's power (mfed.sweeps.stats) against statsmodels' TTestPower and a Monte Carlo simulation."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from mfed.sweeps.stats import MAX_SEEDS, Power, detectable_effect, paired_power, power_analysis, seeds_needed

try:  # the independent reference, in the dev extras (not a runtime dependency)
    from statsmodels.stats import power as power_mod
except ImportError:  # pragma: no cover
    power_mod = None
statsmodels = pytest.mark.skipif(power_mod is None, reason="needs statsmodels (pip install -e .[dev])")
TTEST = power_mod.TTestPower() if power_mod is not None else None
HOLM_36 = 0.05 / 36  # the level of benchmark=hetero_quick's table (36 tests)


def reference_power(d_z, n, alpha):
    """statsmodels' power of the two-sided one-sample (paired) t-test.

    Its lower tail P(T < -c) is NaN far out (scipy.special), where it is 0 for d_z >= 0: the upper
    tail, statsmodels' too, is then the power. NaN for d_z < 0 there.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(power_mod.ttest_power(d_z, n, alpha, alternative="two-sided"))
        if math.isnan(value) and d_z >= 0:
            value = float(power_mod.nct_sf(sps.t.isf(alpha / 2, n - 1), n - 1, d_z * math.sqrt(n)))
    return value


@pytest.mark.parametrize("alpha", [0.05, 0.01, HOLM_36])
@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
@pytest.mark.parametrize("d_z", [0.0, 0.3, -0.8, 1.5, 4.0])
@statsmodels
def test_power_is_statsmodels_ttest_power(d_z, n, alpha):
    expected = reference_power(d_z, n, alpha)
    if math.isnan(expected):  # d_z < 0 far out: the mirror image
        expected = reference_power(-d_z, n, alpha)
    assert paired_power(d_z, n, alpha) == pytest.approx(expected, abs=1e-10)
    assert paired_power(d_z, n, alpha) == pytest.approx(paired_power(-d_z, n, alpha), abs=1e-12)  # two-sided


# statsmodels' solve_power stops at a wrong root for few seeds at a small alpha (n 2 and 3 at 0.01 and
# below, n 5 at 0.05 / 36: its power there is NaN or its bracket ends at 10); these it solves
SOLVED = [(n, a) for n in (2, 3, 5, 10, 30) for a in (0.05,)] + [(5, 0.01), (10, 0.01), (30, 0.01)]
SOLVED += [(10, HOLM_36), (30, HOLM_36)]


@pytest.mark.parametrize(("n", "alpha"), SOLVED)
@statsmodels
def test_detectable_effect_is_statsmodels_solve_power(n, alpha):
    expected = TTEST.solve_power(effect_size=None, nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
    assert detectable_effect(n, alpha) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.05, 0.01, HOLM_36])
@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
@statsmodels
def test_detectable_effect_has_80_percent_power_by_statsmodels_where_its_solver_fails_too(n, alpha):
    d = detectable_effect(n, alpha)
    assert reference_power(d, n, alpha) == pytest.approx(0.8, abs=1e-8)
    assert d * math.sqrt(n) > sps.t.isf(alpha / 2, n - 1)  # beyond the critical value: more than half the power


@pytest.mark.parametrize("alpha", [0.05, 0.01, HOLM_36])
@pytest.mark.parametrize("d_z", [0.3, 0.8, -1.1, 2.0, 4.0])
@statsmodels
def test_seeds_needed_is_the_first_whole_n_past_statsmodels_solve_power(d_z, alpha):
    n = seeds_needed(d_z, alpha)
    assert n is not None and n >= 2
    # the first n with 80 % power, by statsmodels' power function
    assert reference_power(abs(d_z), n, alpha) >= 0.8 > (reference_power(abs(d_z), n - 1, alpha) if n > 2 else 0)
    if (d_z, alpha) != (4.0, HOLM_36):  # there its solver stops at 4.17 (NaN power at 5): n 6 is right, see above
        expected = TTEST.solve_power(effect_size=abs(d_z), nobs=None, alpha=alpha, power=0.8, alternative="two-sided")
        assert n == math.ceil(expected)


def test_power_by_monte_carlo():
    """20,000 benchmarks of 5 seeds whose paired differences are normal with d_z at the detectable effect.

    The share the paired t-test rejects at 0.05 is the power, 0.8: its standard error is
    sqrt(0.8 * 0.2 / 20000) = 0.0028, the tolerance 0.012 (over 4 standard errors; a fixed seed).
    """
    n, alpha = 5, 0.05
    d = detectable_effect(n, alpha)
    rng = np.random.default_rng(0)
    differences = rng.normal(loc=d * 2.5, scale=2.5, size=(20_000, n))  # sd 2.5 (a metric's units): d_z = d
    p = sps.ttest_1samp(differences, 0.0, axis=1).pvalue
    assert np.mean(p < alpha) == pytest.approx(0.8, abs=0.012)
    # and at d_z 1 with 8 seeds the simulated power is paired_power's
    differences = rng.normal(loc=1.0, scale=1.0, size=(20_000, 8))
    p = sps.ttest_1samp(differences, 0.0, axis=1).pvalue
    assert np.mean(p < alpha) == pytest.approx(paired_power(1.0, 8, alpha), abs=0.012)


def test_power_analysis_in_the_metrics_units():
    differences = [1.0, 2.0, 3.0, 4.0, 5.5]  # d_z = 3.1 / 1.75
    found = power_analysis(differences, 0.01)
    sd = np.std(differences, ddof=1)
    assert found.d_z == pytest.approx(detectable_effect(5, 0.01))
    assert found.difference == pytest.approx(found.d_z * sd)
    assert found.seeds == seeds_needed(np.mean(differences) / sd, 0.01)
    # scaled by 10 (another unit): the difference scales, the effect and the seeds do not
    scaled = power_analysis([10 * x for x in differences], 0.01)
    assert scaled.difference == pytest.approx(10 * found.difference) and scaled.seeds == found.seeds
    assert power_analysis([-x for x in differences], 0.01) == found  # the sign does not matter


def test_power_edge_cases_are_nan_or_none_never_an_error():
    nothing = Power(math.nan, math.nan, None)

    def same(a, b):
        return (a.seeds == b.seeds) and all(math.isnan(x) for x in (a.difference, a.d_z, b.difference, b.d_z))

    assert same(power_analysis([], 0.05), nothing) and same(power_analysis([1.0], 0.05), nothing)  # n < 2
    assert same(power_analysis([0.5, 0.5, 0.5], 0.05), nothing)  # no spread: the test has no t statistic
    assert same(power_analysis([0.3 - 0.2] * 3, 0.05), nothing)  # sd 1.7e-17 from rounding: still no spread
    assert math.isnan(detectable_effect(2, 1e-9))  # scipy's noncentral t fails this far out: NaN, not a wrong root
    assert same(power_analysis([1.0, math.nan, 2.0], 0.05), nothing)
    assert same(power_analysis([1.0, math.inf], 0.05), nothing)
    assert power_analysis([1.0, -1.0], 0.05).seeds is None  # no difference observed: no n finds it
    assert math.isfinite(power_analysis([1.0, -1.0], 0.05).difference)  # but what the test could find, it says
    assert math.isnan(paired_power(1.0, 1, 0.05)) and math.isnan(paired_power(math.nan, 5, 0.05))
    assert math.isnan(detectable_effect(1, 0.05)) and math.isnan(detectable_effect(0, 0.05))
    assert seeds_needed(0.0) is None and seeds_needed(math.nan) is None and seeds_needed(math.inf) is None
    assert seeds_needed(1e-6) is None  # ((1.96 + 0.84) / 1e-6)^2 ~ 8e12 > MAX_SEEDS
    assert seeds_needed(1e-4) > 7e8 and MAX_SEEDS == 10**9  # 7.8e8: still found
    assert seeds_needed(100.0) == 2 and paired_power(0.0, 3, 0.05) == pytest.approx(0.05)  # alpha at no effect
    for bad in (0.0, 1.0, math.nan, -0.1):
        with pytest.raises(ValueError, match="alpha must be in"):
            power_analysis([1.0, 2.0], bad)
    with pytest.raises(ValueError, match="power must be in"):
        seeds_needed(1.0, 0.05, 0.01)
