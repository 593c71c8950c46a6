"""SOMG: KL-regularized two-player zero-sum Markov games (finite horizon, tabular) with bandit feedback.

Our reconstruction of arXiv 2510.13060's Markov-game algorithm (see docs/papers/omg.md).
Values carry the KL terms of every step:

    V_h(s) = mu_h(s)^T Q_h(s) nu_h(s) - beta KL(mu_h(s) || ref) + beta KL(nu_h(s) || ref),
    Q_h(s, a, b) = r_h(s, a, b) + sum_s' P_h(s' | s, a, b) V_{h+1}(s'),      V_{H+1} = 0,

so the regularized NE is backward induction over regularized stage games, and the best response
to a fixed opponent is backward induction with closed-form Gibbs stage responses.

SOMG per episode pair (LSVI-style; counts give r_hat, P_hat; b = c H / sqrt(max(N, 1))):
    upper model  Q+_h = r_hat + kappa b + P_hat V+_{h+1};   mu_h(s) = max player's NE strategy of Q+_h(s)
    lower model  Q-_h = r_hat - kappa b + P_hat V-_{h+1};   nu_h(s) = min player's NE strategy of Q-_h(s)
    best-response sampling: mu~ = BR to nu in the upper model, nu~ = BR to mu in the lower model;
    play one episode with (mu~, nu) and one with (mu, nu~).
"Superoptimistic": the bonus is inflated (kappa > 1) and Q+/Q- are not truncated to the range of
unregularized values, since KL terms take regularized values outside [0, H].
Arms as in :mod:`lib.games.omg`: ``somg``, ``optimism`` (no best-response sampling, kappa = 1,
Q truncated to [0, H - h]), ``eps_greedy``. Regret = sum over episode pairs of the duality gap at s0 of the
policies played (the mean over the pair's two episodes), charged alike to every arm; ``regret_output``
charges the policies output (mu, nu) instead, as in :mod:`lib.games.omg`.
SOMG and optimism differ in three things; ``kappa``, ``clip`` and ``br_sampling`` set each on its own
(``arm="somg", kappa=1, clip=True, br_sampling=False`` is exactly the optimism arm), so an ablation
can change one at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import matrix as mg
from .omg import update_schedule, _sample
from ..utils import progress

ARMS = ("somg", "optimism", "eps_greedy")


@dataclass
class TabularMarkovGame:
    r: np.ndarray          # (G, H, S, m, n) mean rewards of the max player, in [0, 1]
    P: np.ndarray          # (G, H, S, m, n, S) transition probabilities
    noise: float
    s0: int = 0

    @property
    def dims(self):
        return self.r.shape[1:]


def check_markov_game(r, P):
    r, P = np.asarray(r, float), np.asarray(P, float)
    if r.ndim < 4 or P.shape != r.shape + (r.shape[-3],):
        raise ValueError(f"r must have shape (..., H, S, m, n) and P shape r.shape + (S,); got r {r.shape}, P {P.shape}")
    if np.any(P < 0) or np.any(np.abs(P.sum(-1) - 1) > 1e-8):
        raise ValueError("P is not a stochastic kernel: every P[..., h, s, a, b, :] must be >= 0 and sum to 1")
    return r, P


def random_markov_game(S: int = 3, m: int = 3, n: int = 3, H: int = 3, games: int = 1, noise: float = 0.5,
                       concentration: float = 1.0, seed: int = 0) -> TabularMarkovGame:
    if min(S, m, n, H, games) < 1 or noise < 0 or concentration <= 0:
        raise ValueError(f"need S, m, n, H, games >= 1, noise >= 0, concentration > 0; got S={S}, m={m}, n={n}, "
                         f"H={H}, games={games}, noise={noise}, concentration={concentration}")
    rng = np.random.default_rng(seed)
    r = rng.uniform(0, 1, (games, H, S, m, n))
    P = rng.dirichlet(np.full(S, concentration), size=(games, H, S, m, n))
    return TabularMarkovGame(r, P, float(noise))


def _q(r_h, P_h, V_next):
    return r_h + np.einsum("zsabt,zt->zsab", P_h, V_next)


def _refs(B, S, m, n):
    return np.full((B, S, m), 1.0 / m), np.full((B, S, n), 1.0 / n)


def solve_ne(r, P, beta, tol=1e-8, init=None, need=("max", "min"), lo=None, hi=None):
    """Regularized NE by backward induction: r (B, H, S, m, n), P (..., S), beta (B,).

    Returns mu (B, H, S, m), nu (B, H, S, n), V (B, H + 1, S). ``lo``/``hi`` optionally clip each
    Q_h to [lo[h], hi[h]] (the optimism baseline's truncation).
    """
    B, H, S, m, n = r.shape
    beta = np.broadcast_to(np.asarray(beta, float), (B,))
    bs = np.repeat(beta[:, None], S, 1)
    mr, nr = _refs(B, S, m, n)
    mu, nu = np.zeros((B, H, S, m)), np.zeros((B, H, S, n))
    V = np.zeros((B, H + 1, S))
    for h in reversed(range(H)):
        Q = _q(r[:, h], P[:, h], V[:, h + 1])
        if lo is not None:
            Q = np.clip(Q, lo[h], hi[h])
        warm = None if init is None else (init[0][:, h], init[1][:, h])
        mu[:, h], nu[:, h], _ = mg.solve_regularized_ne(Q, bs, tol=tol, init=warm, need=need)
        V[:, h] = mg.objective(Q, mu[:, h], nu[:, h], bs)
    return mu, nu, V


def best_response_value(r, P, beta, policy, player: str, bonus=None):
    """Backward induction of the best response to ``policy`` (the other player's (B, H, S, k)).

    player="max": the max player responds to nu; "min": the min player responds to mu.
    Returns (V (B, H + 1, S), response policy (B, H, S, k')). ``bonus`` (B, H, S, m, n) is added
    to (max) or subtracted from (min) the rewards: the optimistic models of SOMG.
    """
    B, H, S, m, n = r.shape
    beta = np.broadcast_to(np.asarray(beta, float), (B,))
    bs = np.repeat(beta[:, None], S, 1)
    mr, nr = _refs(B, S, m, n)
    V = np.zeros((B, H + 1, S))
    resp = np.zeros((B, H, S, m if player == "max" else n))
    sign = 1.0 if player == "max" else -1.0
    for h in reversed(range(H)):
        rh = r[:, h] + (0 if bonus is None else sign * bonus[:, h])
        Q = _q(rh, P[:, h], V[:, h + 1])
        if player == "max":
            nu = policy[:, h]
            up, _ = mg._br_values(Q, bs, mr, nr, mr, nu)
            V[:, h], resp[:, h] = up, mg.br_max(Q, nu, bs)
        else:
            mu = policy[:, h]
            _, low = mg._br_values(Q, bs, mr, nr, mu, nr)
            V[:, h], resp[:, h] = low, mg.br_min(Q, mu, bs)
    return V, resp


def policy_value(r, P, beta, mu, nu):
    """V^{mu, nu}_h(s) (B, H + 1, S) with the KL terms of every step, by backward induction."""
    B, H, S, m, n = r.shape
    beta = np.broadcast_to(np.asarray(beta, float), (B,))
    bs = np.repeat(beta[:, None], S, 1)
    V = np.zeros((B, H + 1, S))
    for h in reversed(range(H)):
        V[:, h] = mg.objective(_q(r[:, h], P[:, h], V[:, h + 1]), mu[:, h], nu[:, h], bs)
    return V


def duality_gap(game_r, game_P, beta, mu, nu, s0=0):
    """V^{BR(nu), nu}_1(s0) - V^{mu, BR(mu)}_1(s0): the regularized duality gap of (mu, nu)."""
    up, _ = best_response_value(game_r, game_P, beta, nu, "max")
    low, _ = best_response_value(game_r, game_P, beta, mu, "min")
    return np.maximum(up[:, 0, s0] - low[:, 0, s0], 0.0)


def run_somg(game: TabularMarkovGame, betas, arm: str = "somg", episodes: int = 5000, bonus: float = 0.5,
             kappa: float = 2.0, eps0: float = 1.0, t_dense: int = 20, update_ratio: float = 0.05,
             tol: float = 1e-7, seed: int = 0, record_points: int = 50, desc: str | None = None,
             clip: bool | None = None, br_sampling: bool | None = None):
    """Run one arm on every game for every beta. Each round is a pair of episodes (as in OMG).

    ``somg``: bonus inflated by ``kappa``, no truncation, best-response sampling; ``optimism``: kappa 1,
    Q truncated to [0, H - h], no best-response sampling. ``clip`` and ``br_sampling`` override the
    arm's choice (for ``optimism``, ``kappa`` is always 1).

    Returns dict(t, regret (len(betas), G, points): played policies, regret_output (same): output policies,
    gap (same), betas), t counted in rounds.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
    betas = np.atleast_1d(np.asarray(betas, float))
    if np.any(betas < 0):
        raise ValueError(f"betas must be >= 0; got {betas}")
    if episodes < 1 or bonus < 0 or kappa < 1:
        raise ValueError(f"need episodes >= 1, bonus >= 0, kappa >= 1; got {episodes}, {bonus}, {kappa}")
    rng = np.random.default_rng(seed)
    G = game.r.shape[0]
    H, S, m, n = game.dims
    K = len(betas)
    B = K * G
    beta = np.repeat(betas, G)
    r_true, P_true = np.concatenate([game.r] * K), np.concatenate([game.P] * K)
    N = np.zeros((B, H, S, m, n))
    Rsum = np.zeros_like(N)
    Ntr = np.zeros((B, H, S, m, n, S))
    sched = update_schedule(episodes, t_dense, update_ratio)
    bounds = np.r_[sched, episodes + 1]
    rec_t = np.unique(np.geomspace(1, episodes, record_points).round().astype(int))
    regret, gap_at, cum = np.zeros((B, len(rec_t))), np.zeros((B, len(rec_t))), np.zeros(B)
    regret_out, cum_out = np.zeros((B, len(rec_t))), np.zeros(B)
    warm_p = warm_m = None
    ar = np.arange(B)
    k_opt = 1.0 if arm == "optimism" else kappa
    clip = (arm == "optimism") if clip is None else clip
    br_sampling = (arm == "somg") if br_sampling is None else br_sampling
    span = np.arange(H, 0, -1).astype(float)                       # H - h + 1 steps to go
    for k in progress(range(len(sched)), desc=desc or f"SOMG {arm}", leave=False):
        t0, t1 = bounds[k], bounds[k + 1]
        Nc = np.maximum(N, 1)
        r_hat = Rsum / Nc
        P_hat = np.where(N[..., None] > 0, Ntr / Nc[..., None], 1.0 / S)
        b = bonus * H / np.sqrt(Nc)
        if arm == "eps_greedy":
            mu_t, nu_t, _ = solve_ne(r_hat, P_hat, beta, tol=tol, init=warm_p)
            warm_p = (mu_t, nu_t)
            eps = min(1.0, eps0 * (S * m * n * H / t0) ** (1 / 3))
            plays = [((1 - eps) * mu_t + eps / m, (1 - eps) * nu_t + eps / n)] * 2
        else:
            lo = hi = None
            if clip:
                lo, hi = np.zeros(H), span
            mu_t, nu_p, _ = solve_ne(r_hat + k_opt * b, P_hat, beta, tol=tol, init=warm_p, need=("max",), lo=lo, hi=hi)
            mu_m, nu_t, _ = solve_ne(r_hat - k_opt * b, P_hat, beta, tol=tol, init=warm_m, need=("min",),
                                     lo=None if lo is None else lo - span, hi=hi)
            warm_p, warm_m = (mu_t, nu_p), (mu_m, nu_t)
            if br_sampling:
                _, mu_br = best_response_value(r_hat, P_hat, beta, nu_t, "max", bonus=k_opt * b)
                _, nu_br = best_response_value(r_hat, P_hat, beta, mu_t, "min", bonus=k_opt * b)
                plays = [(mu_br, nu_t), (mu_t, nu_br)]
            else:
                plays = [(mu_t, nu_t)] * 2
        g = np.mean([duality_gap(r_true, P_true, beta, pm, pn, game.s0) for pm, pn in plays], axis=0)
        g_out = duality_gap(r_true, P_true, beta, mu_t, nu_t, game.s0)
        sel = (rec_t >= t0) & (rec_t < t1)
        regret[:, sel] = cum[:, None] + g[:, None] * (rec_t[sel] - t0 + 1)
        regret_out[:, sel] = cum_out[:, None] + g_out[:, None] * (rec_t[sel] - t0 + 1)
        gap_at[:, sel] = g[:, None]
        cum += g * (t1 - t0)
        cum_out += g_out * (t1 - t0)
        for _ in range(t1 - t0):
            for pm, pn in plays:
                s = np.full(B, game.s0)
                for h in range(H):
                    a, c = _sample(rng, pm[ar, h, s]), _sample(rng, pn[ar, h, s])
                    rew = r_true[ar, h, s, a, c] + game.noise * rng.standard_normal(B)
                    s2 = _sample(rng, P_true[ar, h, s, a, c])
                    N[ar, h, s, a, c] += 1
                    Rsum[ar, h, s, a, c] += rew
                    Ntr[ar, h, s, a, c, s2] += 1
                    s = s2
    shape = (K, G, len(rec_t))
    return {"t": rec_t, "regret": regret.reshape(shape), "regret_output": regret_out.reshape(shape),
            "gap": gap_at.reshape(shape), "betas": betas}
