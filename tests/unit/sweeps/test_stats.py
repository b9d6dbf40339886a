import math

import numpy as np
import pytest
from scipy import stats as sps

from mfed.sweeps.stats import effect_size, holm, mean_ci, paired


def test_mean_ci_is_the_student_t_interval_by_hand():
    # values 1, 2, 3: mean 2, sample sd 1, sem 1/sqrt(3); t(0.975, df=2) = 4.30265273 (tables)
    ci = mean_ci([1.0, 2.0, 3.0])
    half = 4.30265273 / math.sqrt(3)
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.low == pytest.approx(2 - half, abs=1e-8) and ci.high == pytest.approx(2 + half, abs=1e-8)
    assert ci.text() == "2.00 ± 2.48"


def test_mean_ci_matches_scipy_on_fixed_numbers_at_other_levels():
    values = [30.12, 28.4, 31.9, 29.75, 30.6]
    for level in (0.9, 0.95, 0.99):
        ci = mean_ci(values, level)
        low, high = sps.t.interval(level, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
        assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)


def test_degenerate_inputs_say_so():
    single = mean_ci([4.0])
    assert single.mean == 4.0 and math.isnan(single.half_width) and single.text() == "4.00"
    same = mean_ci([2.0, 2.0, 2.0])
    assert (same.low, same.high) == (2.0, 2.0)
    assert mean_ci([]).text() == "-"
    with pytest.raises(ValueError, match="finite values"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence must be in"):
        mean_ci([1.0, 2.0], 1.5)


def test_paired_test_matches_scipy_and_the_difference_interval():
    # M-Fed and a baseline on the same three seeds
    a, b = [31.0, 29.5, 30.2], [30.1, 29.4, 29.0]
    result = paired(a, b)
    expected = sps.ttest_rel(a, b)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    diffs = np.subtract(a, b)
    assert result.difference.mean == pytest.approx(diffs.mean(), abs=1e-12)
    low, high = sps.t.interval(0.95, 2, loc=diffs.mean(), scale=sps.sem(diffs))
    assert (result.difference.low, result.difference.high) == pytest.approx((low, high), abs=1e-12)
    # the paired test sees what unpaired intervals hide: a constant seed effect cancels
    shifted = paired([10.0, 20.0, 30.0], [9.0, 19.1, 28.9])
    assert shifted.p_value < 0.01


def test_paired_edge_cases():
    assert math.isnan(paired([1.0], [0.5]).p_value)
    same = paired([1.0, 2.0], [0.5, 1.5])  # every difference 0.5: no spread, no t statistic
    assert math.isnan(same.p_value) and same.difference.mean == 0.5
    with pytest.raises(ValueError, match="as many values on each side"):
        paired([1.0, 2.0], [1.0])


def test_holm_by_hand():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to 0.06 by
    # the step-down's running maximum); NaN is no test and stays NaN; 0.5 x 3 caps at 1
    assert holm([0.01, 0.04, math.nan, 0.03, 0.005]) == pytest.approx([0.03, 0.06, math.nan, 0.06, 0.02], nan_ok=True)
    assert holm([0.5, 0.6, 0.4]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_effect_size_is_d_z_with_the_noncentral_t_interval():
    differences = [1.0, 2.0, 3.0, 4.0, 5.5]
    effect = effect_size(differences)
    d = np.mean(differences) / np.std(differences, ddof=1)
    assert effect.mean == pytest.approx(d) and effect.n == 5
    # at each bound the observed t sits at the 2.5% tail of the noncentral t
    t = d * math.sqrt(5)
    assert sps.nct.cdf(t, 4, effect.low * math.sqrt(5)) == pytest.approx(0.975, abs=1e-8)
    assert sps.nct.cdf(t, 4, effect.high * math.sqrt(5)) == pytest.approx(0.025, abs=1e-8)
    # the interval excludes 0 exactly when the paired t-test rejects at 5% (both invert the same t)
    for a, b in [([31.0, 29.5, 30.2], [30.1, 29.4, 29.0]), ([10.0, 20.0, 30.0], [9.0, 19.1, 28.9])]:
        result = paired(a, b)
        assert (result.effect.low > 0) == (result.p_value < 0.05)
    assert math.isnan(effect_size([0.5, 0.5]).mean) and math.isnan(paired([1.0], [0.5]).effect.mean)


def test_effect_size_is_symmetric_and_holds_far_in_the_tails():
    up, down = effect_size([1.0, 1.1, 0.9]), effect_size([-1.0, -1.1, -0.9])  # t = 17: scipy's nct gives NaN there
    assert (down.mean, down.low, down.high) == pytest.approx((-up.mean, -up.high, -up.low))
    assert 0 < up.low < up.mean < up.high and math.isfinite(up.high)


def test_interval_bands_stay_within_what_a_metric_can_be():
    from mfed.sweeps.plots import band
    from mfed.sweeps.stats import Interval

    cis = [mean_ci([97.0, 99.5, 99.9]), mean_ci([0.2, 0.05, 0.4]), Interval(50.0, math.nan, math.nan, 1)]
    low, high = band(cis, "odsF")
    assert high[0] == 100.0 and cis[0].high > 100  # a percentage's band ends at 100
    assert low[1] == 0.0 and cis[1].low < 0  # and never goes below 0
    assert (low[2], high[2]) == (50.0, 50.0)  # one seed: no band
    assert band(cis, "rmse")[1][0] == cis[0].high  # an error has no ceiling
