"""Nonparametric LLM routing with exponentially tilted weights (ProxRouter, arXiv 2510.09852; notebook 10).

Route a query x (an L2-normalized embedding) to the model with the highest estimated utility

    m*(x) = argmax_m U^(m)(x),     U = accuracy - lambda * cost,
    U^(m)(x) = sum_i w_i(x) V_i^(m),    w_i(x) = p_i exp(-phi_i(x) / tau) / Z,    phi_i = 1 - cos(x, c_i)

where the anchors c_i are K-means centroids of the training queries (prior p_i ~ n_i / s_i: cluster size
over the mean distance to the centroid; V_i = the cluster's mean per-model objective) or the k nearest
training queries (uniform prior 1/k; V_i = that query's objective). These weights solve
min_w sum_i w_i phi_i + tau KL(w || p): tau -> 0 is a hard assignment to the nearest anchor, tau -> inf
returns the prior (plain kNN averaging for kNN). "Base" is tau = inf for kNN / the hard nearest centroid for
K-means; "Prox" a finite tau.

Sweeping lambda traces an accuracy-cost curve; AUC_n is its area over the cost range, normalized by that
range (in % of a perfect-accuracy curve).
"""
from __future__ import annotations

import numpy as np
import torch


def cosine_distance(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """[n x a] 1 - cos between queries and anchors (rows need not be normalized)."""
    xn = torch.nn.functional.normalize(x, dim=1)
    an = torch.nn.functional.normalize(anchors, dim=1)
    return 1.0 - xn @ an.T


def tilted_weights(phi: torch.Tensor, prior: torch.Tensor, tau: float) -> torch.Tensor:
    """w_i ~ p_i exp(-phi_i / tau), rows summing to 1 (the KL-regularized solution); tau = inf: the prior."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0 (use a small value for a hard assignment), got {tau}")
    logp = torch.log(prior.clamp_min(1e-300)).expand_as(phi)
    if np.isinf(tau):
        return torch.softmax(logp, dim=1)
    return torch.softmax(logp - phi / tau, dim=1)


def kmeans(x: torch.Tensor, k: int, iters: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical K-means (cosine): (centroids [k x d] normalized, assignment [n]); k-means++ start, seeded."""
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be in 1..{len(x)}, got {k}")
    g = torch.Generator().manual_seed(seed)
    xn = torch.nn.functional.normalize(x, dim=1)
    cent = [xn[int(torch.randint(len(xn), (1,), generator=g))]]
    for _ in range(1, k):
        d = cosine_distance(xn, torch.stack(cent)).min(1).values.clamp_min(0)
        p = d / d.sum() if d.sum() > 0 else torch.full_like(d, 1 / len(d))
        cent.append(xn[int(torch.multinomial(p, 1, generator=g))])
    c = torch.stack(cent)
    for _ in range(iters):
        a = cosine_distance(xn, c).argmin(1)
        new = torch.stack([xn[a == j].mean(0) if (a == j).any() else c[j] for j in range(k)])
        new = torch.nn.functional.normalize(new, dim=1)
        if torch.allclose(new, c):
            break
        c = new
    return c, cosine_distance(xn, c).argmin(1)


class KMeansRouter:
    """Anchors = K-means centroids; prior p_i ~ n_i / s_i; V_i = the cluster's mean objective per model."""

    def __init__(self, x: torch.Tensor, objective: torch.Tensor, k: int, seed: int = 0):
        self.centroids, assign = kmeans(x, k, seed=seed)
        d = cosine_distance(x, self.centroids)
        n = torch.bincount(assign, minlength=k).double()
        s = torch.stack([d[assign == j, j].mean() if (assign == j).any() else torch.tensor(1.0, dtype=d.dtype)
                         for j in range(k)]).double().clamp_min(1e-6)
        self.prior = (n / s) / (n / s).sum()
        self.values = torch.stack([objective[assign == j].mean(0) if (assign == j).any()
                                   else objective.mean(0) for j in range(k)])

    def utilities(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        """[n x models] estimated objective; tau = 0 means the hard nearest centroid (Base)."""
        phi = cosine_distance(x, self.centroids).double()
        if tau == 0:
            w = torch.nn.functional.one_hot(phi.argmin(1), len(self.centroids)).double()
        else:
            w = tilted_weights(phi, self.prior.unsqueeze(0), tau)
        return w @ self.values.double()


class KNNRouter:
    """Anchors = the k nearest training queries, uniform prior; tau = inf is plain kNN averaging (Base)."""

    def __init__(self, x: torch.Tensor, objective: torch.Tensor, k: int):
        if not 1 <= k <= len(x):
            raise ValueError(f"k must be in 1..{len(x)}, got {k}")
        self.x, self.values, self.k = x, objective.double(), k

    def utilities(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        phi = cosine_distance(x, self.x).double()
        near = phi.topk(self.k, dim=1, largest=False)
        w = tilted_weights(near.values, torch.full((1, self.k), 1.0 / self.k, dtype=phi.dtype), tau)
        return torch.einsum("nk,nkm->nm", w, self.values[near.indices])


def route(utilities_acc: torch.Tensor, costs: torch.Tensor, lam: float) -> torch.Tensor:
    """Chosen model per query: argmax of estimated accuracy - lambda * cost (costs per model)."""
    return (utilities_acc - lam * costs.to(utilities_acc.dtype)).argmax(1)


def accuracy_cost_curve(est_acc: torch.Tensor, true_correct: torch.Tensor, costs: torch.Tensor,
                        lambdas) -> tuple[np.ndarray, np.ndarray]:
    """(mean cost, mean accuracy) of the routed choices over ``lambdas``, sorted by cost."""
    cs, acc = [], []
    for lam in lambdas:
        m = route(est_acc, costs, float(lam))
        cs.append(float(costs[m].double().mean()))
        acc.append(float(true_correct[torch.arange(len(m)), m].double().mean()))
    order = np.argsort(cs)
    return np.asarray(cs)[order], np.asarray(acc)[order]


def envelope(cost: np.ndarray, acc: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The best accuracy reachable at or below each cost of ``grid`` (the curve's upper envelope: a
    router can always spend less than its budget); 0 below the cheapest point."""
    cost, acc = np.asarray(cost, float), np.asarray(acc, float)
    return np.array([acc[cost <= c + 1e-12].max() if (cost <= c + 1e-12).any() else 0.0 for c in grid])


def auc_n(cost: np.ndarray, acc: np.ndarray, cost_range: tuple[float, float]) -> float:
    """Area under the accuracy-cost curve's envelope over ``cost_range``, divided by the range: in % of
    always-correct routing."""
    lo, hi = cost_range
    if not hi > lo:
        raise ValueError(f"the cost range must have hi > lo, got {cost_range}")
    grid = np.linspace(lo, hi, 512)
    return float(100 * np.trapezoid(envelope(cost, acc, grid), grid) / (hi - lo))


def jaccard_top(a: np.ndarray, b: np.ndarray, z: int) -> float:
    """Jaccard overlap of the top-z models by two score vectors (e.g. accuracy on outliers vs inliers)."""
    ta, tb = set(np.argsort(-a)[:z].tolist()), set(np.argsort(-b)[:z].tolist())
    return len(ta & tb) / len(ta | tb)


def auc_by_group(est_acc: torch.Tensor, correct: torch.Tensor, costs: torch.Tensor, groups: dict, lambdas,
                 cost_range: tuple[float, float], grid=None) -> dict:
    """AUC_n of one router's estimates on each group of queries (``groups``: name -> boolean mask);
    with a cost ``grid``, also each group's envelope on it (key ``"curve <group>"``)."""
    out = {}
    for name, mask in groups.items():
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if not mask.any():
            raise ValueError(f"group {name!r} has no queries")
        c, a = accuracy_cost_curve(est_acc[mask], correct[mask], costs, lambdas)
        out[name] = auc_n(c, a, cost_range)
        if grid is not None:
            out[f"curve {name}"] = envelope(c, a, grid).tolist()
    return out


def leave_task_out(emb: torch.Tensor, correct, task, costs, outlier, router_train, *, router: str, k: int,
                   inv_tau: float, inv_taus=(), lambdas=None, few_shot: int = 0, seed: int = 0) -> list[dict]:
    """One Leave-Task-Out split: the outlier task's queries (``outlier``: one task index, or several: a group
    of tasks left out together, as the paper leaves out HellaSwag+MedQA) are missing from Base's and Prox's training
    queries (``few_shot > 0``: all but that many of them, the paper's Few-Shot-Outlier split) and present
    in AllSee's; each router is scored (AUC_n) on the held-out queries, split into
    outlier, inlier and overall. ``router``: "kmeans" (Base = hard nearest centroid) or "knn" (Base =
    plain kNN average); Prox uses ``1/tau = inv_tau``; ``inv_taus`` adds a Prox curve over 1/tau.

    ``costs`` are per model; the cost range of AUC_n is [cheapest, dearest] model. Base, Prox and AllSee rows
    carry each group's envelope on 40 costs across that range ("curve <group>")."""
    correct = torch.as_tensor(np.asarray(correct), dtype=torch.float64)
    costs = torch.as_tensor(np.asarray(costs), dtype=torch.float64)
    task, router_train = np.asarray(task), np.asarray(router_train, bool)
    lambdas = np.concatenate([[0.0], np.logspace(-3, 2, 60) / float(costs.max())]) if lambdas is None else lambdas
    test = ~router_train
    is_out = np.isin(task, np.atleast_1d(np.asarray(outlier)))
    if not is_out.any():
        raise ValueError(f"no query belongs to the outlier task(s) {outlier!r}")
    groups = {"outlier": test & is_out, "inlier": test & ~is_out, "overall": test}
    cost_range = (float(costs.min()), float(costs.max()))
    grid = np.linspace(*cost_range, 40)

    def fit(mask):
        x, y = emb[torch.as_tensor(mask)], correct[torch.as_tensor(mask)]
        if router == "kmeans":
            return KMeansRouter(x, y, min(k, int(mask.sum())), seed=seed)
        if router == "knn":
            return KNNRouter(x, y, min(k, int(mask.sum())))
        raise ValueError(f"router must be 'kmeans' or 'knn', got {router!r}")

    seen_mask = router_train & ~is_out
    if few_shot:
        ix = np.flatnonzero(router_train & is_out)
        if few_shot > len(ix):
            raise ValueError(f"few_shot={few_shot} but the outlier task has {len(ix)} training queries")
        seen_mask[np.random.default_rng(seed).choice(ix, few_shot, replace=False)] = True
    seen = fit(seen_mask)
    allsee = fit(router_train)
    base_tau = 0 if router == "kmeans" else float("inf")
    rows = []
    for name, r, tau in [("Base", seen, base_tau), ("Prox", seen, 1.0 / inv_tau), ("AllSee", allsee, base_tau)]:
        rows.append({"router": name, "inv_tau": (np.inf if tau == 0 else (0.0 if np.isinf(tau) else 1.0 / tau)),
                     **auc_by_group(r.utilities(emb, tau), correct, costs, groups, lambdas, cost_range, grid)})
    for it in inv_taus:
        rows.append({"router": "Prox sweep", "inv_tau": float(it),
                     **auc_by_group(seen.utilities(emb, 1.0 / it), correct, costs, groups, lambdas, cost_range)})
    return rows


def gap_premise(allsee, base, what: str = "outlier AUC_n"):
    """The premise of "Prox improves the outliers over Base": seeing the outlier task's queries helps, i.e.
    AllSee (Base trained with them) beats Base on the outliers, per instance (a paired comparison whose
    interval must lie above zero, the rule's own test). It fails when the pool's accuracy does not depend on
    the query in a way the inliers miss (a pool at chance, or one model best everywhere): then Base has no gap
    that Prox could close, and a Prox - Base difference is noise."""
    from lib import evidence
    ev = evidence.compare(allsee, base, unit="points", fmt="+.2f")
    return evidence.premise(f"seeing the outlier task helps (AllSee - Base, {what} > 0)", ev,
                            f"AllSee - Base: {ev.text}")
