"""Ravan's federated round (arXiv 2506.05568): clients train the heads' cores H_i and scalings s_i of
:class:`lib.peft.adapters.AdapterLinear` (method "ravan"), then upload s_i H_i::

    client k:  (H_i^k, s_i^k) <- local training from (H_i, 1)
               (the scalings' step is ``scaling_lr`` x the cores'; a client with a head budget trains
                only that many heads, drawn at random each round, the others frozen)
               upload  s_i^k H_i^k          (fold_flat: the scaling folded into the core, s reset to 1)
    server:    H_i <- sum_k p_k s_i^k H_i^k,  s_i = 1      (FedAvg of the folded uploads: exact)

The strategy is FedAvg with that fold in the client's update. Why the scalings get their own step size:
with Adam a coordinate moves by about the local lr per step, so at lr 1e-3 and a few local steps s_i can
move by a few thousandths before the fold resets it to 1, and the heads could never be weighted
differently (``scaling_lr = 1``: the single-lr ablation). ``last_scaling_spread`` records, after each
round, how far the clients' scalings moved (mean over clients, layers and heads of |s_i - 1|).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..client import local_train
from ..strategies import register
from ..strategies.fedavg import FedAvg
from ..utils import derive_seed
from .adapters import fold_flat, ravan_slices


@register
@dataclass
class Ravan(FedAvg):
    name = "ravan"
    scaling_lr: float = 1.0                       # the scalings' step size, a multiple of the local lr
    head_budget: dict = field(default_factory=dict)   # client id -> heads it trains (compute heterogeneity)
    last_scaling_spread: float = float("nan")

    def __post_init__(self):
        if not self.scaling_lr >= 0:
            raise ValueError(f"scaling_lr is a multiple of the local lr (>= 0), got {self.scaling_lr}")
        for cid, k in self.head_budget.items():
            if int(k) < 1:
                raise ValueError(f"client {cid}: a head budget must be at least 1 head, got {k}")

    def lr_scale(self, fm, x: torch.Tensor, client_id: int, seed: int) -> torch.Tensor | None:
        """Per-coordinate step multipliers for this client: scalings x ``scaling_lr``; heads outside the
        client's budget (drawn with ``seed``) x 0. None when every coordinate takes the local lr."""
        budget = self.head_budget.get(int(client_id))
        if self.scaling_lr == 1.0 and budget is None:
            return None
        scale = torch.ones_like(x)
        rng = np.random.default_rng(derive_seed(seed, 7))
        for core, scal, heads in ravan_slices(fm):
            scale[scal] = self.scaling_lr
            if budget is not None and budget < heads:
                frozen = rng.permutation(heads)[budget:]
                per_head = (core.stop - core.start) // heads
                for h in frozen:
                    scale[core.start + h * per_head: core.start + (h + 1) * per_head] = 0.0
                    scale[scal.start + h] = 0.0
        return scale

    def local_update(self, fm, x, data, local, hooks, seed, client_id, buffers=None):
        hooks.lr_scale = self.lr_scale(fm, x, client_id, seed)
        r = local_train(fm, x, data, local, hooks, seed=seed, client_id=client_id, buffers=buffers)
        w = x + r.delta
        r.extra["scaling_spread"] = float(torch.cat([(w[s] - 1).abs() for _, s, _ in ravan_slices(fm)]).mean())
        r.delta = fold_flat(fm, w) - x
        return r

    def aggregate(self, x, state, results):
        self.last_scaling_spread = float(np.mean([r.extra["scaling_spread"] for r in results]))
        return super().aggregate(x, state, results)
