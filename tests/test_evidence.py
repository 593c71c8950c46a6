"""The verdict rule (version 2) on constructed inputs: a clear effect, an effect smaller than claimed, a
tight tie, a wide interval, the wrong direction, non-inferiority, premises, censored times, rates at and
away from the theorem's exponent, and a bound's value far above the measurement."""
import math

import numpy as np
import pytest
from scipy import stats

from lib import evidence as ev


def test_clear_effect_is_reproduced_with_a_paired_t_interval():
    base = np.array([0.70, 0.72, 0.74])
    e = ev.compare(base + [0.050, 0.052, 0.048], base)
    d = np.array([0.050, 0.052, 0.048])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)   # textbook paired t
    assert e.verdict == "reproduced" and e.interval == "paired t" and e.n == 3
    assert math.isclose(e.estimate, d.mean()) and math.isclose(e.low, d.mean() - half)


def test_wide_interval_spanning_zero_and_the_effect_is_inconclusive_with_seeds_needed():
    e = ev.compare([0.71, 0.69, 0.75], [0.70, 0.72, 0.71])   # differences +0.01, -0.03, +0.04
    assert e.low < 0 < ev.SESOI["accuracy"] < e.high and e.verdict == "inconclusive"
    d = np.array([0.01, -0.03, 0.04])
    # the seeds at which a t interval of this spread is narrower than the distance it must clear
    n = e.seeds_needed
    target = max(abs(d.mean()), abs(0.01 - d.mean()))
    assert stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n) < target
    assert stats.t.ppf(0.975, n - 2) * d.std(ddof=1) / math.sqrt(n - 1) >= target
    assert f"about {n} seeds" in e.reason


def test_a_tie_with_a_tight_interval_is_not_reproduced():
    base = np.array([0.70, 0.72, 0.74])
    e = ev.compare(base + [0.0003, -0.0002, 0.0004], base)        # +0.0002 [-0.0007, +0.001]: excludes 1 point
    assert e.high < ev.SESOI["accuracy"] and e.verdict == "not reproduced"


def test_wrong_direction_is_not_reproduced():
    assert ev.compare([0.60, 0.61, 0.62], [0.70, 0.71, 0.72]).verdict == "not reproduced"
    # lower is better: ours lower = as claimed
    assert ev.compare([0.60, 0.61, 0.62], [0.70, 0.71, 0.72], higher_is_better=False).verdict == "reproduced"


def test_an_effect_above_zero_but_below_the_sesoi_is_smaller_than_claimed():
    base = np.array([0.70, 0.72, 0.74])
    small = ev.compare(base + 0.02 + [0.001, -0.001, 0.0], base, magnitude=0.10)   # δ = 0.05
    assert small.low > 0 and small.high < 0.05 and small.verdict == "smaller than claimed"
    assert small.sesoi == pytest.approx(ev.FRACTION * 0.10)
    assert ev.compare(base + 0.06 + [0.001, -0.001, 0.0], base, magnitude=0.10).verdict == "reproduced"
    # without a magnitude, the unit's default: 1 point for a proportion
    assert ev.compare(base + 0.005 + [0.0005, -0.0005, 0], base).verdict == "smaller than claimed"


def test_relative_unit_scales_with_the_comparison():
    e = ev.compare([10.5, 10.6, 10.4], [10.0, 10.1, 9.9], unit="relative")   # +0.5 against δ = 1.0
    assert e.sesoi == pytest.approx(1.0) and e.verdict == "smaller than claimed"
    with pytest.raises(ValueError, match="unit must be one of"):
        ev.compare([1, 2, 3], [1, 2, 3], unit="furlongs")


def test_non_inferiority_passes_above_minus_the_margin_and_fails_below():
    base = np.array([0.80, 0.82, 0.84])
    keeps = ev.compare(base - 0.003 + [0.001, -0.001, 0.0], base, noninferiority=True)     # -0.003, margin 0.01
    assert keeps.verdict == "reproduced" and keeps.low > -0.01
    loses = ev.compare(base - 0.05 + [0.001, -0.001, 0.0], base, noninferiority=True)
    assert loses.verdict == "not reproduced" and loses.high < -0.01
    wide = ev.compare(base + [0.02, -0.04, 0.01], base, noninferiority=True)
    assert wide.low < -0.01 < wide.high and wide.verdict == "inconclusive"
    assert ev.compare(base - 0.03 + [0.001, -0.001, 0], base, noninferiority=True, margin=0.05).verdict == "reproduced"


def test_a_premise_that_fails_overrides_the_interval():
    base = np.array([0.70, 0.72, 0.74])
    chance = ev.compare([0.66, 0.67, 0.66], [2 / 3] * 3)                     # at chance: interval spans 0
    p = ev.premise("the model looks ahead (first step above chance)", chance)
    assert not p.met and "0.663" in p.value
    e = ev.compare(base + 0.05 + [0.001, -0.001, 0], base, premise=p)
    assert e.verdict == "premise not met" and "first step above chance" in e.reason
    assert e.low > 0        # the interval is still reported
    ok = ev.compare(base + 0.05 + [0.001, -0.001, 0], base, premise=ev.premise("x", True, "1.0"))
    assert ok.verdict == "reproduced" and ok.premise["premises"][0]["met"]


