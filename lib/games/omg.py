"""OMG: optimistic best-response sampling for KL-regularized matrix games with bandit feedback.

Our reconstruction of arXiv 2510.13060's matrix-game algorithm (the paper's pseudo-code was
not available; see docs/papers/omg.md). The payoff is linear, A(i, j) = <phi(i, j), theta*>,
and each play (i, j) returns A(i, j) + Gaussian noise. Per round t:

    1. ridge regression  theta_t = Sigma^-1 sum_s phi_s r_s,   Sigma = lambda I + sum_s phi_s phi_s^T
    2. bonus  b(i, j) = c ||phi(i, j)||_{Sigma^-1};   A+ = clip(A_hat + b),  A- = clip(A_hat - b)
    3. mu_t = max player's regularized NE strategy in the game A+ (optimistic for the max player),
       nu_t = min player's regularized NE strategy in the game A- (optimistic for the min player)
    4. best-response sampling:  mu~ = BR_max(nu_t; A+),  nu~ = BR_min(mu_t; A-);
       play (i ~ mu~, j ~ nu_t) and (i ~ mu_t, j ~ nu~), and record both.

Regret is charged equally to every arm, on the policies it actually plays: each round's two plays
(p_1, q_1), (p_2, q_2) cost (DualityGap_beta(p_1, q_1) + DualityGap_beta(p_2, q_2)) / 2 on the true A
(``regret``). The other accounting, the gap of the policies an arm outputs as its equilibrium estimate
(mu_t, nu_t), is returned beside it (``regret_output``): our sources say only "regret on the regularized
game", not which pair it charges.
Arms: ``omg`` (above), ``optimism`` (steps 1-3, play (mu_t, nu_t) twice: no best-response sampling),
``eps_greedy`` (NE of A_hat, no bonus; each player mixes in uniform play with probability
eps_t = min(1, eps0 (d/t)^(1/3)); it plays the mixed policies and outputs the unmixed NE).
beta = 0 is the unregularized game (the sweep's endpoint).

All seeds and betas run as one batch. Policies are recomputed on a geometric schedule
(every round up to ``t_dense``, then whenever t has grown by a factor 1 + ``update_ratio``): the
rarely-switching device of linear bandits; it changes the regret by a constant factor only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import matrix as mg
from ..utils import progress

ARMS = ("omg", "optimism", "eps_greedy")


@dataclass
class LinearGame:
    """A batch of bandit matrix games: phi (m, n, d) shared, theta (B, d) one per game, noise sigma."""
    phi: np.ndarray
    theta: np.ndarray
    noise: float
    bound: float          # |A(i, j)| <= bound, known to the learner (the clip of A+/A-)

    @property
    def A(self) -> np.ndarray:
        return np.einsum("ijd,bd->bij", self.phi, self.theta)

    @property
    def shape(self):
        return self.phi.shape[:2]


def random_linear_game(m: int = 10, n: int = 10, d: int | str = 8, games: int = 1, noise: float = 0.5,
                       scale: float = 1.0, seed: int = 0) -> LinearGame:
    """Random games: unit-norm Gaussian features (or ``d="onehot"``: the tabular game) and payoffs in [-scale, scale]."""
    if m < 1 or n < 1 or games < 1:
        raise ValueError(f"need m, n, games >= 1; got m={m}, n={n}, games={games}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0; got {noise}")
    rng = np.random.default_rng(seed)
    if d == "onehot":
        phi = np.eye(m * n).reshape(m, n, m * n)
        theta = rng.uniform(-scale, scale, (games, m * n))
    else:
        if not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"d must be a positive feature dimension or 'onehot'; got {d!r}")
        phi = rng.normal(size=(m, n, d))
        phi /= np.linalg.norm(phi, axis=-1, keepdims=True)
        theta = rng.normal(size=(games, d))
        theta *= scale / np.linalg.norm(theta, axis=-1, keepdims=True)
    return LinearGame(phi, theta, float(noise), float(scale))


def update_schedule(T: int, t_dense: int = 20, ratio: float = 0.05) -> np.ndarray:
    """Rounds (1-based) at which policies are recomputed: every round to t_dense, then geometric."""
    if ratio <= 0 or t_dense < 1:
        raise ValueError(f"need ratio > 0 and t_dense >= 1; got ratio={ratio}, t_dense={t_dense}")
    ts, t = [], 1
    while t <= T:
        ts.append(t)
        t = t + 1 if t < t_dense else max(t + 1, int(np.ceil(t * (1 + ratio))))
    return np.array(ts)


def _sample(rng, p):
    """One index per row of p (B, k)."""
    u = rng.random((p.shape[0], 1))
    return np.minimum((p.cumsum(-1) < u).sum(-1), p.shape[-1] - 1)


def run_omg(game: LinearGame, betas, arm: str = "omg", T: int = 20000, bonus: float = 1.0, ridge: float = 1.0,
            eps0: float = 1.0, t_dense: int = 20, update_ratio: float = 0.05, tol: float = 1e-7, seed: int = 0,
            record_points: int = 60, desc: str | None = None):
    """Run one arm on every game of the batch for every beta; returns cumulative regret on a log grid of t.

    Output: dict with ``t`` (record_points rounds), ``regret`` (len(betas), B, record_points): cumulative
    duality gap of the policies played; ``regret_output``: the same for the policies output (mu_t, nu_t);
    ``gap`` (len(betas), B, record_points): the per-round played gap in force at those rounds.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
    betas = np.atleast_1d(np.asarray(betas, float))
    if np.any(betas < 0):
        raise ValueError(f"betas must be >= 0; got {betas}")
    if T < 1 or bonus < 0 or ridge <= 0:
        raise ValueError(f"need T >= 1, bonus >= 0, ridge > 0; got T={T}, bonus={bonus}, ridge={ridge}")
    rng = np.random.default_rng(seed)
    (m, n), d = game.shape, game.phi.shape[-1]
    G = game.theta.shape[0]
    K = len(betas)
    B = K * G                                            # batch: beta-major, then game
    beta = np.repeat(betas, G)
    theta = np.tile(game.theta, (K, 1))
    A_true = np.einsum("ijd,bd->bij", game.phi, theta)
    phi_flat = game.phi.reshape(m * n, d)
    Sinv = np.broadcast_to(np.eye(d) / ridge, (B, d, d)).copy()
    bvec = np.zeros((B, d))
    sched = update_schedule(T, t_dense, update_ratio)
    bounds = np.r_[sched, T + 1]
    rec_t = np.unique(np.geomspace(1, T, record_points).round().astype(int))
    regret = np.zeros((B, len(rec_t)))
    regret_out = np.zeros((B, len(rec_t)))
    gap_at = np.zeros((B, len(rec_t)))
    cum = np.zeros(B)
    cum_out = np.zeros(B)
    warm_p = warm_m = None
    ar = np.arange(B)
    for k in progress(range(len(sched)), desc=desc or f"OMG {arm}", leave=False):
        t0, t1 = bounds[k], bounds[k + 1]
        # --- steps 1-3: estimate, bonus, equilibria of the optimistic games -------------------
        th = np.einsum("bij,bj->bi", Sinv, bvec)
        A_hat = np.einsum("ijd,bd->bij", game.phi, th)
        w = np.sqrt(np.einsum("pd,bde,pe->bp", phi_flat, Sinv, phi_flat)).reshape(B, m, n)
        if arm == "eps_greedy":
            mu_t, nu_t, _ = mg.solve_regularized_ne(np.clip(A_hat, -game.bound, game.bound), beta, tol=tol, init=warm_p)
            warm_p = (mu_t, nu_t)
            eps = min(1.0, eps0 * (d / t0) ** (1 / 3))
            mixed = ((1 - eps) * mu_t + eps / m, (1 - eps) * nu_t + eps / n)
            plays = [mixed, mixed]
        else:
            Ap = np.clip(A_hat + bonus * w, -game.bound, game.bound)
            Am = np.clip(A_hat - bonus * w, -game.bound, game.bound)
            mu_t, nu_p, _ = mg.solve_regularized_ne(Ap, beta, tol=tol, init=warm_p, need=("max",))
            mu_m, nu_t, _ = mg.solve_regularized_ne(Am, beta, tol=tol, init=warm_m, need=("min",))
            warm_p, warm_m = (mu_t, nu_p), (mu_m, nu_t)
            if arm == "omg":                              # step 4: best-response sampling
                plays = [(mg.br_max(Ap, nu_t, beta), nu_t), (mu_t, mg.br_min(Am, mu_t, beta))]
            else:
                plays = [(mu_t, nu_t), (mu_t, nu_t)]
        # the regret of every round of this block: the played pairs' mean gap; the output pair's beside it
        g = np.mean([mg.duality_gap(A_true, pm, pn, beta) for pm, pn in plays], axis=0)
        g_out = mg.duality_gap(A_true, mu_t, nu_t, beta)
        sel = (rec_t >= t0) & (rec_t < t1)
        regret[:, sel] = cum[:, None] + g[:, None] * (rec_t[sel] - t0 + 1)
        regret_out[:, sel] = cum_out[:, None] + g_out[:, None] * (rec_t[sel] - t0 + 1)
        gap_at[:, sel] = g[:, None]
        cum += g * (t1 - t0)
        cum_out += g_out * (t1 - t0)
        # --- play the block, two samples per round, and update the ridge statistics ----------
        for _ in range(t1 - t0):
            for pm, pn in plays:
                i, j = _sample(rng, pm), _sample(rng, pn)
                x = game.phi[i, j]                                      # (B, d)
                r = A_true[ar, i, j] + game.noise * rng.standard_normal(B)
                Sx = np.einsum("bij,bj->bi", Sinv, x)
                Sinv -= Sx[:, :, None] * Sx[:, None, :] / (1.0 + np.einsum("bi,bi->b", x, Sx))[:, None, None]
                bvec += r[:, None] * x
    shape = (K, G, len(rec_t))
    return {"t": rec_t, "regret": regret.reshape(shape), "regret_output": regret_out.reshape(shape),
            "gap": gap_at.reshape(shape), "betas": betas}
