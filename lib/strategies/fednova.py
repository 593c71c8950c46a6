"""FedNova (Wang et al. 2020): normalise each update by its amount of local work.

    a_i = [tau_i - rho (1 - rho^tau_i) / (1 - rho)] / (1 - rho)    (= tau_i for plain SGD)
    d_i = D_i / a_i;     tau_eff = sum_i p_i a_i
    x  <- x + eta tau_eff sum_i p_i d_i

Clients that run more steps no longer pull the average towards their own
optimum (objective inconsistency).
"""
from dataclasses import dataclass

import torch

from .base import Strategy, sample_weights, stack_deltas


def normalized_steps(tau: int, rho: float) -> float:
    """a_i of FedNova for tau local steps of SGD with momentum rho."""
    if rho == 0:
        return float(tau)
    return (tau - rho * (1 - rho ** tau) / (1 - rho)) / (1 - rho)


@dataclass
class FedNova(Strategy):
    name = "fednova"

    def aggregate(self, x, state, results):
        p = sample_weights(results)
        a = torch.tensor([normalized_steps(r.num_steps, r.momentum) for r in results], device=x.device, dtype=x.dtype)
        d = stack_deltas(results) / a[:, None]
        tau_eff = (p * a).sum()
        return x + self.server_lr * tau_eff * (p @ d), state
