"""FedECADO (Agarwal, Joshi & Pileggi, ICML 2025) — the workbook's reconstruction.

FL as a circuit: client i's state follows its gradient flow  C dx_i/dt = -grad f_i(x_i),
the server point x_c is the node where the clients' flows meet (equilibrium:
sum_i p_i grad f_i(x_c) = 0). Two ideas of the paper, in the form used here:

Multi-rate integration (client, Forward Euler, its own LTE-controlled step):

    repeat tau_i times (tau_i = the client's compute budget):
        g0 = grad f_i(x; b);   x1 = x - (dt/C) g0;   g1 = grad f_i(x1; b)      (same batch b)
        LTE = (dt / 2C) ||g1 - g0||;  accept if LTE <= gamma;  dt <- dt * clip(0.9 sqrt(gamma / LTE))
        dt <- min(dt, C / g) with g = ||g1 - g0|| / ||x1 - x||     (stability: no overshoot)
    report D_i = x_i - x_c, simulated time T_i = sum of accepted dt, curvature g_i = ||g1 - g0|| / ||x1 - x||

Aggregate sensitivity (server, Backward Euler with step H): a linearised client of curvature g
that integrated for T moves D = -(1 - e^{-gT}) grad f_i(x_c) / g, so the flow it signals is

    u_i = -grad f_i(x_c) ~= g_i D_i / (1 - e^{-g_i T_i})      (-> D_i / T_i for short windows)

and a Backward-Euler step of the server node, linearised with sensitivity -g_i, is

    x_c <- x_c + sum_i p_i u_i / (C/H + sum_i p_i g_i).

A client that ran more steps (processed more data) has a larger T_i and its displacement
is de-weighted accordingly: objective inconsistency is corrected in continuous time.

Where the tolerance acts. FedECADO's paper gives the clients their learning rates and epochs as
inputs and lets the tolerance act on the *server's* integration; two switches select that form
(notebook 04's FedECADO arm), the defaults keep the workbook's first reading (gamma on the client):

* ``client="sgd"`` — tau_i plain SGD steps at the given lr (dt = lr, C = 1), so T_i = lr tau_i;
  curvature g_i = ||grad f_i(x_i; b) - grad f_i(x_c; b)|| / ||D_i|| on the last batch b (two more
  gradients per round: the secant across the whole displacement, what the linearised model assumes);
* ``server="window"`` — the server node  C dy/dtau = sum_i p_i (u_i - g_i y)  (y = x_c - x_c(round
  start)) integrated by Backward Euler over [0, max_i T_i] in sub-steps whose LTE is held to gamma
  (``lib.dynamics.backward_euler_window``); the sub-step carries over between rounds. Each client's flow
  u_i is held over the whole window, also past its own T_i (our reading): for small g_i T_i the step is
  about max_i T_i * sum_i p_i D_i / T_i, FedNova's normalisation with the longest window, not the mean one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..client import ClientHooks, ClientResult, batch_gradient, batches
from ..dynamics import StepController, adaptive_step, backward_euler_window, euler_lte, no_overshoot_step
from .base import Strategy, check_positive, sample_weights


def secant_curvature(g0: torch.Tensor, g1: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor) -> float:
    """||g1 - g0|| / ||x1 - x0||: the curvature along the step (both gradients on the same batch)."""
    dx = float(torch.linalg.vector_norm(x1 - x0))
    return float(torch.linalg.vector_norm(g1 - g0)) / dx if dx > 0 else float("nan")


def minibatch_oracle(fm, data, buffers):
    """(w, batch indices) -> (loss, gradient) of a client's mini-batch cross-entropy."""
    return lambda w, idx: batch_gradient(fm, w, data, idx, buffers)


def developed_fraction(curvature: float, sim_time: float) -> float:
    """(1 - e^{-gT}) / (gT): how much of its gradient a linear client's mean velocity shows."""
    gt = curvature * sim_time
    return 1.0 if gt < 1e-8 else -math.expm1(-gt) / gt


