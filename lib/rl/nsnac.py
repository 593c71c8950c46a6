"""NS-NAC and BORL-NS-NAC: natural actor-critic with restarts for non-stationary average-reward MDPs.

Our reconstruction of arXiv 2504.16415 (see docs/papers/nsnac.md). Tabular softmax policy
pi(a|s) ∝ exp(theta(s, a)); at every step t, in state s, having taken a and seen r, s', a' ~ pi(s'):

    eta      <- eta + beta (r - eta)                                (average-reward estimate)
    delta     = r - eta + Q(s', a') - Q(s, a)                       (differential TD error)
    Q(s, a)  <- Q(s, a) + beta delta                                (critic, fast timescale)
    theta(s) <- theta(s) + alpha Q(s, .)                            (actor: natural PG for softmax, slow)

and every N steps everything restarts (theta = Q = eta = 0): forgetting is the exploration a
changing MDP needs. The paper's bound O~(|S|^1/2 |A|^1/2 Delta_T^1/6 T^5/6) is consistent with
N = (T / Delta_T)^(5/6) (a stationary regret of N^(4/5) per interval, plus N Delta_T of drift).

Arms (all run as one vectorized batch over games x arms):
    ``nsnac``      restart every N = ceil(c_N (T / Delta_T)^(5/6)) steps; alpha, beta from N
    ``nac``        the same learner without restarts (N = T)
    ``oracle``     restart exactly at the true change points (piecewise environments)
    ``borl``       BORL-NS-NAC: blocks of W steps; EXP3 picks, per block, one (N, alpha, beta) from a
                   geometric grid N = T^(k/5) x three step-size scales, built without Delta_T; the
                   block's mean reward (in [0, 1]) is the bandit feedback; the learner restarts at
                   every block (``block_restart``, as BORL restarts its base learner) or keeps its
                   state and only changes its settings. The block length follows Cheung,
                   Simchi-Levi and Zhu's BORL (ICML 2020), W = ceil(3 |S|^(2/3) |A|^(1/2) T^(1/2))
                   (``block="cheung"``, about 15 sqrt(T) at |S| = 5, |A| = 3), or W = ceil(T^e) for a
                   number e (``block=0.5``: the bare sqrt(T) our first reconstruction used).
                   EXP3's exploration rate is gamma = min(1, sqrt(M ln M / ((e - 1) n_b))) over n_b = T / W
                   blocks and M settings (:func:`exp3_gamma`): with M = 15 it is 1 (uniform choice, no
                   learning) until T is about 1.3e5 at |S| = 5, |A| = 3; ``step_scales=(1.0,)`` keeps the
                   five intervals with NS-NAC's own step sizes (M = 5), where it learns from T of about 5e3.

Several BORL variants may share one run (each element of the batch keeps its own EXP3 weights);
give them distinct ``label``s.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mdp import NonStationaryMDP
from ..utils import progress

ARMS = ("nsnac", "nac", "oracle", "borl")


def step_sizes(N: int, alpha0: float = 10.0, beta0: float = 1.0):
    """Two-timescale constants for an interval of N steps: beta = beta0 N^(-1/3), alpha = alpha0 N^(-1/2)."""
    if N < 1 or alpha0 <= 0 or beta0 <= 0:
        raise ValueError(f"need N >= 1, alpha0 > 0, beta0 > 0; got N={N}, alpha0={alpha0}, beta0={beta0}")
    return alpha0 * N ** -0.5, min(1.0, beta0 * N ** (-1 / 3))


def restart_interval(T: int, delta: float, c_N: float = 1.0) -> int:
    """N = c_N (T / Delta_T)^(5/6), clipped to [1, T]; Delta_T = 0 means never restart."""
    if T < 1 or delta < 0 or c_N <= 0:
        raise ValueError(f"need T >= 1, Delta_T >= 0, c_N > 0; got T={T}, Delta_T={delta}, c_N={c_N}")
    if delta == 0:
        return T
    return int(np.clip(np.ceil(c_N * (T / delta) ** (5 / 6)), 1, T))


def borl_grid(T: int, size: int = 5):
    """Restart intervals N = T^(k/size), k = 1..size (geometric, no knowledge of Delta_T)."""
    return sorted({int(np.ceil(T ** (k / size))) for k in range(1, size + 1)})


def exp3_gamma(T: int, S: int, A: int, M: int, block="cheung") -> tuple[float, int]:
    """(gamma, n_b): EXP3's exploration rate min(1, sqrt(M ln M / ((e - 1) n_b))) over BORL's n_b = ceil(T / W)
    blocks with M settings (Auer et al.'s tuning for a known number of rounds). gamma = 1 is a uniform choice."""
    if M < 1:
        raise ValueError(f"M must be >= 1, got {M}")
    nb = int(np.ceil(T / borl_block(T, S, A, block)))
    return float(min(1.0, np.sqrt(M * np.log(M) / ((np.e - 1) * nb)))), nb


def borl_block(T: int, S: int, A: int, block="cheung") -> int:
    """BORL's block length W: ``"cheung"`` 3 S^(2/3) A^(1/2) sqrt(T) (Cheung et al.), or T^block for a number."""
    if block == "cheung":
        W = 3 * S ** (2 / 3) * A ** 0.5 * T ** 0.5
    elif isinstance(block, (int, float)) and not isinstance(block, bool) and 0 < block <= 1:
        W = T ** block
    else:
        raise ValueError(f"block must be 'cheung' or an exponent in (0, 1]; got {block!r}")
    return int(np.clip(np.ceil(W), 1, T))


@dataclass
class ArmSpec:
    name: str
    N: int = 0                                   # restart interval (nsnac / nac)
    alpha: float = 0.0
    beta: float = 0.0
    grid: list = field(default_factory=list)     # borl: [(N, alpha, beta), ...]
    block: int = 0                               # borl: W
    block_restart: bool = True                   # borl: restart the learner at every block (as BORL does)
    label: str = ""                              # name in the results (defaults to name)

    def __post_init__(self):
        self.label = self.label or self.name


def make_arms(env: NonStationaryMDP, arms=ARMS, c_N: float = 1.0, alpha0: float = 10.0, beta0: float = 1.0,
              grid_size: int = 5, delta: float | None = None, block="cheung", block_restart: bool = True,
              label: str = "", step_scales=(0.3, 1.0, 3.0)) -> list[ArmSpec]:
    """The four arms' settings for env; NS-NAC is told Delta_T (the mean over games unless given).

    ``block`` and ``block_restart`` set BORL's block length (see ``borl_block``) and whether the
    learner restarts at each block; ``label`` names the BORL arm in the results; ``step_scales`` multiply
    alpha0 in BORL's grid (M = intervals x scales settings)."""
    T = env.T
    unknown = set(arms) - set(ARMS)
    if unknown:
        raise ValueError(f"unknown arm(s) {sorted(unknown)}; expected a subset of {ARMS}")
    delta = float(np.mean(env.variation())) if delta is None else float(delta)
    out = []
    for a in arms:
        if a == "nsnac":
            N = restart_interval(T, delta, c_N)
            out.append(ArmSpec("nsnac", N, *step_sizes(N, alpha0, beta0)))
        elif a == "nac":
            out.append(ArmSpec("nac", T, *step_sizes(T, alpha0, beta0)))
        elif a == "oracle":
            seg = int(np.max(np.diff(np.r_[env.starts, T])))
            out.append(ArmSpec("oracle", seg, *step_sizes(seg, alpha0, beta0)))
        else:
            W = borl_block(T, *env.dims, block)
            grid = [(N, *step_sizes(N, a0 * alpha0, beta0)) for N in borl_grid(T, grid_size) for a0 in step_scales]
            out.append(ArmSpec("borl", W, grid=sorted(set(grid)), block=W, block_restart=block_restart,
                               label=label or "borl"))
    return out


def _sample(rng, p):
    u = rng.random((p.shape[0], 1))
    return np.minimum((p.cumsum(-1) < u).sum(-1), p.shape[-1] - 1)


def _softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def run_arms(env: NonStationaryMDP, arms: list[ArmSpec], seed: int = 0, record_points: int = 40,
             record_t=None, desc: str | None = None):
    """Run every arm on every game of env, vectorized.

    Returns dict(t, regret (arms, G, points): cumulative dynamic regret at the steps t,
    restarts (arms, G), arms (their labels), and when BORL arms are present borl_choices
    {label: (blocks, G) grid indices} and borl_grid). The steps t are ``record_points`` geometric
    ones unless ``record_t`` (1-based step counts) is given.
    """
    if not arms:
        raise ValueError("no arms given")
    labels = [a.label for a in arms]
    if len(set(labels)) < len(labels):
        raise ValueError(f"arm labels must be distinct, got {labels}")
    borls = [a for a in arms if a.name == "borl"]
    rng = np.random.default_rng(seed)
    G = env.P.shape[0]
    S, A = env.dims
    E = len(arms) * G                                  # batch: arm-major, then game
    g_of = np.tile(np.arange(G), len(arms))
    arm_of = np.repeat(np.arange(len(arms)), G)
    N = np.array([arms[i].N for i in arm_of], float)
    alpha = np.array([arms[i].alpha for i in arm_of])
    beta = np.array([arms[i].beta for i in arm_of])
    is_oracle = np.array([arms[i].name == "oracle" for i in arm_of])
    is_borl = np.array([arms[i].name == "borl" for i in arm_of])
    if borls:                                           # one EXP3 bandit per batch element
        # grids of different sizes share the batch: padded to the largest, padded settings never drawn
        own = [arms[i].grid if arms[i].name == "borl" else borls[0].grid for i in arm_of]
        Ms = np.array([len(g) for g in own])
        Mmax = int(Ms.max())
        grid = np.array([list(g) + [g[-1]] * (Mmax - len(g)) for g in own])     # (E, Mmax, 3)
        valid = np.arange(Mmax)[None, :] < Ms[:, None]
        W = np.array([arms[i].block if arms[i].name == "borl" else env.T + 1 for i in arm_of])
        block_restart = np.array([arms[i].name == "borl" and arms[i].block_restart for i in arm_of])
        nb = np.ceil(env.T / W)
        gamma = np.minimum(1.0, np.sqrt(Ms * np.log(Ms) / ((np.e - 1) * nb)))[:, None]
        M = Ms[:, None]
        logw = np.where(valid, 0.0, -np.inf)
        choice = np.zeros(E, int)
        block_reward = np.zeros(E)
        choices = {a.label: [] for a in borls}
    theta, Q, eta = np.zeros((E, S, A)), np.zeros((E, S, A)), np.zeros(E)
    since = np.zeros(E)
    restarts = np.zeros(E, int)
    s = rng.integers(0, S, E)
    ar = np.arange(E)
    rec_t = (np.unique(np.geomspace(1, env.T, record_points).round().astype(int)) if record_t is None
             else np.unique(np.clip(np.asarray(record_t, int), 1, env.T)))
    regret = np.zeros((E, len(rec_t)))
    cum = np.zeros(E)
    change = set(env.change_points().tolist())
    ri = 0
    k = 0
    a = _sample(rng, _softmax(theta[ar, s]))
    for t in progress(range(env.T), desc=desc or "NS-NAC", leave=False, mininterval=1.0):
        if k + 1 < len(env.starts) and t == env.starts[k + 1]:
            k += 1
        # --- restarts ----------------------------------------------------------------------
        reset = since >= N
        if t in change:
            reset |= is_oracle
        new_block = is_borl & (t % W == 0) if borls else None
        if borls and new_block.any():
            p = (1 - gamma) * _softmax(logw) + gamma * valid / M
            if t > 0:                                   # EXP3 update with the finished block's mean reward
                x = block_reward / W
                upd = new_block * gamma[:, 0] * x / p[ar, choice] / M[:, 0]
                logw[ar, choice] += upd
                p = (1 - gamma) * _softmax(logw) + gamma * valid / M
            choice = np.where(new_block, _sample(rng, p), choice)
            for j, arm in enumerate(arms):
                if arm.name == "borl" and t % arm.block == 0:
                    choices[arm.label].append(choice[arm_of == j].copy())
            pick = grid[ar, choice]                     # (E, 3)
            N = np.where(new_block, pick[:, 0], N)
            alpha = np.where(new_block, pick[:, 1], alpha)
            beta = np.where(new_block, pick[:, 2], beta)
            block_reward[new_block] = 0
            reset |= new_block & block_restart
        if reset.any():
            restarts += reset & (t > 0)
            theta[reset], Q[reset], eta[reset], since[reset] = 0.0, 0.0, 0.0, 0
            a = np.where(reset, _sample(rng, _softmax(theta[ar, s])), a)
        # --- act, observe, learn ------------------------------------------------------------
        g = g_of
        r = env.R[g, k, s, a]
        cum += env.J_star[g, k] - r
        s2 = _sample(rng, env.P[g, k, s, a])
        a2 = _sample(rng, _softmax(theta[ar, s2]))
        eta += beta * (r - eta)
        delta = r - eta + Q[ar, s2, a2] - Q[ar, s, a]
        Q[ar, s, a] += beta * delta
        theta[ar, s] += alpha[:, None] * Q[ar, s]
        if borls:
            block_reward += r
        since += 1
        s, a = s2, a2
        while ri < len(rec_t) and rec_t[ri] == t + 1:
            regret[:, ri] = cum
            ri += 1
    out = {"t": rec_t, "regret": regret.reshape(len(arms), G, -1), "arms": labels,
           "restarts": restarts.reshape(len(arms), G)}
    if borls:
        out["borl_choices"] = {k: np.array(v) for k, v in choices.items()}
        out["borl_grid"] = borls[0].grid
        out["borl_grids"] = {a.label: a.grid for a in borls}
    return out


def borl_variants(env: NonStationaryMDP) -> list[ArmSpec]:
    """The ablations of the main BORL arm (Cheung's block, restarts, 15 settings), one change each: the bare
    sqrt(T) block ("borl_sqrt"), no restart at block boundaries ("borl_keep"), and five settings, the
    intervals with NS-NAC's step sizes, so that EXP3 learns at shorter horizons ("borl_few")."""
    return (make_arms(env, ["borl"], block=0.5, label="borl_sqrt")
            + make_arms(env, ["borl"], block_restart=False, label="borl_keep")
            + make_arms(env, ["borl"], step_scales=(1.0,), label="borl_few"))


def final_regret(kind: str, T: int, knob: float, S: int, A: int, games: int, seed: int = 0):
    """Dynamic regret at T of every arm on one batch of environments, as a tidy frame.

    ``kind="piecewise"``: ``knob`` switches over the horizon, arms NS-NAC, NAC, oracle restarts, BORL;
    ``kind="drift"``: ``knob`` drift cycles, arms NS-NAC, NAC, BORL (no change points for an oracle).
    Both add the BORL ablations of ``borl_variants``. Columns: arm, game, t, regret, kind, T, knob,
    delta_T (each environment's own variation budget).
    """
    from .. import regret
    from . import mdp
    if kind == "drift":
        e = mdp.drifting_mdp(S, A, T=T, cycles=knob, games=games, seed=seed + 100 + int(10 * knob))
        arm_list = ["nsnac", "nac", "borl"]
    elif kind == "piecewise":
        e = mdp.piecewise_mdp(S, A, T=T, switches=int(knob), games=games, seed=seed + 100 + int(knob))
        arm_list = list(ARMS)
    else:
        raise ValueError(f"kind must be 'piecewise' or 'drift', got {kind!r}")
    o = run_arms(e, make_arms(e, arm_list) + borl_variants(e), seed=seed + 7, desc=f"09 {kind} T={T} k={knob}")
    df = regret.to_frame(o["t"], o["regret"], {}, ("arm", "game"), {"arm": o["arms"]})
    final = df[df.t == T].assign(kind=kind, T=T, knob=knob)
    final["delta_T"] = final.game.map(dict(enumerate(e.variation())))
    return final
