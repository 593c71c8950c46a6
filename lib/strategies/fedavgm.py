"""FedAvgM (Hsu et al. 2019): server heavy-ball momentum on the averaged update.

    D = sum_i p_i D_i;   m <- b m + D;   x <- x + eta m
"""
from dataclasses import dataclass

from .base import Strategy, check_unit, sample_weights, stack_deltas, weighted_mean


@dataclass
class FedAvgM(Strategy):
    server_momentum: float = 0.9
    name = "fedavgm"

    def validate(self):
        super().validate()
        check_unit("server_momentum", self.server_momentum)

    def init(self, x, num_clients):
        return {"m": x.new_zeros(x.shape)}

    def aggregate(self, x, state, results):
        d = weighted_mean(stack_deltas(results), sample_weights(results))
        m = self.server_momentum * state["m"] + d
        return x + self.server_lr * m, {**state, "m": m}
