"""The evidence standard: one verdict rule for every measured claim.

Every claims row with a measurement is built from an :class:`Evidence` made here, never from a
verdict typed by hand. Two kinds of claim exist:

* **comparisons** ("A beats B", "A is faster than B"): per-seed values of our arm and of the
  comparison, paired by seed when the runs share seeds (:func:`compare`, :func:`compare_times`);
* **rates** ("regret is O(T^a)", "grows like log T", "the coefficient scales like 1/beta"): a fitted
  exponent with a bootstrap interval over independent instances (:func:`rate`).

The rule, in words, is :data:`RULE`; REPORT.md prints it at the top. Nothing in a notebook may
choose another threshold.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

MIN_SEEDS = 3            # fewer runs than this give no verdict ("not measurable here", with the reason)
LEVEL = 0.95             # every interval is a 95% interval
FRACTION = 0.5           # where the paper states a magnitude, "reproduced" needs at least this share of it
EXPONENT_RESOLUTION = 0.1  # a rate is "reproduced" only if its interval is at most +-0.1 wide around the estimate
BOOTSTRAP = 4000         # resamples for rate intervals (seeded: the interval is deterministic)

RULE = f"""\
**The verdict rule** (`lib/evidence.py`, applied to every measured row; intervals are {LEVEL:.0%}).

*Comparisons* (our method vs. a comparison, per seed; at least {MIN_SEEDS} seeds). The effect is
measured in the direction the paper claims (accuracy gained, or the factor by which time to a target
shrinks, as the mean log ratio). The interval is a paired t interval over seeds when the runs share
seeds, otherwise Welch's t interval.
- **reproduced**: the interval lies entirely on the claimed side of zero and, where the paper states
  a magnitude, the estimate reaches at least {FRACTION:.0%} of it;
- **partly**: the estimate is on the claimed side but the interval includes zero, or the interval
  excludes zero but the estimate is below {FRACTION:.0%} of the paper's magnitude;
- **not reproduced**: the estimate is zero or on the other side.

*Rates* (a fitted exponent; interval by bootstrap over the independent instances: games, MDPs or
seeds, {BOOTSTRAP} resamples). A growth law `log T` is tested as exponent 0 of the regret's slope
`dR/d log T` against T (constant for `log T`, `∝ T^a` for `T^a`), so a `T^0.2` law does not pass.
- an upper bound `O(x^a)`: **reproduced** if the interval lies at or below `a`, **partly** if it
  contains `a`, **not reproduced** if it lies above `a`;
- a stated growth `Θ(x^a)`: **reproduced** if the interval contains `a` and is at most
  ±{EXPONENT_RESOLUTION} wide, **partly** if it contains `a` but is wider, **not reproduced** if it
  excludes `a`.