@dataclass
class FedECADO(Strategy):
    gamma: float = 0.1          # client LTE tolerance
    server_step: float = 10.0   # H, the server's Backward-Euler time step
    dt0: float = 0.01           # first client step before any has been adapted
    capacitance: float = 1.0
    max_tries: int = 6          # rejected steps retried at most this often, then accepted
    client: str = "lte"         # or "sgd": the paper's clients (lr and steps are inputs)
    server: str = "one_step"    # or "window": the paper's server (gamma bounds its sub-steps' LTE)
    name = "fedecado"

    def validate(self):
        check_positive("gamma", self.gamma)
        check_positive("server_step", self.server_step)
        check_positive("dt0", self.dt0)
        check_positive("capacitance", self.capacitance)
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {self.max_tries}")
        if self.client not in ("lte", "sgd"):
            raise ValueError(f"client must be 'lte' or 'sgd', got {self.client!r}")
        if self.server not in ("one_step", "window"):
            raise ValueError(f"server must be 'one_step' or 'window', got {self.server!r}")

    def init(self, x, num_clients):
        return {"dt": {}, "H": self.server_step, "history": []}

    def configure_client(self, state, client_id):
        return ClientHooks(state={"dt": state["dt"].get(client_id, self.dt0)})

    oracle = staticmethod(minibatch_oracle)   # tests swap in a quadratic's gradient

    def local_update(self, fm, x_c, data, local, hooks, seed, client_id, buffers=None):
        if self.client == "sgd":
            return self._sgd_update(fm, x_c, data, local, hooks, seed, client_id, buffers)
        ctrl, c = StepController(self.gamma), self.capacitance
        gen, grad = torch.Generator().manual_seed(seed), self.oracle(fm, data, buffers)
        steps = hooks.num_steps or local.num_steps(len(data))
        x, dt = x_c.detach().clone(), hooks.state["dt"]
        sim_time, evals, rejected, total, curv = 0.0, 0, 0, 0.0, []
        for idx in batches(len(data), local.batch_size, steps, gen):
            loss, g0 = grad(x, idx)
            evals += 1

            def attempt(dt):
                x1 = x - (dt / c) * g0
                g1 = grad(x1, idx)[1]
                return (x1, g1), euler_lte(dt, -g0 / c, -g1 / c)

            (x1, g1), dt, dt_next, tries = adaptive_step(ctrl, dt, attempt, self.max_tries)
            evals, rejected = evals + tries, rejected + tries - 1
            curv.append(secant_curvature(g0, g1, x, x1))
            x, sim_time, total = x1, sim_time + dt, total + loss
            dt = min(dt_next, no_overshoot_step(curv[-1], c))
        curvature = float(torch.tensor(curv).nanmedian())
        return ClientResult(client_id, x - x_c, len(data), steps, total / steps, sim_time / steps, 0.0, None,
                            {"sim_time": sim_time, "curvature": curvature, "dt": dt, "grad_evals": evals,
                             "rejected": rejected})

    def _sgd_update(self, fm, x_c, data, local, hooks, seed, client_id, buffers=None):
        """The paper's client: tau_i SGD steps at lr (its simulated time lr tau_i), then the secant
        curvature across its displacement on the last batch."""
        gen, grad = torch.Generator().manual_seed(seed), self.oracle(fm, data, buffers)
        steps = hooks.num_steps or local.num_steps(len(data))
        if steps < 1:
            raise ValueError(f"a FedECADO client needs at least one local step, got {steps}")
        x, total = x_c.detach().clone(), 0.0
        for idx in batches(len(data), local.batch_size, steps, gen):
            loss, g = grad(x, idx)
            x, total = x - local.lr * g, total + loss
        g_end, g_start = grad(x, idx)[1], grad(x_c, idx)[1]
        curvature = secant_curvature(g_start, g_end, x_c, x)
        sim_time = local.lr * steps
        return ClientResult(client_id, x - x_c, len(data), steps, total / steps, local.lr, 0.0, None,
                            {"sim_time": sim_time, "curvature": curvature if curvature == curvature else 0.0,
                             "dt": local.lr, "grad_evals": steps + 2, "rejected": 0})

    def aggregate(self, x, state, results):
        p = sample_weights(results)
        g = torch.tensor([r.extra["curvature"] for r in results], dtype=x.dtype)
        frac = torch.tensor([developed_fraction(r.extra["curvature"], r.extra["sim_time"]) for r in results],
                            dtype=x.dtype)
        t = torch.tensor([r.extra["sim_time"] for r in results], dtype=x.dtype)
        u = torch.stack([r.delta for r in results]) / (frac * t)[:, None]     # = g D / (1 - e^{-gT})
        H, sub = state.get("H", self.server_step), {}
        if self.server == "window":     # C y' = sum_i p_i (u_i - g_i y) over [0, max T_i], LTE <= gamma
            drive = p @ u
            step, H, n_sub, rej = backward_euler_window(lambda tau: drive, float(p @ g), float(t.max()), H,
                                                        StepController(self.gamma), self.capacitance)
            sub = {"server_substeps": n_sub, "server_rejected": rej, "server_window": float(t.max())}
        else:
            step = (p @ u) / (self.capacitance / self.server_step + float(p @ g))
        dts = dict(state["dt"])
        dts.update({r.client_id: r.extra["dt"] for r in results})
        log = {"server_step": H, "curvature": float(g.median()),
               "client_dt": float(torch.tensor([r.extra["dt"] for r in results]).median()),
               "grad_evals": sum(r.extra.get("grad_evals", r.num_steps) for r in results), **sub}
        return x + step, {**state, "dt": dts, "H": H, "history": state["history"] + [log]}
