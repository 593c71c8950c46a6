"""FedProx (Li et al. 2020): each client minimises f_i(w) + (mu/2) ||w - x||^2.

The proximal gradient mu (w - x) is added in local training (``ClientHooks.prox_mu``);
aggregation is FedAvg's.
"""
from dataclasses import dataclass

from ..client import ClientHooks
from .base import Strategy


@dataclass
class FedProx(Strategy):
    mu: float = 0.01
    name = "fedprox"

    def validate(self):
        super().validate()
        if self.mu < 0:
            raise ValueError(f"FedProx mu must be >= 0, got {self.mu}")

    def configure_client(self, state, client_id):
        return ClientHooks(prox_mu=self.mu)
