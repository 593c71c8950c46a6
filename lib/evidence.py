"""The evidence standard: one verdict rule for every measured claim (version 2).

Every claims row with a measurement is built from an :class:`Evidence` made here, never from a
verdict typed by hand. Three kinds of claim exist:

* **comparisons** ("A beats B", "A is faster than B", "A keeps B's accuracy"): per-seed values of our
  arm and of the comparison, paired by seed when the runs share seeds (:func:`compare`,
  :func:`compare_times`); a superiority claim is tested against its *smallest effect of interest*
  (SESOI), a non-inferiority claim against its *margin*;
* **rates** ("regret is O(T^a)", "grows like log T"): a fitted exponent with a bootstrap interval over
  independent instances, and, for an upper bound whose constants are known, the measured quantity
  against the bound's value (:func:`rate`);
* **premises**: a precondition a claim rests on, measured in the notebook (:func:`premise`); a claim
  whose premise fails gets "premise not met", whatever its interval says.

The rule, in words, is :data:`RULE`; REPORT.md prints it at the top. Nothing in a notebook may
choose another threshold: a SESOI comes from the paper's magnitude times :data:`FRACTION`, or from
:data:`SESOI` by the claim's unit.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

VERSION = 2
MIN_SEEDS = 3            # fewer runs than this give no verdict ("not measurable here", with the reason)
LEVEL = 0.95             # every interval is a 95% interval
FRACTION = 0.5           # the SESOI is this share of the paper's magnitude, where the paper states one
# the SESOI (and the non-inferiority margin) where the paper states no magnitude, by the claim's unit
SESOI = {"accuracy": 0.01,   # a proportion on [0, 1] (accuracy, error, a share): one point
         "points": 1.0,      # the same on a 0-100 scale
         "time": 0.10,       # time to a target: 10% less time
         "relative": 0.10}   # any other quantity: 10% of the comparison's mean
EXPONENT_RESOLUTION = 0.1  # a stated growth is "reproduced" only if its interval is at most +-0.1 around the estimate
EXTRAPOLATE = 10.0       # a bound's crossing counts if the fitted curve meets the bound below this x range factor
BOOTSTRAP = 4000         # resamples for rate intervals (seeded: the interval is deterministic)
STABILITY_SE = 0.5       # on another processor a verdict may change only if an interval end was this close
                         # (in standard errors) to a boundary of the rule; on the recording machine never
MAX_SEEDS = 1000         # "seeds needed" is reported up to this many

VERDICTS = ("reproduced", "smaller than claimed", "inconclusive", "not reproduced", "premise not met",
            "not measurable here")

RULE = f"""\
**The verdict rule, version {VERSION}** (`lib/evidence.py`, applied to every measured row; intervals are {LEVEL:.0%}).

*Comparisons* (our method vs. a comparison, per seed; at least {MIN_SEEDS} seeds). The effect is
measured in the direction the paper claims (accuracy gained, or the factor by which time to a target
shrinks, as the mean log ratio). The interval is a paired t interval over seeds when the runs share
seeds, otherwise Welch's t interval. Before the run every claim states its **smallest effect of
interest** δ: {FRACTION:.0%} of the paper's magnitude where the paper states one ("up to X" counts as a
magnitude of X, everywhere), otherwise by the claim's unit: {SESOI['accuracy']:g} for a proportion
(one accuracy point), {SESOI['points']:g} on a 0-100 scale, {SESOI['time']:.0%} less time to a target,
{SESOI['relative']:.0%} of the comparison's mean for any other quantity.
- **reproduced**: the interval lies above zero and reaches δ (it is consistent with the effect of interest);
- **smaller than claimed**: the interval lies above zero but entirely below δ;
- **inconclusive**: the interval contains zero and reaches δ (too little evidence to tell; the row says
  about how many seeds would resolve it at the observed spread);
- **not reproduced**: the interval lies entirely below δ and does not exclude zero on the claimed side
  (a tie too tight to hold the effect, or the other direction).

*Non-inferiority* ("keeps", "matches", "no worse than"): the margin m is the paper's where stated,
otherwise δ of the claim's unit. **reproduced** if the interval's lower end is above −m, **not
reproduced** if the whole interval is below −m, **inconclusive** otherwise.

