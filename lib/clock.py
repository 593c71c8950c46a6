"""Simulated time: how long a client takes to download, train and upload.

The synchronous loop asks the clock for each selected client's task time; a
round lasts as long as its slowest client. The asynchronous engine reuses the
same per-client costs to schedule events on its virtual clock.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClientClock:
    """Per-client seconds per local step, plus a shared link (bytes/s) and latency (s)."""

    step_time: np.ndarray
    bandwidth: float = 1e7
    latency: float = 0.0

    def __post_init__(self):
        self.step_time = np.asarray(self.step_time, dtype=float)
        if self.step_time.ndim != 1 or np.any(self.step_time < 0) or not np.all(np.isfinite(self.step_time)):
            raise ValueError("step_time must be a 1-D array of non-negative, finite seconds per step")
        if self.bandwidth <= 0 or self.latency < 0:
            raise ValueError(f"bandwidth must be > 0 and latency >= 0, got {self.bandwidth}, {self.latency}")

    @property
    def num_clients(self) -> int:
        return len(self.step_time)

    def task_time(self, client: int, num_steps: int, bytes_down: int, bytes_up: int) -> float:
        comm = (bytes_down + bytes_up) / self.bandwidth + 2 * self.latency
        return float(self.step_time[client] * num_steps + comm)

    @classmethod
    def uniform(cls, num_clients: int, step_time: float = 0.01, **kw) -> "ClientClock":
        return cls(np.full(num_clients, step_time), **kw)

    @classmethod
    def lognormal(cls, num_clients: int, step_time: float = 0.01, sigma: float = 1.0, seed: int = 0,
                  **kw) -> "ClientClock":
        """Heterogeneous devices: step times log-normal around ``step_time`` (median)."""
        rng = np.random.default_rng(seed)
        return cls(step_time * np.exp(sigma * rng.standard_normal(num_clients)), **kw)
