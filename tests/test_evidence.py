"""The verdict rule on constructed inputs: a clear effect, one inside the noise, the wrong direction,
magnitudes, censored times, and rates at and away from the theorem's exponent."""
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


def test_effect_inside_the_noise_is_partly():
    e = ev.compare([0.71, 0.69, 0.75], [0.70, 0.72, 0.71])   # differences +0.01, -0.03, +0.04
    assert e.estimate > 0 and e.low < 0 and e.verdict == "partly"


def test_wrong_direction_is_not_reproduced():
    assert ev.compare([0.60, 0.61, 0.62], [0.70, 0.71, 0.72]).verdict == "not reproduced"
    # lower is better: ours lower = as claimed
    assert ev.compare([0.60, 0.61, 0.62], [0.70, 0.71, 0.72], higher_is_better=False).verdict == "reproduced"


def test_magnitude_below_the_stated_fraction_is_partly():
    base = np.array([0.70, 0.72, 0.74])
    small = ev.compare(base + 0.02 + [0.001, -0.001, 0.0], base, magnitude=0.10)
    assert small.low > 0 and small.verdict == "partly"
    assert ev.compare(base + 0.06 + [0.001, -0.001, 0.0], base, magnitude=0.10).verdict == "reproduced"


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


def test_rate_at_the_bound_is_partly_below_is_reproduced_above_is_not():
    t, Y = _curves(5 / 6)
    assert ev.rate(t, Y, 5 / 6, bound=True).verdict == "partly"        # the interval contains 5/6
    t, Y = _curves(0.6)
    assert ev.rate(t, Y, 5 / 6, bound=True).verdict == "reproduced"
    t, Y = _curves(0.95)
    e = ev.rate(t, Y, 5 / 6, bound=True)
    assert e.verdict == "not reproduced" and e.low > 5 / 6


def test_log_growth_passes_and_a_small_power_law_does_not():
    t, Y = _curves(None, log=True)
    assert ev.rate(t, Y, 0.0, bound=False, increments_of_log=True).verdict == "reproduced"
    t, Y = _curves(0.2)
    e = ev.rate(t, Y, 0.0, bound=False, increments_of_log=True)
    assert e.verdict == "not reproduced" and abs(e.estimate - 0.2) < 0.02
    # while the plain log-log slope of that T^0.2 law is small, the increments expose it


def test_growth_claim_with_a_wide_interval_is_only_partly():
    t = np.geomspace(100, 10000, 9)
    Y = t[None, :] ** np.array([[0.3], [0.7], [0.35], [0.65], [0.5]])   # instances disagree widely
    e = ev.rate(t, Y, 0.5, bound=False)
    assert e.low <= 0.5 <= e.high and e.verdict == "partly"


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
