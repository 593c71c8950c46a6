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


def fedrevive_beta(tau: int, s_max: float = 75.0, kind: str = "cosine") -> float:
    """FedRevive's distillation weight: 0 for fresh updates, rising to 1 at 2 s_max.

    cosine: 1 - (1/2)(1 + cos(pi tau / (2 s_max))) for tau <= 2 s_max, else 1.
    linear, exponential and stepwise variants are also provided.
    """
    if tau < 0:
        raise ValueError(f"staleness must be >= 0, got {tau}")
    if s_max <= 0:
        raise ValueError(f"s_max must be > 0, got {s_max}")
    if tau >= 2 * s_max:
        return 1.0
    if kind == "cosine":
        return 1.0 - 0.5 * (1.0 + math.cos(math.pi * tau / (2 * s_max)))
    if kind == "linear":
        return tau / (2 * s_max)
    if kind == "exponential":
        return 1.0 - math.exp(-tau / s_max)
    if kind == "stepwise":
        return 0.0 if tau < s_max else 0.5
    raise ValueError(f"unknown beta schedule {kind!r}; known: cosine, linear, exponential, stepwise")


STALENESS = {"constant": constant, "polynomial": polynomial, "hinge": hinge, "fedbuff": fedbuff}


def get_staleness(name: str):
    if name not in STALENESS:
        raise ValueError(f"unknown staleness function {name!r}; known: {', '.join(STALENESS)}")
    return STALENESS[name]