*Not measurable here*: fewer than {MIN_SEEDS} seeds or instances, or a setting we cannot run (the
reason is given). Time to a target is interpolated linearly between evaluations; a run that never
reaches the target is censored at the horizon (counted as reaching it there, which favours it) and
the row says how many were censored. A row marked *ours* tests a control experiment of this
workbook, not a claim the paper makes."""


@dataclass
class Evidence:
    """What a verdict rests on. ``estimate``/``low``/``high`` are in the claimed direction (> 0 = as claimed)
    for comparisons, and are the fitted exponent for rates."""

    kind: str                     # "difference", "time ratio" or "rate"
    verdict: str
    estimate: float
    low: float
    high: float
    n: int
    interval: str                 # "paired t", "Welch t", "bootstrap over instances"
    text: str                     # the row's "ours" column
    ours: list = field(default_factory=list)        # per-seed values (or per-instance exponents)
    base: list = field(default_factory=list)
    theory: float | None = None
    magnitude: float | None = None
    reason: str = ""

    def asdict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _t_quantile(df: int) -> float:
    from scipy import stats
    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


def _as_array(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values {a.tolist()}; censor times with compare_times, "
                         f"drop diverged runs explicitly")
    return a


def not_measurable(reason: str, text: str = "-") -> Evidence:
    """The row for a setting we cannot run; ``reason`` is required."""
    if not reason:
        raise ValueError("a 'not measurable here' verdict needs the reason")
    return Evidence("none", "not measurable here", math.nan, math.nan, math.nan, 0, "", text, reason=reason)


def _comparison_verdict(est, low, high, magnitude):
    if not est > 0:
        v = "not reproduced"
    elif low > 0 and (magnitude is None or est >= FRACTION * magnitude):
        v = "reproduced"
    else:
        v = "partly"
    return v


def compare(ours, base, *, higher_is_better: bool = True, paired: bool = True, magnitude: float | None = None,
            unit: str = "", fmt: str = "+.3f", reason_if_few: str = "") -> Evidence:
    """Our arm vs. a comparison, per seed: difference of means with a t interval.

    ``ours``/``base``: per-seed values (same seed order when ``paired``). ``magnitude``: the paper's
    effect in the same units and direction (positive), if it states one.
    """
    a, b = _as_array(ours, "ours"), _as_array(base, "base")
    if paired and a.size != b.size:
        raise ValueError(f"paired comparison needs one value per seed on both sides, got {a.size} and {b.size}")
    n = int(min(a.size, b.size))
    sign = 1.0 if higher_is_better else -1.0
    if n < MIN_SEEDS:
        return Evidence("difference", "not measurable here", math.nan, math.nan, math.nan, n, "",
                        f"{n} seed(s)", a.tolist(), b.tolist(),
                        reason=reason_if_few or f"only {n} seed(s); the rule needs {MIN_SEEDS}")
    if paired:
        d = sign * (a - b)
        est, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
        half, how = _t_quantile(n - 1) * se, "paired t"
    else:
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        est, se = float(sign * (a.mean() - b.mean())), float(math.sqrt(va + vb))
        dof = (va + vb) ** 2 / ((va ** 2 / (a.size - 1) if va else 0) + (vb ** 2 / (b.size - 1) if vb else 0) or 1e-300)
        half, how = _t_quantile(max(1, int(dof))) * se, "Welch t"
    low, high = est - half, est + half
    verdict = _comparison_verdict(est, low, high, magnitude)
    u = f" {unit}" if unit else ""
    text = (f"{est:{fmt}}{u} [{low:{fmt}}, {high:{fmt}}] ({how}, n={n}); "
            f"ours {a.mean():.3f} vs {b.mean():.3f}")
    return Evidence("difference", verdict, est, low, high, n, how, text, a.tolist(), b.tolist(),
                    magnitude=magnitude)


def compare_times(ours, base, horizon: float, *, paired: bool = True, magnitude: float | None = None,
                  reason_if_few: str = "") -> Evidence:
    """Time to a target, ours vs. a comparison: the factor by which ours is faster, as a mean log ratio.

    NaN = the run never reached the target: censored at ``horizon``. ``magnitude`` is the paper's
    speed-up as a fraction of time saved (0.32 = 32% less time), converted to a log ratio.
    """
    a, b = np.asarray(ours, float).ravel(), np.asarray(base, float).ravel()
    ca, cb = int(np.isnan(a).sum()), int(np.isnan(b).sum())
    a, b = np.where(np.isnan(a), horizon, a), np.where(np.isnan(b), horizon, b)
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("times to target must be positive; a time of 0 means the target was met before any "
                         "training (at round or time 0): choose a target above the starting accuracy")
    log_mag = -math.log(1 - magnitude) if magnitude is not None else None
    ev = compare(np.log(b), np.log(a), higher_is_better=True, paired=paired, magnitude=log_mag,
                 reason_if_few=reason_if_few)
    ev.kind, ev.ours, ev.base = "time ratio", a.tolist(), b.tolist()
    if ev.verdict != "not measurable here":
        saved = lambda r: 1 - math.exp(-r)  # noqa: E731  log ratio -> share of time saved
        ev.text = (f"{saved(ev.estimate):+.0%} time saved [{saved(ev.low):+.0%}, {saved(ev.high):+.0%}] "
                   f"({ev.interval} on log ratios, n={ev.n}); ours {np.mean(a):.2f} vs {np.mean(b):.2f}"
                   + (f"; censored at {horizon:g}: ours {ca}, comparison {cb}" if ca or cb else ""))
    return ev


def fit_exponent(x, y) -> float:
    """Least-squares slope of log y on log x (points with y <= 0 are dropped)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (y > 0) & (x > 0)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def increments(t, R):
    """(geometric midpoints of t, dR / d log t between consecutive t): constant for ``R = c log t``
    (exponent 0 against t), proportional to ``t^a`` for ``R ~ t^a``, whatever the spacing of t."""
    t, R = np.asarray(t, float), np.asarray(R, float)
    return np.sqrt(t[1:] * t[:-1]), np.diff(R, axis=-1) / np.diff(np.log(t))


def rate(x, Y, theory: float, *, bound: bool, of: str = "exponent", seed: int = 0,
         increments_of_log: bool = False) -> Evidence:
    """The exponent of ``Y ~ x^a`` with a bootstrap interval over instances, against the theorem's ``theory``.

    ``Y``: shape (instances, len(x)), one curve per independent instance; the exponent is fitted to the
    mean curve and the interval comes from resampling instances. ``bound=True`` for an upper bound
    O(x^a), False for a stated growth. ``increments_of_log=True`` fits the increments of Y instead
    (for a ``log T`` law, whose increments over log-spaced T are constant: exponent 0).
    """
    x = np.asarray(x, float)
    Y = np.atleast_2d(np.asarray(Y, float))
    if Y.shape[-1] != x.size:
        raise ValueError(f"Y has {Y.shape[-1]} columns for {x.size} x values")
    n = Y.shape[0]
    if increments_of_log:
        x, Y = increments(x, Y)
    if n < MIN_SEEDS:
        return Evidence("rate", "not measurable here", math.nan, math.nan, math.nan, n, "", f"{n} instance(s)",
                        theory=theory, reason=f"only {n} instance(s); the rule needs {MIN_SEEDS}")
    est = fit_exponent(x, Y.mean(0))
    rng = np.random.default_rng(seed)
    boot = np.array([fit_exponent(x, Y[rng.integers(0, n, n)].mean(0)) for _ in range(BOOTSTRAP)])
    boot = boot[np.isfinite(boot)]
    low, high = (float(q) for q in np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    contains = low - 1e-9 <= theory <= high + 1e-9
    if bound:
        verdict = "reproduced" if high <= theory + 1e-9 else ("partly" if contains else "not reproduced")
    else:
        narrow = max(high - est, est - low) <= EXPONENT_RESOLUTION
        verdict = ("reproduced" if narrow else "partly") if contains else "not reproduced"
    text = (f"{of} {est:.2f} [{low:.2f}, {high:.2f}] vs theory {theory:.3g} "
            f"({'bound' if bound else 'growth'}; bootstrap over {n} instances)")
    return Evidence("rate", verdict, est, low, high, n, "bootstrap over instances", text, theory=theory)
