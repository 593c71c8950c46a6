"""The server's time on the simulated clock: per-step times of FedRevive's server work, measured once.

The engine charges a *model* of the server's work (``run_async(server_step_time=...)``): each aggregation
reports its counted synthesis steps and KD steps (``FedRevive.server_work``), and the server is busy for
``steps x time per step``. The per-step times are stated in the configuration, in simulated time units; this
module measures them once, on the run's device, so that the configuration can be calibrated and recorded::

    cal = calibrate(get_async_strategy("fedrevive", **kw), seconds_per_unit=client_task_seconds(...))
    run_async(..., server_step_time=cal["server_step_time"])        # and store `cal` with the run

``seconds_per_unit`` says how many wall seconds one simulated time unit stands for on this device. The delay
model's unit is the fastest clients' mean training task (``ref_steps`` local steps: 1.0 unit; 1.3 and 1.6 for
the slower tiers), so :func:`client_task_seconds` (the wall time of such a task here) is a natural choice.
The measurement is never read inside a run: runs stay deterministic.
"""
from __future__ import annotations

import copy
import time

import torch

from ..params import FlatModel
from .distill import distill
from .teachers import Teacher


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def calibrate(strategy, seconds_per_unit: float, device=None, repeats: int = 3, seed: int = 0) -> dict:
    """Measure seconds per synthesis step and per KD step of ``strategy`` (a FedRevive arm, with its model,
    synthesis and KD settings and ``num_teachers`` teachers) on ``device``, and convert them to time units
    with ``seconds_per_unit``. Teachers are the model's weights plus small seeded noise with the model's own
    buffers and random class proportions (the work per step does not depend on what they know).

    Returns {"server_step_time": {"synthesis": units per step, "kd": units per step}, "synthesis_s": seconds
    per step, "kd_s": ..., "seconds_per_unit", "device", "teachers", "repeats"}: numbers to print and store.
    Synthesis is 0 for an arm without synthesis (DD-FedRevive)."""
    from ..utils import default_device
    if not seconds_per_unit > 0:
        raise ValueError(f"seconds_per_unit must be > 0, got {seconds_per_unit}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = torch.device(device or default_device())
    st = copy.deepcopy(strategy)
    st.model = st.model.to(device)
    if st.kd_data is not None:
        st.kd_data = tuple(t.to(device) for t in st.kd_data)
    x = FlatModel(st.model).flat().to(device)
    state = st.init(x, 1)
    g = torch.Generator().manual_seed(seed)
    c = st.num_teachers
    qs = torch.distributions.Dirichlet(torch.full((st.num_classes,), 0.5)).sample((c,))
    teachers = [Teacher(i, x + 0.01 * torch.randn(x.shape, generator=g).to(device),
                        {k: v.clone() for k, v in st.fm.buffers.items()}, qs[i].to(device)) for i in range(c)]
    synth = state["synth"]
    out = {"seconds_per_unit": float(seconds_per_unit), "device": str(device), "teachers": c, "repeats": repeats}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if st.kd_data is None:
            synth.step(teachers, student_w=x)                      # warm-up (and a non-empty pool)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                synth.step(teachers, student_w=x)
            _sync(device)
            out["synthesis_s"] = (time.perf_counter() - t0) / (repeats * synth.cfg.g_steps)
        else:
            out["synthesis_s"] = 0.0
        rng = torch.Generator().manual_seed(seed + 1)
        aug = st._kd_augment(state)
        distill(st.fm, x, teachers, synth.pool, st.kd, rng, augment=aug)   # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            distill(st.fm, x, teachers, synth.pool, st.kd, rng, augment=aug)
        _sync(device)
        out["kd_s"] = (time.perf_counter() - t0) / (repeats * st.kd.iterations)
    out["server_step_time"] = {"synthesis": out["synthesis_s"] / seconds_per_unit, "kd": out["kd_s"] / seconds_per_unit}
    return out


def client_task_seconds(model, data, local, device=None, repeats: int = 3, seed: int = 0) -> float:
    """Wall seconds of one client's local training task (``local``: its steps, batch, optimizer) on ``data``
    and ``device``, the median of ``repeats`` after a warm-up: a measure of what one simulated time unit
    stands for (the delay model's fastest tier takes 1 unit for ``ref_steps`` steps)."""
    from ..client import local_train
    from ..utils import default_device
    device = torch.device(device or default_device())
    fm = FlatModel(copy.deepcopy(model).to(device))
    if hasattr(data, "to"):
        data = data.to(device)
    x = fm.flat()
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        local_train(fm, x, data, local, seed=seed + i)
        _sync(device)
        times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    return float(times[len(times) // 2])
