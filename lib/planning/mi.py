"""Mutual information between discrete codes, from co-occurrence counts (in nats).

Plug-in entropy of counts :math:`n_1..n_m` (N in all): :math:`\\hat H = -\\sum_i \\frac{n_i}{N}\\log\\frac{n_i}{N}`.
It is biased low by about :math:`(m - 1) / 2N` for ``m`` occupied bins; the Miller-Madow estimate adds
that back. Mutual information and conditional mutual information are sums of entropies,

.. math:: I(X;Y) = H(X) + H(Y) - H(X,Y), \\qquad I(X;Y\\mid Z) = H(X,Z) + H(Y,Z) - H(X,Y,Z) - H(Z),

each entropy corrected. The **shuffled-pair baseline** recomputes I after permuting Y against X,
which destroys any dependence and keeps the marginals: what remains is estimator bias. The
*excess* MI (estimate minus baseline) is what the analyses compare; nMI divides a curve by its maximum.
For the conditional MI the baseline permutes Y within each value of Z (``excess_conditional_mi``).
"""
from __future__ import annotations

import numpy as np


def _codes(*xs) -> np.ndarray:
    """One integer label per row for the tuple of code arrays (their joint symbol)."""
    arrs = [np.asarray(x) for x in xs]
    n = {a.shape for a in arrs}
    if len(n) != 1 or arrs[0].ndim != 1:
        raise ValueError(f"codes must be 1-d arrays of one length, got shapes {[a.shape for a in arrs]}")
    if arrs[0].size == 0:
        raise ValueError("no samples")
    for a in arrs:
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {a.dtype}")
    return np.unique(np.stack(arrs, 1), axis=0, return_inverse=True)[1].ravel()


def entropy(*xs, correction: str | None = "miller_madow") -> float:
    """Entropy (nats) of the joint symbol of the code arrays ``xs``."""
    if correction not in (None, "miller_madow"):
        raise ValueError(f"correction must be None or 'miller_madow', got {correction!r}")
    counts = np.bincount(_codes(*xs))
    counts = counts[counts > 0]
    N = counts.sum()
    p = counts / N
    h = float(-(p * np.log(p)).sum())
    if correction == "miller_madow":
        h += (len(counts) - 1) / (2 * N)
    return h


def mutual_information(x, y, correction: str | None = "miller_madow") -> float:
    """I(X;Y) in nats from paired samples of two codes."""
    return entropy(x, correction=correction) + entropy(y, correction=correction) - entropy(x, y, correction=correction)


def conditional_mi(x, y, z, correction: str | None = "miller_madow") -> float:
    """I(X;Y | Z) in nats."""
    return (entropy(x, z, correction=correction) + entropy(y, z, correction=correction)
            - entropy(x, y, z, correction=correction) - entropy(z, correction=correction))


def shuffled_mi(x, y, seed: int = 0, reps: int = 5, correction: str | None = "miller_madow") -> float:
    """The shuffled-pair baseline: mean I(X; permuted Y) over ``reps`` seeded permutations."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    return float(np.mean([mutual_information(x, y[rng.permutation(len(y))], correction) for _ in range(reps)]))


def excess_mi(x, y, seed: int = 0, reps: int = 5) -> float:
    """Miller-Madow I(X;Y) minus its shuffled-pair baseline."""
    return mutual_information(x, y) - shuffled_mi(x, y, seed, reps)


def excess_conditional_mi(x, y, z, seed: int = 0, reps: int = 5) -> float:
    """Miller-Madow I(X;Y|Z) minus its baseline: the mean I(X; Y'|Z) with Y permuted *within* each
    value of Z, which keeps Y's link to Z (and both marginals) and breaks only what Y says about X
    beyond Z (a global permutation would also break Y-Z and inflate the baseline's cell count)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.asarray(x), np.asarray(y), np.asarray(z)
    strata = [np.flatnonzero(z == v) for v in np.unique(z)]

    def permuted():
        out = y.copy()
        for ix in strata:
            out[ix] = y[ix[rng.permutation(len(ix))]]
        return out
    base = np.mean([conditional_mi(x, permuted(), z) for _ in range(reps)])
    return conditional_mi(x, y, z) - float(base)


def normalized(values) -> np.ndarray:
    """nMI: a curve of MI values divided by its maximum (relative comparisons only)."""
    v = np.asarray(values, float)
    top = np.max(v)
    if not top > 0:
        raise ValueError(f"nMI needs a positive maximum, got {top}")
    return v / top
