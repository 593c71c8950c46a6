"""Staleness functions s(tau) and FedRevive's mixing weight beta(tau), as plain functions."""
from __future__ import annotations

import math


def constant(tau: int) -> float:
    return 1.0


def polynomial(tau: int, a: float = 0.5) -> float:
    """FedAsync's polynomial: (tau + 1)^(-a)."""
    return (tau + 1) ** (-a)


def hinge(tau: int, a: float = 10.0, b: int = 4) -> float:
    """FedAsync's hinge: 1 if tau <= b else 1 / (a (tau - b) + 1)."""
    return 1.0 if tau <= b else 1.0 / (a * (tau - b) + 1.0)


def fedbuff(tau: int) -> float:
    """FedBuff's (1 + tau)^(-1/2)."""
    return (1 + tau) ** -0.5


# the authors' adaptive_beta_factor per schedule: the value their docstrings call "a good value" (cosine: s_max, 75
# in every sample config); research/fed-revive/codes/utils/dfkd_utils.py
BETA_FACTOR = {"cosine": 75.0, "linear": 0.005, "exponential": 0.005, "stepwise": 1.5}
BETA_SCHEDULES = ("cosine", "linear", "exponential", "stepwise", "constant")


def fedrevive_beta(tau: int, s_max: float = 75.0, kind: str = "cosine", factor: float | None = None,
                   concurrency: int | None = None, buffer_size: int = 1) -> float:
    """FedRevive's distillation weight beta(tau), as the authors' ``calculate_adaptive_beta`` defines it
    (NVFlare research/fed-revive/codes/utils/dfkd_utils.py), with ``factor`` their ``adaptive_beta_factor``:

    cosine       (``_cosine_decay``)      1 - (1/2)(1 + cos(pi tau / (2 s_max))) for tau <= 2 s_max, else 1;
                                          s_max = ``factor`` if given, else ``s_max``
    linear       (``_linear_decay``)      min(1, factor tau)                        factor default 0.005
    exponential  (``_exponential_decay``) 1 - exp(-factor tau)                      factor default 0.005
    stepwise     (``_stepwise_decay``)    b = factor K / B (K = ``concurrency``, B = ``buffer_size``);
                                          0 below b/4, 0.25 below b/2, 0.5 below 3b/4, 0.75 below b, else 1
                                          (factor default 1.5)
    constant     (a number as their ``beta``)  factor, for every tau (DD-FedRevive's config: 0.5)

    Each clipped to [0, 1]. Until issue 38 the last three were our own (tau / 2 s_max, 1 - exp(-tau / s_max),
    0 / 0.5 at s_max); nothing but the ablation rows used them, so they were replaced.
    """
    if tau < 0:
        raise ValueError(f"staleness must be >= 0, got {tau}")
    if kind not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {kind!r}; known: {', '.join(BETA_SCHEDULES)}")
    if kind == "constant":
        if factor is None or not 0 <= factor <= 1:
            raise ValueError(f"the constant beta schedule needs factor in [0, 1], got {factor}")
        return float(factor)
    if kind == "cosine":
        s = s_max if factor is None else factor
        if s <= 0:
            raise ValueError(f"s_max must be > 0, got {s}")
        if tau > 2 * s:
            return 1.0
        return min(1.0, max(0.0, 1.0 - 0.5 * (1.0 + math.cos(math.pi * tau / (2 * s)))))
    f = BETA_FACTOR[kind] if factor is None else factor
    if f < 0:
        raise ValueError(f"the beta factor must be >= 0, got {f}")
    if kind == "linear":
        return min(1.0, max(0.0, f * tau))
    if kind == "exponential":
        return min(1.0, max(0.0, 1.0 - math.exp(-f * tau)))
    if concurrency is None or concurrency < 1 or buffer_size < 1:     # stepwise
        raise ValueError("the stepwise beta schedule needs the concurrency K (and buffer size B >= 1)")
    b = f * concurrency / buffer_size
    for frac, beta in ((0.25, 0.0), (0.5, 0.25), (0.75, 0.5), (1.0, 0.75)):
        if tau < b * frac:
            return beta
    return 1.0


STALENESS = {"constant": constant, "polynomial": polynomial, "hinge": hinge, "fedbuff": fedbuff}


def get_staleness(name: str):
    if name not in STALENESS:
        raise ValueError(f"unknown staleness function {name!r}; known: {', '.join(STALENESS)}")
    return STALENESS[name]