def test_stored_rows_re_derive_to_the_same_verdict():
    base = np.array([0.70, 0.72, 0.74])
    e = ev.compare(base + 0.02 + [0.001, -0.001, 0.0], base, magnitude=0.10)
    r = ev.rederive(e.asdict())
    assert (r.verdict, r.low, r.high) == (e.verdict, e.low, e.high)
    v1 = {"kind": "difference", "ours": e.ours, "base": e.base}      # a rule-1 row: no spec stored
    assert ev.rederive(v1, magnitude=0.10).verdict == "smaller than claimed"
    t = ev.compare_times([5.0, 6.0, 5.5], [10.0, 12.0, 11.0], horizon=20)
    assert ev.rederive(t.asdict()).verdict == t.verdict == "reproduced"


def test_stability_distance_is_in_standard_errors_of_the_nearest_boundary():
    base = np.array([0.70, 0.72, 0.74])
    e = ev.compare(base + 0.05 + [0.001, -0.001, 0.0], base)
    assert e.distance_se() == pytest.approx(min(e.low, e.high - 0.01) / e.se)


def test_fewer_than_three_seeds_give_no_verdict():
    e = ev.compare([0.8, 0.9], [0.1, 0.2])
    assert e.verdict == "not measurable here" and "3" in e.reason


def test_unpaired_uses_welch():
    e = ev.compare([0.8, 0.82, 0.81, 0.83], [0.7, 0.72, 0.71], paired=False)
    ref = stats.ttest_ind([0.8, 0.82, 0.81, 0.83], [0.7, 0.72, 0.71], equal_var=False)
    assert e.interval == "Welch t" and e.verdict == "reproduced" and ref.pvalue < 0.05


def test_times_are_log_ratios_and_censored_runs_count_at_the_horizon():
    e = ev.compare_times([5.0, 6.0, 5.5], [10.0, 12.0, 11.0], horizon=20)
    assert math.isclose(e.estimate, math.log(2)) and e.verdict == "reproduced"
    assert "50% time saved" in e.text
    c = ev.compare_times([5.0, 6.0, 5.5], [10.0, np.nan, 11.0], horizon=20)
    assert c.base[1] == 20 and "comparison 1" in c.text
    # the paper's 32% saving as magnitude: we save 50%, more than half of it
    assert ev.compare_times([5.0, 6.0, 5.5], [10.0, 12.0, 11.0], horizon=20, magnitude=0.32).verdict == "reproduced"


def _curves(exponent, n=8, noise=0.02, seed=0, log=False):
    t = np.geomspace(100, 10000, 9)
    rng = np.random.default_rng(seed)
    base = np.log(t) if log else t ** exponent
    return t, base[None, :] * np.exp(rng.normal(0, noise, (n, 1)) + rng.normal(0, noise / 4, (n, t.size)))


def test_rate_known_up_to_constants_is_tested_by_its_exponent():
    t, Y = _curves(5 / 6)
    assert ev.rate(t, Y, 5 / 6, bound=True).verdict == "inconclusive"        # the interval contains 5/6
    t, Y = _curves(0.6)
    assert ev.rate(t, Y, 5 / 6, bound=True).verdict == "reproduced"
    t, Y = _curves(0.95)
    e = ev.rate(t, Y, 5 / 6, bound=True)
    assert e.verdict == "not reproduced" and e.low > 5 / 6
    assert len(e.ours) == Y.shape[0] and np.array(e.curves["Y"]).shape == Y.shape   # the values behind it


def test_a_bound_far_above_the_measurement_passes_despite_a_slightly_steeper_slope():
    t, Y = _curves(0.87)                              # local slope above 5/6, values near t^0.87
    far = 50 * t ** (5 / 6)                           # the bound's value with its constants
    e = ev.rate(t, Y, 5 / 6, bound=True, bound_values=far)
    assert e.low > 5 / 6 and e.verdict == "reproduced" and "pre-asymptotic" in e.reason
    # crossing: (50 t^(5/6)) = t^0.87 at t = 50^(1/0.0367) (far beyond 10x the range)
    near = 1.5 * t ** (5 / 6)        # below the bound over the range, crossed at t ≈ 1.5^(1/0.037) < 10x the range
    e = ev.rate(t, Y, 5 / 6, bound=True, bound_values=near)
    assert max(np.mean(Y, 0) / near) < 1 and e.verdict == "not reproduced" and "cross the bound" in e.text
    above = 0.5 * t ** (5 / 6)                        # the measurement exceeds the bound: violated
    assert ev.rate(t, Y, 5 / 6, bound=True, bound_values=above).verdict == "not reproduced"