*Rates* (a fitted log-log exponent; interval by bootstrap over the independent instances: games, MDPs
or seeds, {BOOTSTRAP} resamples). A growth law `log T` is tested as exponent 0 of the regret's slope
`dR/d log T` against T, so a `T^0.2` law does not pass.
- an upper bound `O(x^a)` **whose value is known** (the theorem's constants, stated by the paper): the
  measured quantity is compared with the bound's value over the measured range.
  **not reproduced** if the mean measured curve exceeds the bound anywhere in the range, or if the
  fitted curve, extrapolated, would cross it below {EXTRAPOLATE:g}× the largest measured x; otherwise
  **reproduced**. The exponent is secondary evidence: at finite x a local slope above `a` is a
  pre-asymptotic effect as long as the quantity stays far below the bound;
- an upper bound known only up to constants (`O`, `Õ` without stated constants): **reproduced** if the
  exponent's interval lies at or below `a`, **not reproduced** if it lies above `a`, **inconclusive** if it
  contains `a`. Its value taken with constant 1 may be reported beside the row but never decides it: at
  finite x it can lie above the most the quantity can be (a regret above T), where even an arm with
  linear regret would pass;
- a stated growth `Θ(x^a)`: **reproduced** if the interval contains `a` and is at most
  ±{EXPONENT_RESOLUTION} wide, **inconclusive** if it contains `a` but is wider, **not reproduced** if it
  excludes `a`.

*Order changes* ("the ranking of A, B, C changes between setting 1 and setting 2"): for every pair of
arms, the paired difference at each setting, oriented so that > 0 means the pair swaps (the order of
their means at setting 1, reversed at setting 2); the pair's reversal is the smaller of the two, with
the interval [min of the lows, min of the highs] of two t intervals whose level {LEVEL:.0%} is
Bonferroni-divided over the pairs. The superiority rule above applies to the pair whose reversal
interval lies highest, with δ of the claim's unit: **reproduced** if some pair swaps by an interval above
zero that reaches δ; **not reproduced** if for every pair the interval lies below δ (no swap as large as
δ); **inconclusive** otherwise.

*Premise not met*: a precondition the claim rests on, measured in the notebook, fails (the row says
which and its value; a premise measured as a comparison holds when its interval lies above zero).
*Not measurable here*: fewer than {MIN_SEEDS} seeds or instances, or a setting we cannot run (the
reason is given).

*Stability*: `make test` compares every verdict with the recorded one. On the recording machine a
changed verdict fails; on another processor a verdict may change only where the recorded interval
end lay within {STABILITY_SE:g} standard errors of a boundary of this rule (0, δ, −m, `a`).

Time to a target is interpolated linearly between evaluations; a run that never reaches the target
is censored at the horizon (counted as reaching it there, which favours it) and the row says how many
were censored. A row marked *ours* tests a control experiment of this workbook, not a claim the paper
makes."""


@dataclass
class Premise:
    """A precondition of a claim, measured in the notebook."""

    text: str
    met: bool
    value: str


@dataclass
class Evidence:
    """What a verdict rests on. ``estimate``/``low``/``high`` are in the claimed direction (> 0 = as claimed)
    for comparisons, and are the fitted exponent for rates. ``ours``/``base`` are the values the interval
    comes from (per seed; for a rate, the per-instance exponents in ``ours`` and the curves in ``curves``)."""

    kind: str                     # "difference", "time ratio", "rate" or "none"
    verdict: str
    estimate: float
    low: float
    high: float
    n: int
    interval: str                 # "paired t", "Welch t", "bootstrap over instances"
    text: str                     # the row's "ours" column
    ours: list = field(default_factory=list)
    base: list = field(default_factory=list)
    theory: float | None = None
    magnitude: float | None = None
    reason: str = ""
    test: str = ""                # "superiority", "non-inferiority", "bound", "bound value", "growth"
    sesoi: float | None = None    # δ (superiority) or the margin m (non-inferiority), in the estimate's units
    unit: str = ""
    se: float | None = None       # standard error behind the interval (for the stability margin)
    seeds_needed: int | None = None
    premise: dict | None = None
    curves: dict | None = None    # rates: {"x": [...], "Y": [[...], ...], "bound": [...] or None}
    spec: dict = field(default_factory=dict)   # how to re-derive the verdict from the stored values
    rule: int = VERSION

    def asdict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    def boundaries(self) -> list[tuple[float, float]]:
        """(interval end, boundary) pairs the verdict turns on: their distance decides stability."""
        if self.verdict == "not measurable here":
            return []
        if self.test == "superiority" and self.sesoi is not None:
            return [(self.low, 0.0), (self.high, self.sesoi)]
        if self.test == "non-inferiority" and self.sesoi is not None:
            return [(self.low, -self.sesoi), (self.high, -self.sesoi)]
        if self.test in ("bound", "growth"):
            return [(self.low, self.theory), (self.high, self.theory)]
        return []

    def distance_se(self) -> float | None:
        """How close (in standard errors) the nearest interval end lay to a boundary of the rule."""
        pairs = [(e, b) for e, b in self.boundaries() if b is not None and math.isfinite(e)]
        if not pairs or not self.se:
            return None
        return float(min(abs(e - b) for e, b in pairs) / self.se)


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


def premise(text: str, holds, value: str = "") -> Premise:
    """A precondition of a claim. ``holds``: a bool measured in the notebook, or an :class:`Evidence` of a
    comparison (the premise holds when its interval lies above zero, the rule's own test)."""
    if isinstance(holds, Evidence):
        met = holds.kind in ("difference", "time ratio") and math.isfinite(holds.low) and holds.low > 0
        return Premise(text, bool(met), value or holds.text)
    return Premise(text, bool(holds), value)


def _apply_premises(ev: Evidence, premises) -> Evidence:
    if premises is None:
        return ev
    premises = [premises] if isinstance(premises, Premise) else list(premises)
    for p in premises:
        if not isinstance(p, Premise):
            raise TypeError(f"premise must come from evidence.premise(...), got {type(p).__name__}")
    failed = [p for p in premises if not p.met]
    ev.premise = {"premises": [asdict(p) for p in premises]}
    if failed and ev.verdict != "not measurable here":
        ev.verdict = "premise not met"
        ev.reason = "; ".join(filter(None, [ev.reason] + [f"premise not met: {p.text} ({p.value})" for p in failed]))
    return ev


def sesoi_for(unit: str, magnitude: float | None, base_mean: float | None = None) -> float:
    """δ: FRACTION of the paper's magnitude, else the unit's default (``relative``: of the comparison's mean)."""
    if unit not in SESOI:
        raise ValueError(f"unit must be one of {sorted(SESOI)}, got {unit!r}")
    if magnitude is not None:
        if not magnitude > 0:
            raise ValueError(f"magnitude is the paper's effect in the claimed direction (> 0), got {magnitude}")
        return FRACTION * float(magnitude)
    if unit == "relative":
        if base_mean is None or not math.isfinite(base_mean) or base_mean == 0:
            raise ValueError("unit='relative' needs a comparison with a non-zero mean; state a magnitude instead")
        return SESOI["relative"] * abs(float(base_mean))
    if unit == "time":
        return -math.log(1 - SESOI["time"])
    return SESOI[unit]


def verdict_superiority(low: float, high: float, delta: float) -> str:
    if low > 0:
        return "reproduced" if high >= delta else "smaller than claimed"
    return "not reproduced" if high < delta else "inconclusive"


def verdict_noninferiority(low: float, high: float, margin: float) -> str:
    if low > -margin:
        return "reproduced"
    return "not reproduced" if high < -margin else "inconclusive"


def seeds_to_resolve(est: float, sd: float, target: float) -> int | None:
    """Seeds at which a t interval of this spread would have half-width below ``target`` (None: > MAX_SEEDS)."""
    if not (sd > 0) or not (target > 0):
        return None
    for n in range(MIN_SEEDS, MAX_SEEDS + 1):
        if _t_quantile(n - 1) * sd / math.sqrt(n) < target:
            return n
    return None


def compare(ours, base, *, higher_is_better: bool = True, paired: bool = True, magnitude: float | None = None,
            unit: str = "accuracy", noninferiority: bool = False, margin: float | None = None,
            premise=None, fmt: str = "+.3f", reason_if_few: str = "") -> Evidence:
    """Our arm vs. a comparison, per seed: difference of means with a t interval.

    ``ours``/``base``: per-seed values (same seed order when ``paired``). ``magnitude``: the paper's
    effect in the same units and direction (positive), if it states one ("up to X" counts as X).
    ``unit``: which default SESOI applies when it does not (see :data:`SESOI`). ``noninferiority``:
    the claim is "ours is no worse than the comparison by more than ``margin``" (default: the unit's δ).
    ``premise``: one or more :class:`Premise`; a failed one makes the verdict "premise not met".
    """
    a, b = _as_array(ours, "ours"), _as_array(base, "base")
    if paired and a.size != b.size:
        raise ValueError(f"paired comparison needs one value per seed on both sides, got {a.size} and {b.size}")
    n = int(min(a.size, b.size))
    sign = 1.0 if higher_is_better else -1.0
    test = "non-inferiority" if noninferiority else "superiority"
    spec = dict(higher_is_better=higher_is_better, paired=paired, magnitude=magnitude, unit=unit,
                noninferiority=noninferiority, margin=margin, fmt=fmt)
    if n < MIN_SEEDS:
        ev = Evidence("difference", "not measurable here", math.nan, math.nan, math.nan, n, "",
                      f"{n} seed(s)", a.tolist(), b.tolist(), magnitude=magnitude, test=test, unit=unit, spec=spec,
                      reason=reason_if_few or f"only {n} seed(s); the rule needs {MIN_SEEDS}")
        return _apply_premises(ev, premise)
    if paired:
        d = sign * (a - b)
        est, sd = float(d.mean()), float(d.std(ddof=1))
        se = sd / math.sqrt(n)
        half, how = _t_quantile(n - 1) * se, "paired t"
    else:
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        est, se = float(sign * (a.mean() - b.mean())), float(math.sqrt(va + vb))
        sd = se * math.sqrt(n)          # per-seed spread of a difference at n seeds per arm
        dof = (va + vb) ** 2 / ((va ** 2 / (a.size - 1) if va else 0) + (vb ** 2 / (b.size - 1) if vb else 0) or 1e-300)
        half, how = _t_quantile(max(1, int(dof))) * se, "Welch t"
    low, high = est - half, est + half
    base_mean = float(b.mean())
    if noninferiority:
        m = float(margin) if margin is not None else sesoi_for(unit, None, base_mean)
        verdict = verdict_noninferiority(low, high, m)
        target = abs(est + m)
        delta = m
    else:
        delta = sesoi_for(unit, magnitude, base_mean)
        verdict = verdict_superiority(low, high, delta)
        target = max(abs(est), abs(delta - est))
    need = seeds_to_resolve(est, sd, target) if verdict == "inconclusive" else None
    ftxt = lambda x: f"{x:{fmt}}"  # noqa: E731
    which = f"margin {ftxt(-delta)}" if noninferiority else f"δ {ftxt(delta)}"
    text = (f"{ftxt(est)} [{ftxt(low)}, {ftxt(high)}] ({how}, n={n}; {which}); ours {a.mean():.3f} vs {b.mean():.3f}")
    reason = ""
    if verdict == "inconclusive":
        reason = (f"about {need} seeds would resolve it at the observed spread" if need
                  else f"more than {MAX_SEEDS} seeds would be needed at the observed spread")
    ev = Evidence("difference", verdict, est, low, high, n, how, text, a.tolist(), b.tolist(),
                  magnitude=magnitude, reason=reason, test=test, sesoi=float(delta), unit=unit, se=se,
                  seeds_needed=need, spec=spec)
    return _apply_premises(ev, premise)


def compare_times(ours, base, horizon: float, *, paired: bool = True, magnitude: float | None = None,
                  noninferiority: bool = False, premise=None, reason_if_few: str = "") -> Evidence:
    """Time to a target, ours vs. a comparison: the factor by which ours is faster, as a mean log ratio.

    NaN = the run never reached the target: censored at ``horizon``. ``magnitude`` is the paper's
    speed-up as a fraction of time saved (0.32 = 32% less time; "up to 2.5x" = 1 - 1/2.5), converted to
    a log ratio; without it δ is :data:`SESOI` ``["time"]``.
    """
    a, b = np.asarray(ours, float).ravel(), np.asarray(base, float).ravel()
    ca, cb = int(np.isnan(a).sum()), int(np.isnan(b).sum())
    a, b = np.where(np.isnan(a), horizon, a), np.where(np.isnan(b), horizon, b)
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("times to target must be positive; a time of 0 means the target was met before any "
                         "training (at round or time 0): choose a target above the starting accuracy")
    if magnitude is not None and not 0 < magnitude < 1:
        raise ValueError(f"magnitude is a fraction of time saved in (0, 1), got {magnitude}")
    log_mag = -math.log(1 - magnitude) if magnitude is not None else None
    ev = compare(np.log(b), np.log(a), higher_is_better=True, paired=paired, magnitude=log_mag, unit="time",
                 noninferiority=noninferiority, premise=premise, reason_if_few=reason_if_few)
    ev.kind, ev.ours, ev.base, ev.magnitude = "time ratio", a.tolist(), b.tolist(), magnitude
    ev.spec = dict(paired=paired, magnitude=magnitude, noninferiority=noninferiority, horizon=horizon,
                   censored=[ca, cb])
    if ev.n >= MIN_SEEDS:
        saved = lambda r: 1 - math.exp(-r)  # noqa: E731  log ratio -> share of time saved
        which = f"margin {saved(-ev.sesoi):+.0%}" if noninferiority else f"δ {saved(ev.sesoi):.0%}"
        ev.text = (f"{saved(ev.estimate):+.0%} time saved [{saved(ev.low):+.0%}, {saved(ev.high):+.0%}] "
                   f"({ev.interval} on log ratios, n={ev.n}; {which}); ours {np.mean(a):.2f} vs {np.mean(b):.2f}"
                   + (f"; censored at {horizon:g}: ours {ca}, comparison {cb}" if ca or cb else ""))
    return ev


def order_change(at_1: dict, at_2: dict, *, unit: str = "accuracy", magnitude: float | None = None,
                 settings: tuple[str, str] = ("setting 1", "setting 2"), premise=None, fmt: str = "+.3f") -> Evidence:
    """Does the ranking of arms change between two settings? ``at_1``/``at_2``: {arm: per-seed values},
    the same arms and seeds at both settings (paired by seed); ``settings`` names them in the text. See "Order changes" in :data:`RULE`: every
    pair's reversal (oriented by its order at setting 1) gets an interval, Bonferroni-divided over the
    pairs; the superiority rule with δ of ``unit`` decides on the pair whose interval lies highest."""
    import itertools
    from scipy import stats
    arms = list(at_1)
    if sorted(arms) != sorted(at_2) or len(arms) < 2:
        raise ValueError(f"order_change needs the same two or more arms at both settings, got {sorted(at_1)} "
                         f"and {sorted(at_2)}")
    a1 = {k: _as_array(v, f"{k} at setting 1") for k, v in at_1.items()}
    a2 = {k: _as_array(v, f"{k} at setting 2") for k, v in at_2.items()}
    sizes = {v.size for v in [*a1.values(), *a2.values()]}
    if len(sizes) != 1:
        raise ValueError(f"order_change pairs by seed: every arm needs the same number of values, got {sorted(sizes)}")
    n = sizes.pop()
    pairs = list(itertools.combinations(arms, 2))
    spec = dict(unit=unit, magnitude=magnitude, fmt=fmt, arms=arms, settings=list(settings))
    values = {settings[0]: {k: v.tolist() for k, v in a1.items()}, settings[1]: {k: v.tolist() for k, v in a2.items()}}
    if n < MIN_SEEDS:
        ev = Evidence("order", "not measurable here", math.nan, math.nan, math.nan, n, "", f"{n} seed(s)",
                      test="superiority", unit=unit, spec=spec, curves=values,
                      reason=f"only {n} seed(s); the rule needs {MIN_SEEDS}")
        return _apply_premises(ev, premise)
    level = 1 - (1 - LEVEL) / len(pairs)
    q = float(stats.t.ppf(0.5 + level / 2, n - 1))
    delta = sesoi_for(unit, magnitude, float(np.mean([v.mean() for v in a1.values()])))
    rows = []
    for i, j in pairs:
        d1, d2 = a1[i] - a1[j], a2[i] - a2[j]
        sign = 1.0 if d1.mean() >= 0 else -1.0            # the order at setting 1
        parts = []
        for d in (sign * d1, -sign * d2):                  # > 0: ordered at 1, reversed at 2
            se = float(d.std(ddof=1) / math.sqrt(n))
            parts.append((float(d.mean()), float(d.mean()) - q * se, float(d.mean()) + q * se, se,
                          float(d.std(ddof=1))))
        k = int(np.argmin([p[1] for p in parts]))          # the limiting side
        est, low, high = min(p[0] for p in parts), min(p[1] for p in parts), min(p[2] for p in parts)
        first, second = (i, j) if sign > 0 else (j, i)
        rows.append(dict(pair=f"{first} > {second} at {settings[0]}, reversed at {settings[1]}", est=est, low=low, high=high,
                         se=parts[k][3], sd=parts[k][4]))
    best = max(rows, key=lambda r: r["low"])
    if best["low"] > 0:                                    # some pair swaps: the superiority rule on it
        verdict = verdict_superiority(best["low"], best["high"], delta)
    else:                                                  # no pair shown to swap: evidence against only if
        verdict = ("not reproduced" if all(r["high"] < delta for r in rows)   # no pair can swap by δ
                   else "inconclusive")
    need, reason = None, ""
    if verdict == "inconclusive":
        need = seeds_to_resolve(best["est"], best["sd"], max(abs(best["est"]), abs(delta - best["est"])))
        open_pairs = [r["pair"].split(f" at {settings[0]},")[0] for r in rows if r["high"] >= delta]
        reason = (f"pairs not yet resolved: {'; '.join(open_pairs)}"
                  + (f"; about {need} seeds would resolve the closest at the observed spread" if need else ""))
    ftxt = lambda x: f"{x:{fmt}}"  # noqa: E731
    text = (f"{ftxt(best['est'])} [{ftxt(best['low'])}, {ftxt(best['high'])}] ({best['pair']}; "
            f"paired t, {level:.1%} per pair over {len(pairs)} pairs, n={n}; δ {ftxt(delta)})")
    values["pairs"] = rows
    ev = Evidence("order", verdict, best["est"], best["low"], best["high"], n, "paired t, Bonferroni over pairs",
                  text, magnitude=magnitude, reason=reason, test="superiority", sesoi=float(delta), unit=unit,
                  se=best["se"], seeds_needed=need, curves=values, spec=spec)
    return _apply_premises(ev, premise)


def rederive(stored: dict, **spec) -> Evidence:
    """The verdict of a stored comparison row under this rule, from its stored per-seed values.

    ``spec`` overrides the stored ``spec`` (for rows recorded under version 1, which stored none):
    the keyword arguments of :func:`compare` (or of :func:`compare_times`, with ``horizon``)."""
    if stored.get("kind") not in ("difference", "time ratio"):
        raise ValueError(f"only comparisons can be re-derived from stored values, not {stored.get('kind')!r}")
    s = {**(stored.get("spec") or {}), **spec}
    if stored["kind"] == "time ratio":
        return compare_times(stored["ours"], stored["base"], s.get("horizon", math.inf), paired=s.get("paired", True),
                             magnitude=s.get("magnitude"), noninferiority=s.get("noninferiority", False))
    keys = ("higher_is_better", "paired", "magnitude", "unit", "noninferiority", "margin", "fmt")
    return compare(stored["ours"], stored["base"], **{k: s[k] for k in keys if k in s})


def fit_exponent(x, y) -> float:
    """Least-squares slope of log y on log x (points with y <= 0 are dropped)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (y > 0) & (x > 0)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def _fit_line(x, y) -> tuple[float, float]:
    """(slope, intercept) of log y on log x."""
    keep = (y > 0) & (x > 0)
    s, c = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(s), float(c)


def increments(t, R):
    """(geometric midpoints of t, dR / d log t between consecutive t): constant for ``R = c log t``
    (exponent 0 against t), proportional to ``t^a`` for ``R ~ t^a``, whatever the spacing of t."""
    t, R = np.asarray(t, float), np.asarray(R, float)
    return np.sqrt(t[1:] * t[:-1]), np.diff(R, axis=-1) / np.diff(np.log(t))


def rate(x, Y, theory: float, *, bound: bool, bound_values=None, of: str = "exponent", seed: int = 0,
         increments_of_log: bool = False, premise=None) -> Evidence:
    """The exponent of ``Y ~ x^a`` with a bootstrap interval over instances, against the theorem's ``theory``.

    ``Y``: shape (instances, len(x)), one curve per independent instance; the exponent is fitted to the
    mean curve and the interval comes from resampling instances. ``bound=True`` for an upper bound
    O(x^a), False for a stated growth. ``bound_values``: the bound's value at each x where its constants
    are known (then the row compares the measured quantity with it; see :data:`RULE`).
    ``increments_of_log=True`` fits the increments of Y instead (for a ``log T`` law, whose increments over
    log-spaced T are constant: exponent 0).
    """
    x0 = np.asarray(x, float)
    Y0 = np.atleast_2d(np.asarray(Y, float))
    if Y0.shape[-1] != x0.size:
        raise ValueError(f"Y has {Y0.shape[-1]} columns for {x0.size} x values")
    if bound_values is not None:
        if not bound:
            raise ValueError("bound_values only apply to an upper bound (bound=True)")
        bound_values = np.asarray(bound_values, float).ravel()
        if bound_values.size != x0.size or not np.all(bound_values > 0):
            raise ValueError(f"bound_values needs one positive value per x ({x0.size}), got {bound_values.tolist()}")
    n = Y0.shape[0]
    x, Yf = increments(x0, Y0) if increments_of_log else (x0, Y0)
    curves = {"x": x0.tolist(), "Y": Y0.tolist(),
              "bound": None if bound_values is None else bound_values.tolist(), "increments_of_log": increments_of_log}
    test = ("bound value" if bound_values is not None else "bound") if bound else "growth"
    spec = dict(theory=theory, bound=bound, increments_of_log=increments_of_log, seed=seed, of=of)
    if n < MIN_SEEDS:
        ev = Evidence("rate", "not measurable here", math.nan, math.nan, math.nan, n, "", f"{n} instance(s)",
                      theory=theory, test=test, curves=curves, spec=spec,
                      reason=f"only {n} instance(s); the rule needs {MIN_SEEDS}")
        return _apply_premises(ev, premise)
    est = fit_exponent(x, Yf.mean(0))
    per_instance = [v for v in (fit_exponent(x, y) for y in Yf) if math.isfinite(v)]
    rng = np.random.default_rng(seed)
    boot = np.array([fit_exponent(x, Yf[rng.integers(0, n, n)].mean(0)) for _ in range(BOOTSTRAP)])
    boot = boot[np.isfinite(boot)]
    low, high = (float(q) for q in np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    se = float(boot.std(ddof=1)) if boot.size > 1 else None
    eps = 1e-9
    contains = low - eps <= theory <= high + eps
    reason, extra = "", ""
    if bound and bound_values is not None:
        mean = Y0.mean(0)
        ratio = mean / bound_values
        worst = int(np.argmax(ratio))
        extra = f"; measured/bound at most {ratio[worst]:.3g} (x = {x0[worst]:g})"
        if np.any(ratio > 1):
            verdict = "not reproduced"
        elif est > theory + eps:
            s_m, c_m = _fit_line(x0, mean)
            s_b, c_b = _fit_line(x0, bound_values)
            cross = math.exp((c_b - c_m) / (s_m - s_b)) if s_m > s_b else math.inf
            within = cross <= EXTRAPOLATE * x0.max()
            verdict = "not reproduced" if within else "reproduced"
            extra += (f"; the fitted curve would cross the bound at x ≈ {cross:.3g}"
                      if math.isfinite(cross) else "")
            if not within:
                reason = (f"slope above {theory:.3g} at finite x while the quantity stays below the bound "
                          f"(pre-asymptotic; crossing beyond {EXTRAPOLATE:g}x the measured range)")
        else:
            verdict = "reproduced"
    elif bound:
        verdict = "reproduced" if high <= theory + eps else ("inconclusive" if contains else "not reproduced")
        if verdict != "reproduced":
            reason = "bound known up to constants: only the local exponent at finite x is tested"
    else:
        narrow = max(high - est, est - low) <= EXPONENT_RESOLUTION
        verdict = ("reproduced" if narrow else "inconclusive") if contains else "not reproduced"
        if verdict == "inconclusive":
            reason = f"interval wider than ±{EXPONENT_RESOLUTION}: more instances would resolve it"
    text = (f"{of} {est:.2f} [{low:.2f}, {high:.2f}] vs theory {theory:.3g} "
            f"({'bound' if bound else 'growth'}; bootstrap over {n} instances){extra}")
    ev = Evidence("rate", verdict, est, low, high, n, "bootstrap over instances", text, per_instance, [],
                  theory=theory, reason=reason, test=test, se=se, curves=curves, spec=spec)
    return _apply_premises(ev, premise)
