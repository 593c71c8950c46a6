"""Numerical-simulation pieces for the dynamical-system view of FL (FedECADO line).

Federated training is simulated as a circuit; a learning rate is a time step and a
momentum is an inductance. Three small, separately tested pieces:

* :class:`StepController` — accept or reject a step by its local truncation error (LTE)
  and rescale it:  accept if LTE <= gamma;  dt <- dt * clip(safety * sqrt(gamma / LTE)).
  (Forward and Backward Euler are first-order: LTE ~ dt^2, hence the square root.)
* :func:`adaptive_step` — the retry loop around one step, shared by every client integrator.
* :func:`euler_lte` — LTE estimate of one Euler step from the vector field at both ends,
  LTE ~ (dt / 2) ||F(z_{n+1}) - F(z_n)|| (2-norm, or the infinity norm the author's optimizer uses).
* :func:`closed_form_step` — the first author's optimizer (ECCO-DNN, ``calcDeltat``) sets the step
  in closed form instead of accepting or rejecting it:  dt = min(2 gamma / ||F_n - F_{n-1}||_inf, 0.5).
* :func:`backward_euler_window` — the server node integrated over a window [0, T] in LTE-controlled
  Backward-Euler sub-steps, driven by a time-varying forcing (FedECADO's multi-rate server).
* :func:`no_overshoot_step` — the stability side of the step: dt <= C / g.
* :func:`critical_inductance` and :func:`loop_sensitivity` — the client loop
  C dx/dt = -g (x - a) - I,  L dI/dt = x - x_c  (a linearised client of curvature g)
  is critically damped at L = 4C / g^2; at that L, after simulated time T from rest,
  its flow's sensitivity to the server point is dI/dx_c = -g (1 - (1 + lam T) e^{-lam T}),
  lam = g / (2C).

The paper's exact forms are not public in full; these are the workbook's
reconstruction of them (see notebook 04).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class StepController:
    """LTE-based step-size control with one tolerance ``gamma``."""

    gamma: float
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 2.0
    dt_min: float = 1e-8
    dt_max: float = 1e4

    def __post_init__(self):
        if not (isinstance(self.gamma, (int, float)) and math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"the LTE tolerance gamma must be a positive number, got {self.gamma!r}")
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {self.safety}")
        if not 0 < self.min_factor < 1 < self.max_factor:
            raise ValueError(f"need 0 < min_factor < 1 < max_factor, got {self.min_factor}, {self.max_factor}")

    def factor(self, lte: float) -> float:
        """The rescaling factor safety * sqrt(gamma / LTE), clipped to [min_factor, max_factor]."""
        if not math.isfinite(lte):
            return self.min_factor
        if lte <= 0:
            return self.max_factor
        return min(self.max_factor, max(self.min_factor, self.safety * math.sqrt(self.gamma / lte)))

    def step(self, dt: float, lte: float) -> tuple[bool, float]:
        """(accepted, next dt) for a step of size ``dt`` whose LTE estimate is ``lte``."""
        accepted = math.isfinite(lte) and lte <= self.gamma
        return accepted, min(self.dt_max, max(self.dt_min, dt * self.factor(lte)))


def adaptive_step(ctrl: StepController, dt: float, attempt, max_tries: int):
    """Retry ``attempt(dt) -> (candidate, lte)`` with rescaled steps until the LTE test accepts.

    After ``max_tries`` attempts the last candidate is taken anyway. Returns
    (candidate, the dt it used, the next dt, number of attempts).
    """
    for k in range(1, max_tries + 1):
        candidate, lte = attempt(dt)
        ok, dt_next = ctrl.step(dt, lte)
        if ok or k == max_tries:
            return candidate, dt, dt_next, k
        dt = dt_next


def euler_lte(dt: float, f_old: torch.Tensor, f_new: torch.Tensor, norm: float = 2) -> float:
    """LTE of an Euler step: (dt / 2) ||F(z_{n+1}) - F(z_n)|| (``norm`` 2 or ``math.inf``)."""
    return 0.5 * dt * float(torch.linalg.vector_norm(f_new - f_old, ord=norm))


def closed_form_step(gamma: float, f_new: torch.Tensor, f_old: torch.Tensor, cap: float = 0.5) -> float:
    """dt = min(2 gamma / ||F_n - F_{n-1}||_inf, cap): the LTE bound solved for dt, no accept/reject.

    As in the first author's ECCO-DNN optimizer (``calcDeltat``), from the velocities of two
    consecutive steps; a step linear in gamma (the accept/reject controller's is ~ sqrt(gamma))."""
    if not gamma > 0 or not cap > 0:
        raise ValueError(f"need gamma > 0 and cap > 0, got {gamma}, {cap}")
    d = float(torch.linalg.vector_norm(f_new - f_old, ord=math.inf))
    return cap if not d > 0 else min(2.0 * gamma / d, cap)


def backward_euler_window(forcing, sensitivity: float, t_end: float, h0: float, ctrl: StepController,
                          capacitance: float = 1.0, norm: float = 2, max_steps: int = 64):
    """Integrate C y' = F(tau) - G y from y(0) = 0 over [0, t_end] in Backward-Euler sub-steps.

    ``forcing(tau)`` is the (time-varying) drive F, ``sensitivity`` G >= 0 the linearised response.
    One sub-step of size h:  y+ = (y + (h/C) F(tau + h)) / (1 + h G / C); its LTE is
    (h/2) ||v+ - v|| with v = (F - G y)/C, accepted when <= gamma and rescaled by ``ctrl``; the last
    sub-step is shortened to end at t_end; after ``max_steps`` sub-steps the rest of the window is
    taken in one step. Returns (y, the next h, sub-steps taken, rejected)."""
    if not t_end > 0 or not h0 > 0:
        raise ValueError(f"need t_end > 0 and h0 > 0, got {t_end}, {h0}")
    c, G = capacitance, sensitivity
    tau, h, y = 0.0, h0, None
    f = forcing(0.0)
    y = torch.zeros_like(f)
    v = f / c
    taken = rejected = 0
    while tau < t_end * (1 - 1e-12):
        last = taken + 1 >= max_steps
        h = t_end - tau if last else min(h, t_end - tau)

        def attempt(h):
            f1 = forcing(tau + h)
            y1 = (y + (h / c) * f1) / (1 + h * G / c)
            v1 = (f1 - G * y1) / c
            return (y1, v1, h), euler_lte(h, v, v1, norm)

        (y, v, used), h_used, h_next, tries = adaptive_step(ctrl, h, attempt, 1 if last else 6)
        tau += h_used
        taken, rejected = taken + 1, rejected + tries - 1
        h = h_next
    return y, h, taken, rejected


def no_overshoot_step(curvature: float | None, capacitance: float = 1.0) -> float:
    """dt <= C / g: a Forward-Euler step that does not overshoot along curvature g (inf if g unknown).

    The LTE test bounds accuracy; this bounds stability, as an explicit circuit simulator
    must (a very loose gamma would otherwise let dt grow past the stability limit 2C/g).
    """
    return capacitance / curvature if curvature and curvature > 0 else float("inf")


def critical_inductance(curvature: float, capacitance: float = 1.0) -> float:
    """L = 4 C / g^2: the series-L / parallel-(g, C) client loop is critically damped.

    The loop C L x'' + g L x' + x = 0 has real roots, so no overshoot, iff g^2 L^2 >= 4 C L, i.e.
    L >= 4 C / g^2; the critical value is the smallest (fastest) such L, and a smaller L rings."""
    if not curvature > 0:
        raise ValueError(f"curvature must be positive, got {curvature}")
    return 4.0 * capacitance / curvature ** 2


def loop_sensitivity(curvature: float, sim_time: float, capacitance: float = 1.0) -> float:
    """G = -dI/dx_c of a critically damped client loop after ``sim_time`` from rest.

    0 for T = 0 (the flow has not reacted yet), -> g as T -> infinity (the flow has
    settled at -grad f_i(x_c)). Clients that simulated more time (processed more
    data) are more sensitive: this is the aggregate sensitivity's weighting.
    """
    lam_t = curvature * sim_time / (2 * capacitance)
    return curvature * (1.0 - (1.0 + lam_t) * math.exp(-lam_t))


def damped_loop(curvature: float, inductance: float, x_c: float = 0.0, optimum: float = 1.0,
                capacitance: float = 1.0, dt: float = 1e-3, t_end: float = 20.0):
    """Forward-Euler trajectory (t, x, I) of the scalar client loop from rest at x = x_c, I = 0.

    Used to show (and test) that L = 4C/g^2 gives no overshoot of the flow I while a smaller L rings.
    """
    n = int(round(t_end / dt))
    x, i_flow = x_c, 0.0
    ts, xs, is_ = [0.0], [x], [i_flow]
    for k in range(1, n + 1):
        dx = (-curvature * (x - optimum) - i_flow) / capacitance
        di = (x - x_c) / inductance
        x, i_flow = x + dt * dx, i_flow + dt * di
        ts.append(k * dt)
        xs.append(x)
        is_.append(i_flow)
    return ts, xs, is_