def test_log_growth_passes_and_a_small_power_law_does_not():
    t, Y = _curves(None, log=True)
    assert ev.rate(t, Y, 0.0, bound=False, increments_of_log=True).verdict == "reproduced"
    t, Y = _curves(0.2)
    e = ev.rate(t, Y, 0.0, bound=False, increments_of_log=True)
    assert e.verdict == "not reproduced" and abs(e.estimate - 0.2) < 0.02
    # while the plain log-log slope of that T^0.2 law is small, the increments expose it


def test_growth_claim_with_a_wide_interval_is_inconclusive():
    t = np.geomspace(100, 10000, 9)
    Y = t[None, :] ** np.array([[0.3], [0.7], [0.35], [0.65], [0.5]])   # instances disagree widely
    e = ev.rate(t, Y, 0.5, bound=False)
    assert e.low <= 0.5 <= e.high and e.verdict == "inconclusive"


def test_rate_interval_is_deterministic_and_needs_three_instances():
    t, Y = _curves(0.5)
    a, b = ev.rate(t, Y, 0.5, bound=False), ev.rate(t, Y, 0.5, bound=False)
    assert (a.low, a.high) == (b.low, b.high)
    assert ev.rate(t, Y[:2], 0.5, bound=False).verdict == "not measurable here"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one value per seed"):
        ev.compare([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        ev.compare([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="reason"):
        ev.not_measurable("")


def test_rows_without_a_verdict_have_no_boundaries():
    e = ev.compare([0.8, 0.9], [0.7, 0.8], noninferiority=True)       # two seeds: not measurable
    assert e.verdict == "not measurable here" and e.boundaries() == [] and e.distance_se() is None


def test_order_change_reproduced_when_a_pair_swaps_clearly():
    # A above B by 0.10 at setting 1, B above A by 0.10 at setting 2, small noise; C far below both
    rng = np.random.default_rng(0)
    e = rng.normal(0, 0.002, (4, 5))
    at1 = {"A": 0.80 + e[0], "B": 0.70 + e[1], "C": 0.30 + e[2]}
    at2 = {"A": 0.70 + e[3], "B": 0.80 + e[1], "C": 0.30 + e[2]}
    e_ = ev.order_change(at1, at2)
    assert e_.verdict == "reproduced" and e_.kind == "order"
    assert "A > B at setting 1, reversed at setting 2" in e_.text
    assert abs(e_.estimate - 0.10) < 0.01 and e_.low > 0


def test_order_change_not_reproduced_when_every_pair_keeps_its_order():
    rng = np.random.default_rng(1)
    e = rng.normal(0, 0.002, (6, 5))
    at1 = {"A": 0.80 + e[0], "B": 0.70 + e[1], "C": 0.60 + e[2]}
    at2 = {"A": 0.85 + e[3], "B": 0.75 + e[4], "C": 0.65 + e[5]}
    e_ = ev.order_change(at1, at2)
    assert e_.verdict == "not reproduced" and e_.high < e_.sesoi


def test_order_change_inconclusive_with_noise_and_a_tie_swapping_by_noise_does_not_count():
    rng = np.random.default_rng(2)
    at1 = {"A": 0.80 + rng.normal(0, 0.05, 3), "B": 0.80 + rng.normal(0, 0.05, 3)}
    at2 = {"A": 0.80 + rng.normal(0, 0.05, 3), "B": 0.80 + rng.normal(0, 0.05, 3)}
    e_ = ev.order_change(at1, at2)
    assert e_.verdict == "inconclusive" and e_.low <= 0 < e_.sesoi <= e_.high
    # the same means with the Bonferroni level: three pairs widen each interval beyond one pair's
    one = ev.order_change({"A": [0.8, 0.82, 0.79], "B": [0.7, 0.71, 0.69]},
                                {"A": [0.7, 0.69, 0.71], "B": [0.8, 0.81, 0.79]})
    three = ev.order_change({"A": [0.8, 0.82, 0.79], "B": [0.7, 0.71, 0.69], "C": [0.1, 0.1, 0.1]},
                                  {"A": [0.7, 0.69, 0.71], "B": [0.8, 0.81, 0.79], "C": [0.1, 0.1, 0.1]})
    assert three.low < one.low and abs(three.estimate - one.estimate) < 1e-12


def test_order_change_needs_the_same_arms_and_seeds():
    with pytest.raises(ValueError, match="same two or more arms"):
        ev.order_change({"A": [1, 2, 3], "B": [1, 2, 3]}, {"A": [1, 2, 3]})
    with pytest.raises(ValueError, match="pairs by seed"):
        ev.order_change({"A": [1, 2, 3], "B": [1, 2]}, {"A": [1, 2, 3], "B": [1, 2, 3]})
    assert ev.order_change({"A": [1, 2], "B": [1, 2]}, {"A": [1, 2], "B": [2, 1]}).verdict == "not measurable here"
