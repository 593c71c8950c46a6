"""KL-regularized two-player zero-sum matrix games (the objects of arXiv 2510.13060).

The max player picks mu (rows), the min player nu (columns); the regularized payoff is

    f(mu, nu) = mu^T A nu - beta KL(mu || mu_ref) + beta KL(nu || nu_ref).

KL regularization makes both best responses closed-form Gibbs distributions,

    BR_max(nu) ∝ mu_ref * exp(A nu / beta),      BR_min(mu) ∝ nu_ref * exp(-A^T mu / beta),

and the duality gap of a pair (mu, nu) closed-form log-sum-exps. ``beta = 0`` is the
unregularized game (best responses are pure, the equilibrium is solved as a linear program).

Every function takes a batch: A has shape (..., m, n), beta shape (...) or a scalar, and the
policies (..., m) / (..., n), so one call serves all seeds and all betas of an experiment.
"""
from __future__ import annotations

import numpy as np

__all__ = ["kl", "objective", "br_max", "br_min", "best_response_values", "duality_gap",
           "solve_regularized_ne", "uniform", "check_game"]


def uniform(k: int) -> np.ndarray:
    return np.full(k, 1.0 / k)


def check_game(A, beta, mu_ref=None, nu_ref=None):
    """Validate shapes and values; return (A, beta, mu_ref, nu_ref) as broadcast float arrays."""
    A = np.asarray(A, dtype=float)
    if A.ndim < 2:
        raise ValueError(f"payoff matrix A must have shape (..., m, n); got shape {A.shape}")
    m, n = A.shape[-2:]
    beta = np.asarray(beta, dtype=float)
    if np.any(~np.isfinite(beta)) or np.any(beta < 0):
        raise ValueError(f"beta (KL strength) must be finite and >= 0; got {beta}")
    beta = np.broadcast_to(beta, A.shape[:-2]).astype(float)
    mu_ref = uniform(m) if mu_ref is None else np.asarray(mu_ref, dtype=float)
    nu_ref = uniform(n) if nu_ref is None else np.asarray(nu_ref, dtype=float)
    for name, ref, k in [("mu_ref", mu_ref, m), ("nu_ref", nu_ref, n)]:
        if ref.shape[-1] != k:
            raise ValueError(f"{name} must have {k} entries to match A's shape {A.shape[-2:]}; got shape {ref.shape}")
        if np.any(ref <= 0) or np.any(np.abs(ref.sum(-1) - 1.0) > 1e-8):
            raise ValueError(f"{name} must be a distribution with full support (positive, summing to 1)")
    return A, beta, np.broadcast_to(mu_ref, A.shape[:-1]), np.broadcast_to(nu_ref, A.shape[:-2] + (n,))


