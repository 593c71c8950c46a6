"""Non-stationary tabular MDPs (average reward) and relative value iteration.

A :class:`NonStationaryMDP` is a sequence of stationary MDPs ("segments"), one per interval of
[0, T); every game/seed of a batch shares the segment boundaries and has its own MDPs. Two
families: ``piecewise`` (abrupt switches to a fresh random MDP) and ``drift`` (a smooth periodic
interpolation between two random MDPs, discretised into many small pieces). The variation budget

    Delta_T = sum_t ( max_{s,a} |r_{t+1}(s,a) - r_t(s,a)| + max_{s,a} ||P_{t+1}(.|s,a) - P_t(.|s,a)||_1 )

is computed exactly from the segments. J*_k (optimal average reward of segment k) comes from
relative value iteration; dynamic regret = sum_t (J*_{k(t)} - r_t(s_t, a_t)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def check_mdp(P, R):
    P, R = np.asarray(P, float), np.asarray(R, float)
    if P.ndim < 3 or P.shape[-1] != P.shape[-3] or R.shape != P.shape[:-1]:
        raise ValueError(f"expected P of shape (..., S, A, S) and R of shape (..., S, A); got P {P.shape}, R {R.shape}")
    if np.any(P < 0) or np.any(np.abs(P.sum(-1) - 1) > 1e-8):
        raise ValueError("P is not a stochastic kernel: each P[..., s, a, :] must be >= 0 and sum to 1")
    return P, R


def relative_value_iteration(P, R, tol: float = 1e-10, max_iter: int = 100_000):
    """Optimal average reward J* and bias h of a unichain MDP (batched over leading axes).

    Iterates v = (max_a [R + P h] + h) / 2, h <- v - v(s_0): value iteration on the aperiodic
    transform P' = (P + I)/2 with rewards R/2, which keeps the optimal policies and halves the
    gain, so J* = 2 (v - h) once the span of v - h is below tol (periodic chains converge too).
    Returns (J (...), h (..., S), greedy policy (..., S)).
    """
    P, R = check_mdp(P, R)
    S = P.shape[-1]
    h = np.zeros(P.shape[:-2])
    for _ in range(max_iter):
        Th = R + np.einsum("...sat,...t->...sa", P, h)       # one-step lookahead
        v = Th.max(-1)
        v = 0.5 * v + 0.5 * h                                # aperiodicity transform
        diff = v - h
        if np.all(diff.max(-1) - diff.min(-1) < tol):
            break
        h = v - v[..., :1]
    J = diff.max(-1) + diff.min(-1)                          # 2 x the midpoint of the halved gain
    Th = R + np.einsum("...sat,...t->...sa", P, h)
    return J, h, Th.argmax(-1)


def random_mdp(S: int, A: int, size=(), concentration: float = 1.0, rng=None):
    rng = np.random.default_rng(rng)
    P = rng.dirichlet(np.full(S, concentration), size=tuple(np.atleast_1d(size)) + (S, A) if size != () else (S, A))
    R = rng.uniform(0, 1, P.shape[:-1])
    return P, R


@dataclass
class NonStationaryMDP:
    P: np.ndarray          # (G, K, S, A, S)
    R: np.ndarray          # (G, K, S, A), rewards in [0, 1]
    starts: np.ndarray     # (K,) first step of each segment; starts[0] = 0
    T: int
    kind: str

    def __post_init__(self):
        check_mdp(self.P, self.R)
        if self.starts[0] != 0 or np.any(np.diff(self.starts) <= 0) or self.starts[-1] >= self.T:
            raise ValueError(f"segment starts must begin at 0, increase and stay below T={self.T}; got {self.starts}")
        self.J_star, _, _ = relative_value_iteration(self.P, self.R)      # (G, K)

    @property
    def dims(self):
        return self.P.shape[2], self.P.shape[3]

    def variation(self) -> np.ndarray:
        """Delta_T per game (G,)."""
        if self.P.shape[1] == 1:
            return np.zeros(self.P.shape[0])
        dR = np.abs(np.diff(self.R, axis=1)).max((-1, -2))
        dP = np.abs(np.diff(self.P, axis=1)).sum(-1).max((-1, -2))
        return (dR + dP).sum(1)

    def segment_index(self, t):
        return np.searchsorted(self.starts, t, side="right") - 1

    def change_points(self):
        return self.starts[1:]


def piecewise_mdp(S: int = 5, A: int = 3, T: int = 100_000, switches: int = 4, games: int = 1,
                  concentration: float = 1.0, seed: int = 0) -> NonStationaryMDP:
    """``switches`` abrupt changes at evenly spaced times, each to a fresh random Dirichlet MDP."""
    if S < 2 or A < 1 or T < 1 or switches < 0 or switches >= T or games < 1:
        raise ValueError(f"need S >= 2, A >= 1, 0 <= switches < T, games >= 1; got S={S}, A={A}, T={T}, "
                         f"switches={switches}, games={games}")
    rng = np.random.default_rng(seed)
    K = switches + 1
    P, R = random_mdp(S, A, (games, K), concentration, rng)
    starts = np.floor(np.arange(K) * T / K).astype(int)
    return NonStationaryMDP(P, R, starts, T, "piecewise")


def drifting_mdp(S: int = 5, A: int = 3, T: int = 100_000, cycles: float = 1.0, pieces: int = 200, games: int = 1,
                 concentration: float = 1.0, seed: int = 0) -> NonStationaryMDP:
    """Smooth periodic drift P_t = (1 - w_t) P0 + w_t P1, w_t = (1 - cos(2 pi cycles t / T)) / 2, in ``pieces`` steps."""
    if S < 2 or A < 1 or T < 1 or cycles < 0 or not 1 <= pieces <= T or games < 1:
        raise ValueError(f"need S >= 2, A >= 1, cycles >= 0, 1 <= pieces <= T, games >= 1; got S={S}, A={A}, T={T}, "
                         f"cycles={cycles}, pieces={pieces}, games={games}")
    rng = np.random.default_rng(seed)
    P0, R0 = random_mdp(S, A, games, concentration, rng)
    P1, R1 = random_mdp(S, A, games, concentration, rng)
    starts = np.floor(np.arange(pieces) * T / pieces).astype(int)
    w = (1 - np.cos(2 * np.pi * cycles * (starts + 0.5 * T / pieces) / T)) / 2
    P = (1 - w)[None, :, None, None, None] * P0[:, None] + w[None, :, None, None, None] * P1[:, None]
    R = (1 - w)[None, :, None, None] * R0[:, None] + w[None, :, None, None] * R1[:, None]
    return NonStationaryMDP(P, R, starts, T, "drift")
