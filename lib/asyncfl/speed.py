"""Server-side speed tracking and speed-aware local steps (FedCompass, DyLU of async Local-SGD).

The server keeps an EMA of each client's seconds per local step, measured from the tasks it
has seen, and asks a client for Q_i = clip(round(q_ref * median_speed / speed_i), q_min, q_max)
steps, so fast and slow clients need about the same time per task. Unknown clients get q_ref.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..client import ClientHooks


def observe(speeds: dict, client: int, train_time: float, steps: int, ema: float = 0.5) -> None:
    per_step = train_time / max(steps, 1)
    speeds[client] = per_step if client not in speeds else ema * speeds[client] + (1 - ema) * per_step


def assign_steps(speeds: dict, client: int, q_ref: int, q_min: int, q_max: int) -> int:
    if not 1 <= q_min <= q_ref <= q_max:
        raise ValueError(f"need 1 <= q_min <= q_ref <= q_max, got {q_min}, {q_ref}, {q_max}")
    if client not in speeds or not speeds:
        return q_ref
    median = float(np.median(list(speeds.values())))
    return int(np.clip(round(q_ref * median / max(speeds[client], 1e-12)), q_min, q_max))


@dataclass
class SpeedAwareSteps:
    """Mixin for strategies that schedule local steps by client speed (FedCompass, async Local-SGD)."""

    q_ref: int = 20
    q_min: int = 5
    q_max: int = 40

    def check_steps(self) -> None:
        assign_steps({}, 0, self.q_ref, self.q_min, self.q_max)

    def dispatch(self, state, client_id, now):
        return ClientHooks(num_steps=assign_steps(state["speed"], client_id, self.q_ref, self.q_min, self.q_max))

    def on_arrival(self, state, update):
        observe(state["speed"], update.client_id, update.train_time, update.num_steps)