def kl(p, q) -> np.ndarray:
    p, q = np.asarray(p, float), np.asarray(q, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return t.sum(-1)


def objective(A, mu, nu, beta, mu_ref=None, nu_ref=None) -> np.ndarray:
    A, beta, mu_ref, nu_ref = check_game(A, beta, mu_ref, nu_ref)
    bil = np.einsum("...i,...ij,...j->...", mu, A, nu)
    return bil - beta * kl(mu, mu_ref) + beta * kl(nu, nu_ref)


def _gibbs(logits):
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _lse(x):
    mx = x.max(-1)
    return mx + np.log(np.exp(x - mx[..., None]).sum(-1))


def _pure(values, argfn):
    out = np.zeros_like(values)
    np.put_along_axis(out, argfn(values, -1)[..., None], 1.0, -1)
    return out


def br_max(A, nu, beta, mu_ref=None):
    """The max player's best response to nu: Gibbs(mu_ref, A nu / beta); pure argmax when beta = 0."""
    A, beta, mu_ref, _ = check_game(A, beta, mu_ref, None)
    g = np.einsum("...ij,...j->...i", A, nu)
    safe = np.where(beta > 0, beta, 1.0)[..., None]
    soft = _gibbs(np.log(mu_ref) + g / safe)
    return np.where(beta[..., None] > 0, soft, _pure(g, np.argmax))


def br_min(A, mu, beta, nu_ref=None):
    """The min player's best response to mu: Gibbs(nu_ref, -A^T mu / beta); pure argmin when beta = 0."""
    A, beta, _, nu_ref = check_game(A, beta, None, nu_ref)
    g = np.einsum("...i,...ij->...j", mu, A)
    safe = np.where(beta > 0, beta, 1.0)[..., None]
    soft = _gibbs(np.log(nu_ref) - g / safe)
    return np.where(beta[..., None] > 0, soft, _pure(g, np.argmin))


def best_response_values(A, mu, nu, beta, mu_ref=None, nu_ref=None):
    """(max_mu' f(mu', nu), min_nu' f(mu, nu')) in closed form."""
    return _br_values(*check_game(A, beta, mu_ref, nu_ref), mu, nu)


def _br_values(A, beta, mu_ref, nu_ref, mu, nu):
    g_row = np.einsum("...ij,...j->...i", A, nu)           # payoff of each row against nu
    g_col = np.einsum("...i,...ij->...j", mu, A)           # payoff of each column against mu
    safe = np.where(beta > 0, beta, 1.0)
    up_soft = safe * _lse(np.log(mu_ref) + g_row / safe[..., None])
    lo_soft = -safe * _lse(np.log(nu_ref) - g_col / safe[..., None])
    up = np.where(beta > 0, up_soft, g_row.max(-1)) + beta * kl(nu, nu_ref)
    lo = np.where(beta > 0, lo_soft, g_col.min(-1)) - beta * kl(mu, mu_ref)
    return up, lo


def _gap(A, beta, mu_ref, nu_ref, mu, nu):
    up, lo = _br_values(A, beta, mu_ref, nu_ref, mu, nu)
    return np.maximum(up - lo, 0.0)


def duality_gap(A, mu, nu, beta, mu_ref=None, nu_ref=None) -> np.ndarray:
    """max_mu' f(mu', nu) - min_nu' f(mu, nu') >= 0; zero exactly at the regularized NE."""
    return _gap(*check_game(A, beta, mu_ref, nu_ref), mu, nu)


def _lp_ne(A, need=("max", "min")):
    """Unregularized NE of one zero-sum game by linear programming (maximin for rows, minimax for columns)."""
    from scipy.optimize import linprog
    m, n = A.shape
    out = []
    for who, M, k, l in [("max", A, m, n), ("min", -A.T, n, m)]:   # max_x min_j (x^T M)_j, an LP in (x, v)
        if who not in need:
            out.append(np.full(k, 1.0 / k))
            continue
        c = np.r_[np.zeros(k), -1.0]
        A_ub = np.c_[-M.T, np.ones(l)]                     # v - (M^T x)_j <= 0
        res = linprog(c, A_ub=A_ub, b_ub=np.zeros(l), A_eq=np.r_[np.ones(k), 0.0][None], b_eq=[1.0],
                      bounds=[(0, None)] * k + [(None, None)], method="highs")
        if not res.success:
            raise RuntimeError(f"LP for the unregularized equilibrium failed: {res.message}")
        x = np.clip(res.x[:k], 0, None)
        out.append(x / x.sum())
    return out


def _log_gibbs(logits):
    return logits - _lse(logits)[..., None]


def _newton_direction(Ap, bp, lmr, lnr, u, v):
    """Newton direction for the Gibbs fixed point, in log-probability space (batched).

    Unknowns u = log mu, v = log nu; residual R = (u - log mu_ref - A nu/beta + c1, v - log nu_ref + A^T mu/beta + c2)
    (c: normalisers). J = I + [[0, -A D_nu], [A^T D_mu, 0]] / beta with D_p = diag(p) - p p^T: a skew
    matrix times a PSD one has an imaginary spectrum, so J is always invertible.
    """
    m = u.shape[-1]
    mu, nu = np.exp(u), np.exp(v)
    D = lambda p: p[:, :, None] * np.eye(p.shape[-1]) - p[:, :, None] * p[:, None, :]
    k = m + v.shape[-1]
    ib = 1.0 / bp[:, None, None]
    J = np.broadcast_to(np.eye(k), (len(bp), k, k)).copy()
    J[:, :m, m:] -= (Ap @ D(nu)) * ib
    J[:, m:, :m] += (np.swapaxes(Ap, -1, -2) @ D(mu)) * ib
    R = np.concatenate([u - _log_gibbs(lmr + np.einsum("bij,bj->bi", Ap, nu) / bp[:, None]),
                        v - _log_gibbs(lnr - np.einsum("bi,bij->bj", mu, Ap) / bp[:, None])], -1)
    d = -np.linalg.solve(J, R[..., None])[..., 0]
    return d[:, :m], d[:, m:]


def _mirror_prox(Ap, bp, lmr, lnr, u, v, steps):
    eta = (1.0 / (bp + 2.0 * np.abs(Ap).max((-1, -2)) + 1e-12))[..., None]
    eb = eta * bp[..., None]
    for _ in range(steps):
        mu, nu = np.exp(u), np.exp(v)
        mh = np.exp(_log_gibbs((1 - eb) * u + eb * lmr + eta * np.einsum("bij,bj->bi", Ap, nu)))
        nh = np.exp(_log_gibbs((1 - eb) * v + eb * lnr - eta * np.einsum("bi,bij->bj", mu, Ap)))
        u = _log_gibbs((1 - eb) * u + eb * lmr + eta * np.einsum("bij,bj->bi", Ap, nh))
        v = _log_gibbs((1 - eb) * v + eb * lnr - eta * np.einsum("bi,bij->bj", mh, Ap))
    return u, v


def solve_regularized_ne(A, beta, mu_ref=None, nu_ref=None, tol: float = 1e-8, max_iter: int = 200,
                         init=None, mirror_steps: int = 20, need=("max", "min")):
    """Regularized Nash equilibrium of f: mirror-prox (extragradient) + damped Newton; LP when beta = 0.

    Mirror-prox on the simplex with the KL mirror map, with g = A nu, h = A^T mu:
        log mu' = (1 - eta beta) log mu + eta beta log mu_ref + eta g       (max player ascends)
        log nu' = (1 - eta beta) log nu + eta beta log nu_ref - eta h       (min player descends)
    a half step from (mu, nu), then the full step from (mu, nu) with the half step's gradients,
    eta = 1/(beta + 2 max|A|). For beta > 0 the game is strongly monotone and this converges
    linearly, but slowly when beta << max|A|; so each iteration first tries a Newton step on the
    fixed point (mu, nu) = (BR_max(nu), BR_min(mu)) with a backtracking line search on the duality
    gap, and falls back to ``mirror_steps`` mirror-prox steps where no step size lowers it by 20%.
    A cold start walks beta down from 0.1 max|A| (continuation); a warm start (``init`` = (mu0, nu0))
    that does not converge is retried cold. Stops once every game in the batch has gap <= tol,
    raises if some game cannot get there. Returns (mu, nu, gap). ``need`` names the players whose
    equilibrium strategy is wanted (only the LP of beta = 0 uses it; the other is then left uniform).
    """
    A, beta, mu_ref, nu_ref = check_game(A, beta, mu_ref, nu_ref)
    if tol <= 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    mu, nu, gap = _solve(A, beta, mu_ref, nu_ref, tol, max_iter, init, mirror_steps, need)
    checked = (beta > 0) | (len(set(need)) == 2)     # an LP asked for one side leaves the other uniform
    bad = (gap > tol) & checked
    if init is not None and bad.any():
        mu[bad], nu[bad], gap[bad] = _solve(A[bad], beta[bad], mu_ref[bad], nu_ref[bad], tol, max_iter, None,
                                            mirror_steps, need)
        bad = (gap > tol) & checked
    if bad.any():
        raise RuntimeError(f"regularized NE not within tol={tol} after {max_iter} iterations "
                           f"(worst gap {gap.max():.2e}, beta={beta[bad].min():g}, max|A|={np.abs(A).max():.3g})")
    return mu, nu, gap


def _solve(A, beta, mu_ref, nu_ref, tol, max_iter, init, mirror_steps, need):
    batch = A.shape[:-2]
    m, n = A.shape[-2:]
    A_in = A
    A = A - A.mean((-1, -2), keepdims=True)       # a constant shift changes neither the NE nor the gap
    if init is None:
        mu, nu = np.broadcast_to(mu_ref, batch + (m,)).copy(), np.broadcast_to(nu_ref, batch + (n,)).copy()
        # cold start: continuation in beta. Where beta << max|A| mirror-prox is slow and Newton's
        # basin is small; solve at a larger beta first and walk beta down, warm-starting each time.
        scale = np.abs(A).max((-1, -2))
        hard = (beta > 0) & (beta < 0.1 * scale)
        if hard.any():
            b_hi = np.where(hard, 0.1 * scale, beta)
            while True:
                b_hi = np.where(hard, np.maximum(b_hi, beta), beta)
                mu, nu, _ = _solve(A, b_hi, mu_ref, nu_ref, max(tol, 1e-6), max_iter, (mu, nu), mirror_steps, need)
                if np.all(b_hi <= beta):
                    break
                b_hi = b_hi / 3
    else:
        mu, nu = (np.broadcast_to(np.asarray(x, float), batch + (k,)).copy() for x, k in zip(init, (m, n)))
    zero, pos = beta == 0, beta > 0
    if pos.any():
        Ap, bp, mr, nr = A[pos], beta[pos], mu_ref[pos], nu_ref[pos]
        lmr, lnr = np.log(mr), np.log(nr)
        with np.errstate(divide="ignore"):
            u, v = _log_gibbs(np.log(np.clip(mu[pos], 1e-300, None))), _log_gibbs(np.log(np.clip(nu[pos], 1e-300, None)))
        gap = _gap(Ap, bp, mr, nr, np.exp(u), np.exp(v))
        for _ in range(max_iter):
            a = np.flatnonzero(gap > tol)
            if not len(a):
                break
            du, dv = _newton_direction(Ap[a], bp[a], lmr[a], lnr[a], u[a], v[a])
            done = np.zeros(len(a), bool)
            for t in (1.0, 0.5, 0.25, 0.125, 0.0625):
                todo = np.flatnonzero(~done)
                if not len(todo):
                    break
                ix = a[todo]
                nu_, nv_ = _log_gibbs(u[ix] + t * du[todo]), _log_gibbs(v[ix] + t * dv[todo])
                g = _gap(Ap[ix], bp[ix], mr[ix], nr[ix], np.exp(nu_), np.exp(nv_))
                ok = np.isfinite(g) & (g < 0.8 * gap[ix])        # sufficient decrease
                u[ix[ok]], v[ix[ok]], gap[ix[ok]] = nu_[ok], nv_[ok], g[ok]
                done[todo[ok]] = True
            stuck = a[~done]
            if len(stuck):
                u[stuck], v[stuck] = _mirror_prox(Ap[stuck], bp[stuck], lmr[stuck], lnr[stuck], u[stuck], v[stuck],
                                                  mirror_steps)
                gap[stuck] = _gap(Ap[stuck], bp[stuck], mr[stuck], nr[stuck], np.exp(u[stuck]), np.exp(v[stuck]))
        mu[pos], nu[pos] = np.exp(u), np.exp(v)
    if zero.any():
        idx = np.argwhere(zero) if batch else [()]
        for ix in idx:
            ix = tuple(ix)
            mu[ix], nu[ix] = _lp_ne(A[ix], need)
    gap = _gap(A_in, beta, mu_ref, nu_ref, mu, nu)
    return mu, nu, gap
