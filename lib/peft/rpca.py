"""Robust PCA by principal component pursuit, and FedRPCA's aggregation of client adapter updates.

Principal component pursuit (Candes, Li, Ma, Wright 2011) splits a matrix M (D x K) into a low-rank part
and a sparse part::

    min ||L||_* + lambda ||S||_1   subject to   L + S = M,        lambda = 1 / sqrt(max(D, K))

solved by the inexact augmented Lagrange multiplier method (Lin, Chen, Ma 2010)::

    Y = M / max(||M||_2, ||M||_inf / lambda);  mu = 1.25 / ||M||_2;  S = 0
    repeat:
        L = SVT_{1/mu}(M - S + Y / mu)              singular values shrunk by 1/mu
        S = shrink_{lambda/mu}(M - L + Y / mu)      entries shrunk toward 0 by lambda/mu
        Y = Y + mu (M - L - S);  mu = min(rho mu, 1e7 mu_0)
    until ||M - L - S||_F <= tol ||M||_F

with rho = 1.1, not Lin et al.'s 1.5: at 1.5 the penalty outgrows the problem within about 20 iterations and the
iterates freeze on L + S = M about 2% above the optimal objective on unstructured matrices such as a round's
client updates; at 1.1 they stop within 0.01% of it (tests/test_peft.py solves it exactly for comparison).

FedRPCA (arXiv 2506.01194): per adapter tensor, stack the K clients' updates as the columns of M; the
aggregate is the mean of the low-rank columns plus beta times the mean of the sparse columns::

    dW = mean_k L_k + beta * mean_k S_k          (beta = 1: plain averaging, since L + S = M)

Means over clients use the FedAvg weights (sample counts), so beta = 1 is FedAvg.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..strategies import register
from ..strategies.base import Strategy, check_positive, sample_weights, stack_deltas, weighted_mean


def _shrink(x: torch.Tensor, tau: float) -> torch.Tensor:
    return torch.sign(x) * (x.abs() - tau).clamp_min(0)


def _svt(x: torch.Tensor, tau: float) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    return (u * _shrink(s, tau)) @ vh


def robust_pca(M: torch.Tensor, lam: float | None = None, tol: float = 1e-7, max_iter: int = 1000, rho: float = 1.1):
    """(L, S, iterations) with L + S = M (to ``tol``), L low-rank and S sparse; float64 inside. ``rho``: the
    penalty's growth per iteration (see the module's note)."""
    if not rho > 1:
        raise ValueError(f"rho (the penalty's growth per iteration) must be > 1, got {rho}")
    if M.dim() != 2:
        raise ValueError(f"robust_pca expects a matrix, got shape {tuple(M.shape)}")
    dtype = M.dtype
    M = M.double()
    D, K = M.shape
    lam = 1.0 / max(D, K) ** 0.5 if lam is None else lam
    norm_M = torch.linalg.norm(M)
    if norm_M == 0:
        return torch.zeros_like(M, dtype=dtype), torch.zeros_like(M, dtype=dtype), 0
    two = torch.linalg.matrix_norm(M, ord=2)
    Y = M / max(float(two), float(M.abs().max()) / lam)
    mu = 1.25 / float(two)
    mu_max = mu * 1e7
    S = torch.zeros_like(M)
    L = torch.zeros_like(M)
    for it in range(1, max_iter + 1):
        L = _svt(M - S + Y / mu, 1.0 / mu)
        S = _shrink(M - L + Y / mu, lam / mu)
        Z = M - L - S
        Y = Y + mu * Z
        mu = min(mu * rho, mu_max)
        if torch.linalg.norm(Z) <= tol * norm_M:
            break
    return L.to(dtype), S.to(dtype), it


def fedrpca_combine(deltas: torch.Tensor, blocks, beta: float, weights: torch.Tensor | None = None) -> tuple:
    """FedRPCA's aggregate of client updates ``deltas`` [K x P], block by block (one block per adapter
    tensor: a list of slices); coordinates in no block (e.g. a classifier head) are averaged plainly.
    Returns (aggregate [P], share of update energy in the low-rank part)."""
    K = deltas.shape[0]
    w = torch.full((K,), 1.0 / K, dtype=deltas.dtype, device=deltas.device) if weights is None else weights
    out = deltas.T @ w                                          # coordinates outside the blocks: plain average
    low = total = 0.0
    for sl in blocks:
        M = deltas[:, sl].T                                     # D x K: one column per client
        L, S, _ = robust_pca(M)
        out[sl] = L @ w + beta * (S @ w)
        low += float((L ** 2).sum())
        total += float((L ** 2).sum() + (S ** 2).sum())
    return out, (low / total if total > 0 else float("nan"))


@register
@dataclass
class FedRPCA(Strategy):
    """FedRPCA: Robust-PCA split of the clients' adapter updates; low-rank parts averaged, sparse parts
    averaged and scaled by beta. ``blocks``: slices of the flat vector (``lib.peft.adapters.blocks``);
    without them the whole vector is one block."""
    beta: float = 2.0
    blocks: tuple = ()
    cosine_blocks: tuple = ()       # where the logged cosine of the updates is measured (default: ``blocks``)
    name = "fedrpca"

    def validate(self):
        super().validate()
        check_positive("beta", self.beta)

    def aggregate(self, x, state, results):
        D = stack_deltas(results)
        blocks = [sl for _, sl in self.blocks] if self.blocks else [slice(0, D.shape[1])]
        agg, low_share = fedrpca_combine(D, blocks, self.beta, sample_weights(results).to(D))
        state.setdefault("low_rank_share", []).append(low_share)
        state.setdefault("mean_cosine", []).append(mean_pairwise_cosine(D))
        cos_blocks = [sl for _, sl in self.cosine_blocks] if self.cosine_blocks else blocks
        state.setdefault("mean_cosine_blocks", []).append(mean_pairwise_cosine(D[:, _index(cos_blocks, D.shape[1])]))
        return x + self.server_lr * agg, state


@register
@dataclass
class TaskArithmetic(Strategy):
    """Task-arithmetic scaled averaging: x + beta * mean_k D_k (beta > 1 extrapolates the average).
    ``blocks``: scale only these slices (e.g. the adapters), average the rest plainly; without them the whole
    vector is scaled, which is FedAvg with server lr beta."""
    beta: float = 1.5
    blocks: tuple = ()
    cosine_blocks: tuple = ()       # where the logged cosine of the updates is measured (default: ``blocks``)
    name = "task_arithmetic"

    def validate(self):
        super().validate()
        check_positive("beta", self.beta)

    def aggregate(self, x, state, results):
        D = stack_deltas(results)
        blocks = [sl for _, sl in self.blocks] if self.blocks else [slice(0, D.shape[1])]
        idx = _index(blocks, D.shape[1])
        cos_idx = _index([sl for _, sl in self.cosine_blocks], D.shape[1]) if self.cosine_blocks else idx
        state.setdefault("mean_cosine", []).append(mean_pairwise_cosine(D))
        state.setdefault("mean_cosine_blocks", []).append(mean_pairwise_cosine(D[:, cos_idx]))
        agg = weighted_mean(D, sample_weights(results))
        agg[idx] = self.beta * agg[idx]
        return x + self.server_lr * agg, state


def _index(blocks, P: int) -> torch.Tensor:
    """The coordinates the blocks (slices) cover, in order."""
    return torch.cat([torch.arange(P)[sl] for sl in blocks]) if blocks else torch.arange(0)


def mean_pairwise_cosine(D: torch.Tensor) -> float:
    """Mean cosine similarity over distinct pairs of rows of D (clients' updates): FedRPCA's premise."""
    K = D.shape[0]
    if K < 2:
        return float("nan")
    U = torch.nn.functional.normalize(D, dim=1)
    C = U @ U.T
    return float((C.sum() - C.diagonal().sum()) / (K * (K - 1)))
