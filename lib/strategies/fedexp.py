"""FedExP (Jhunjhunwala et al. 2023): server step size from extrapolation (POCS).

    Dbar  = (1/M) sum_i D_i
    eta_g = max(1, sum_i ||D_i||^2 / (2 M ||Dbar||^2 + eps))
    x    <- x + eta_g Dbar

Clients are weighted equally, as in the paper. (The paper also evaluates the
average of the last two iterates; this module returns the plain iterate.)
"""
from dataclasses import dataclass

from .base import Strategy, check_positive, stack_deltas


@dataclass
class FedExP(Strategy):
    eps: float = 1e-3
    name = "fedexp"

    def validate(self):
        super().validate()
        check_positive("eps", self.eps)

    def step_size(self, deltas):
        m = deltas.shape[0]
        mean = deltas.mean(0)
        return max(1.0, float((deltas ** 2).sum() / (2 * m * (mean ** 2).sum() + self.eps)))

    def aggregate(self, x, state, results):
        deltas = stack_deltas(results)
        eta = self.step_size(deltas)
        return x + eta * deltas.mean(0), {**state, "last_step_size": eta}
