"""AFL-DW: FedRevive without distillation (its decisive ablation).

    x <- x + eta * mean_buffer[(1 - beta(tau)) D],   beta = FedRevive's cosine schedule
    (beta(0) = 0, beta(s_max) = 1/2, beta(>= 2 s_max) = 1); B = 1, eta = 0.1 in the paper's code.
"""
from dataclasses import dataclass

import torch

from .engine import AsyncStrategy
from .staleness import fedrevive_beta


@dataclass
class AFLDW(AsyncStrategy):
    server_lr: float = 0.1
    s_max: float = 75.0
    schedule: str = "cosine"
    beta_factor: float | None = None      # the authors' adaptive_beta_factor (staleness.fedrevive_beta)
    name = "afl_dw"

    def __post_init__(self):
        super().__post_init__()
        # validates s_max, the schedule name and its factor
        fedrevive_beta(0, self.s_max, self.schedule, self.beta_factor, 1, self.buffer_size)

    def aggregate(self, x, state, buffer):
        k = state.get("concurrency") if isinstance(state, dict) else None
        d = torch.stack([(1 - fedrevive_beta(u.staleness, self.s_max, self.schedule, self.beta_factor, k,
                                             self.buffer_size)) * u.delta for u in buffer]).mean(0)
        return x + self.server_lr * d, state
