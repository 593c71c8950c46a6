"""FedASMU (Liu et al. 2024): dynamic staleness-aware server mixing + device-side model mixing.

Server, on each arrival:   x <- (1 - a_i) x + a_i x_i
Device, halfway through local training: w <- (1 - g) w + g x_fresh (the server's newest model)

RECONSTRUCTED: the paper's exact formulas were not available. The mechanism as described is
implemented with a_i = a (tau_i + 1)^(-1/2) * r_i, where r_i = clip(EMA ||D|| / ||D_i||, 0.5, 1.5)
damps updates that are unusually large for their round (the "dynamic" part), and a fixed
device-side mixing weight g fetched at the midpoint of the task.
"""
from dataclasses import dataclass

from ..client import ClientHooks, local_train
from .engine import AsyncStrategy


@dataclass
class FedASMU(AsyncStrategy):
    mixing: float = 0.6
    device_mixing: float = 0.5
    name = "fedasmu"

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.mixing <= 1 or not 0 <= self.device_mixing <= 1:
            raise ValueError("mixing must be in (0, 1] and device_mixing in [0, 1]")
        if self.buffer_size != 1:
            raise ValueError("FedASMU applies every update on arrival: buffer_size must be 1")

    def init(self, x, num_clients):
        return {"norm_ema": None}

    def local_update(self, fm, x_sent, data, local, hooks, seed, client_id, x_fresh, steps):
        """Train half the steps, mix with the fresh global model, train the rest."""
        half = max(1, steps // 2)
        w = x_sent + local_train(fm, x_sent, data, local, ClientHooks(num_steps=half), seed=seed).delta
        w = (1 - self.device_mixing) * w + self.device_mixing * x_fresh
        if steps - half > 0:
            w = w + local_train(fm, w, data, local, ClientHooks(num_steps=steps - half), seed=seed + 1).delta
        return w - x_sent

    def aggregate(self, x, state, buffer):
        (u,) = buffer
        norm = float(u.delta.norm())
        ema = state["norm_ema"] if state["norm_ema"] is not None else norm
        r = min(1.5, max(0.5, ema / max(norm, 1e-12)))
        a = min(1.0, self.mixing * (u.staleness + 1) ** -0.5 * r)
        return (1 - a) * x + a * u.x_client, {**state, "norm_ema": 0.9 * ema + 0.1 * norm}
