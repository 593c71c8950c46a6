"""FedBuff (Nguyen et al. 2022): buffer K updates, down-weight stale ones, take a server step.

    D = (1/K) sum_k s(tau_k) D_k,   s(tau) = (1 + tau)^(-1/2)
    m <- beta m + D  (optional server momentum);   x <- x + eta m
"""
from dataclasses import dataclass

import torch

from . import staleness as st
from .engine import AsyncStrategy


@dataclass
class FedBuff(AsyncStrategy):
    buffer_size: int = 10
    server_lr: float = 1.0
    server_momentum: float = 0.0
    name = "fedbuff"

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.server_momentum < 1:
            raise ValueError(f"server_momentum must be in [0, 1), got {self.server_momentum}")

    def init(self, x, num_clients):
        return {"m": torch.zeros_like(x)}

    def aggregate(self, x, state, buffer):
        d = torch.stack([st.fedbuff(u.staleness) * u.delta for u in buffer]).mean(0)
        m = self.server_momentum * state["m"] + d
        return x + self.server_lr * m, {**state, "m": m}
