"""Synchronous FedAvg on the asynchronous engine's clock.

A cohort of K clients starts on the same version; the server waits for all K
(a round lasts as long as its slowest client), then x <- x + eta sum_i p_i D_i.
"""
from dataclasses import dataclass

import torch

from .engine import AsyncStrategy


@dataclass
class SyncFedAvg(AsyncStrategy):
    name = "fedavg_sync"
    synchronous = True

    def aggregate(self, x, state, buffer):
        n = torch.tensor([float(u.num_samples) for u in buffer], dtype=x.dtype)
        d = (n / n.sum()) @ torch.stack([u.delta for u in buffer])
        return x + self.server_lr * d, state
