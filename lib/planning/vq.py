"""A VQ-VAE over *sets* of hidden states: the summary code Z_S of a set of positions G_S.

Encoder: each hidden state (standardized) plus a learned slot embedding, one Transformer encoder
layer over the set, mean pooling, a linear map to z_e. Quantizer: the nearest of ``K`` codebook
entries e_k, straight-through gradients. Decoder: z_q back to every hidden state of the set.
The loss has the four terms the paper lists:

.. math:: \\mathcal L = \\underbrace{\\|\\hat X - X\\|^2}_{\\text{reconstruction}}
   + \\underbrace{\\|\\mathrm{sg}(z_e) - e_k\\|^2 + \\beta \\|z_e - \\mathrm{sg}(e_k)\\|^2}_{\\text{codebook, commitment}}
   + \\lambda_{\\text{div}} \\underbrace{\\tfrac{1}{K(K-1)} \\sum_{i \\ne j} \\cos^2(e_i, e_j)}_{\\text{diversity}}
   + \\lambda_{\\text{ent}} \\underbrace{(\\log K - H(\\bar q))}_{\\text{anti-collapse}},

where :math:`\\bar q` is the batch mean of the soft assignments softmax(-||z_e - e_k||^2). Codes
that go unused for a while are re-seeded from encoder outputs of the current batch (a standard
restart), which the entropy term alone does not always prevent on small data.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import progress


class SetVQVAE(nn.Module):
    def __init__(self, d: int, set_size: int, K: int, width: int = 64, code_dim: int = 16):
        super().__init__()
        if K < 2 or set_size < 1:
            raise ValueError(f"need K >= 2 codes and a set size >= 1, got K={K}, set_size={set_size}")
        self.d, self.S, self.K = d, set_size, K
        self.register_buffer("mu", torch.zeros(d))
        self.register_buffer("sd", torch.ones(d))
        self.inp = nn.Linear(d, width)
        self.slot = nn.Parameter(torch.randn(set_size, width) * 0.02)
        self.enc = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.to_code = nn.Linear(width, code_dim)
        self.codebook = nn.Parameter(torch.randn(K, code_dim))
        self.dec = nn.Sequential(nn.Linear(code_dim, width), nn.GELU(), nn.Linear(width, set_size * d))

    def _check(self, X):
        if X.dim() != 3 or X.shape[1:] != (self.S, self.d):
            raise ValueError(f"expected sets of shape [N, {self.S}, {self.d}], got {tuple(X.shape)}")

    def encode(self, X):
        h = self.enc(self.inp((X - self.mu) / self.sd) + self.slot)
        return self.to_code(h.mean(1))

    def assign(self, z):
        """Index of the nearest codebook entry for each row of ``z``, and the squared distances."""
        dist = (z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.T + self.codebook.pow(2).sum(1))
        return dist.argmin(1), dist

    def loss(self, X, beta: float = 0.25, w_div: float = 0.1, w_ent: float = 0.1):
        self._check(X)
        z = self.encode(X)
        k, dist = self.assign(z)
        e = self.codebook[k]
        zq = z + (e - z).detach()                                   # straight-through
        rec = F.mse_loss(self.dec(zq).view_as(X), (X - self.mu) / self.sd)
        vq = F.mse_loss(e, z.detach()) + beta * F.mse_loss(z, e.detach())
        cb = F.normalize(self.codebook, dim=1)
        cos = cb @ cb.T
        div = (cos.pow(2).sum() - cos.diagonal().pow(2).sum()) / (self.K * (self.K - 1))
        qbar = F.softmax(-dist, dim=1).mean(0)
        ent = math.log(self.K) + (qbar * (qbar + 1e-12).log()).sum()
        return rec + vq + w_div * div + w_ent * ent, k, z

    @torch.no_grad()
    def codes(self, X, batch_size: int = 4096):
        """The code Z_S of each set."""
        self._check(X)
        self.eval()
        return torch.cat([self.assign(self.encode(X[i:i + batch_size]))[0] for i in range(0, len(X), batch_size)])


def train_vq(X, K: int, steps: int = 400, batch_size: int = 256, lr: float = 2e-3, seed: int = 0,
             restart_every: int = 50, desc: str = "train VQ-VAE", **kw) -> SetVQVAE:
    """Fit a :class:`SetVQVAE` with ``K`` codes to the sets ``X`` [N, S, d] (deterministic under ``seed``)."""
    X = torch.as_tensor(X, dtype=torch.float32)
    if X.dim() != 3 or len(X) < 2:
        raise ValueError(f"expected at least two sets of shape [N, S, d], got {tuple(X.shape)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    vq = SetVQVAE(X.shape[2], X.shape[1], K, **kw)
    vq.mu.copy_(X.reshape(-1, X.shape[2]).mean(0))
    vq.sd.copy_(X.reshape(-1, X.shape[2]).std(0).clamp_min(1e-6))
    with torch.no_grad():                                           # codebook from encoder outputs
        vq.codebook.copy_(vq.encode(X[torch.randint(0, len(X), (K,), generator=g)]))
    opt = torch.optim.Adam(vq.parameters(), lr=lr)
    used = torch.zeros(K)
    vq.train()
    for step in progress(range(steps), desc=desc):
        xb = X[torch.randint(0, len(X), (batch_size,), generator=g)]
        loss, k, z = vq.loss(xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        used += torch.bincount(k, minlength=K).float()
        if restart_every and (step + 1) % restart_every == 0 and step + 1 < steps:
            dead = (used == 0).nonzero().flatten()
            if len(dead):
                with torch.no_grad():
                    vq.codebook[dead] = z.detach()[torch.randint(0, len(z), (len(dead),), generator=g)]
            used.zero_()
    vq.eval()
    return vq
