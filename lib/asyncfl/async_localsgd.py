"""Asynchronous Local-SGD with delayed Nesterov momentum and speed-adjusted local steps
(Liu et al. 2024, "Asynchronous Local-SGD Training for Language Modeling").

Each arrival's update D is a negative pseudo-gradient. Momentum is refreshed only every N
arrivals (delayed Nesterov); in between, updates are applied plainly:

    every arrival:      x <- x + (eta / N) D,   acc <- acc + D
    every N arrivals:   m <- beta m + acc / N;  x <- x + eta beta m;  acc <- 0

Local steps follow worker speed (dynamic local updates), as in ``speed.py``.
RECONSTRUCTED from the paper's description. The paper's outer constants were not available here;
the defaults give an effective step eta / (1 - beta) = 1, the same scale as the other methods
(eta = 1, beta = 0.9 has ten times that and degrades within a few time units in notebook 02).
"""
from dataclasses import dataclass

import torch

from .engine import AsyncStrategy
from .speed import SpeedAwareSteps


@dataclass
class AsyncLocalSGD(SpeedAwareSteps, AsyncStrategy):
    server_lr: float = 0.5
    server_momentum: float = 0.5
    delay: int = 5
    name = "async_localsgd"

    def __post_init__(self):
        super().__post_init__()
        if self.buffer_size != 1 or self.delay < 1 or not 0 <= self.server_momentum < 1:
            raise ValueError("async_localsgd needs buffer_size 1, delay >= 1 and server_momentum in [0, 1)")
        self.check_steps()

    def init(self, x, num_clients):
        return {"m": torch.zeros_like(x), "acc": torch.zeros_like(x), "count": 0, "speed": {}}

    def aggregate(self, x, state, buffer):
        (u,) = buffer
        x = x + (self.server_lr / self.delay) * u.delta
        acc, m, count = state["acc"] + u.delta, state["m"], state["count"] + 1
        if count % self.delay == 0:
            m = self.server_momentum * m + acc / self.delay
            x = x + self.server_lr * self.server_momentum * m
            acc = torch.zeros_like(acc)
        return x, {**state, "m": m, "acc": acc, "count": count}
