"""What a configuration will cost, checked before any work: memory, time, and a stop when it won't fit.

Each notebook's configuration cell counts its work (``Work``: local SGD steps, examples evaluated,
per-client vectors kept) from its own sizes and calls :func:`plan`. The plan

* measures the cost of one local step and of evaluating a batch *on the device the run will use*
  (a few steps of the real ``local_train``/``evaluate`` on random inputs of the dataset's shape),
  so on a GPU machine the estimate is a measurement of that GPU, on a CPU of that CPU;
* estimates memory: the device holds the model, about ten model-sized vectors (server model, client
  weights, gradient, momentum, strategy state), the data and the activations of a batch (counted
  with forward hooks); the host holds the data and the per-client vectors (``lib.clientstore``);
* stops (:class:`BudgetError`) when the host or device memory would not suffice, or when the
  estimated time exceeds ``WORKBOOK_MAX_HOURS`` (default 8), saying what to shrink.

``assumed_gpu_hours`` gives the same estimate for one H100 when none is at hand, from FLOP counts
and an assumed per-step floor (the constants below; not measured here). The README's table of
full-profile costs comes from ``scripts/plan.py``, which runs every notebook's configuration cell.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch

# Assumed for one H100 when no GPU is at hand (NOT measured here): sustained fp32/TF32 throughput,
# and a floor per local step (kernel launches and the functional-call overhead of small models).
SIZED_PROFILES = ("quick", "smoke")   # profiles sized to minutes by design: a time estimate over the limit warns
GPU_ASSUMED = {"flops_per_s": 40e12, "step_floor_s": {"mlp": 3e-4, "cnn28": 1e-3, "cnn32": 1e-3,
                                                      "textcnn": 1e-3, "resnet18": 5e-3},
               "device_bytes": 80e9}


class BudgetError(RuntimeError):
    """The configuration does not fit this machine (memory) or the time budget; the message says what to shrink."""


@dataclass
class Work:
    """A configuration's work, counted by the notebook from its sizes."""

    runs: int                     # training runs (seeds x arms x settings)
    steps: int                    # local SGD steps over all runs (all clients, all rounds)
    eval_examples: int            # test examples evaluated over all runs (forward only)
    num_clients: int = 0
    client_vectors: int = 0       # model-sized vectors kept per client (caches, control variates)
    extra_steps: int = 0          # other forward+backward batch steps (distillation, generators)
    note: str = ""                # what was counted, in words


@dataclass
class Plan:
    notebook: str
    profile: str
    device: str
    model: str
    params: int
    batch_size: int
    work: Work
    step_s: float                 # measured: one local step on this device
    eval_s_per_example: float     # measured
    flops_per_example: float      # forward
    host_bytes: float
    device_bytes: float
    hours: float                  # estimated on this device, the runs spread over ``workers`` processes
    gpu_hours_assumed: float      # estimated for one H100 from FLOPs and the assumed floor
    limits: dict = field(default_factory=dict)
    workers: int = 1              # CPU: the worker processes lib.utils.parallel_map spreads runs over

    def __str__(self) -> str:
        w = self.work
        return (f"plan ({self.profile}, {self.device}): {w.runs} runs, {w.steps:,} local steps of batch "
                f"{self.batch_size} + {w.extra_steps:,} other steps, {w.eval_examples:,} examples evaluated; "
                f"{self.model} with {self.params:,} parameters\n"
                f"  measured here: {self.step_s * 1e3:.2f} ms per local step, "
                f"{self.eval_s_per_example * 1e6:.1f} us per example evaluated\n"
                f"  estimated: {_hours(self.hours)} on this {self.device}"
                + (f" over {self.workers} worker processes" if self.workers > 1 else "") +
                f" ({_hours(self.gpu_hours_assumed)} on one H100, assumed rates); memory: "
                f"{self.host_bytes / 1e9:.2f} GB host, {self.device_bytes / 1e9:.2f} GB on the device"
                + (f"\n  counted: {w.note}" if w.note else ""))


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"


def forward_flops(model: torch.nn.Module, input_shape: tuple, dtype=torch.float32) -> float:
    """Forward FLOPs for one example (torch's FLOP counter on a batch of 2, halved)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = (torch.randint(0, 100, (2, *input_shape)) if dtype == torch.long else torch.randn(2, *input_shape))
    dev = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x.to(dev))
    return counter.get_total_flops() / 2


def activation_bytes(model: torch.nn.Module, input_shape: tuple, batch_size: int, dtype=torch.float32) -> float:
    """Bytes of the activations a training step keeps: every leaf module's output for one batch (float32),
    counted with forward hooks (the backward pass holds about as much again)."""
    total = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + (o.numel() if torch.is_tensor(o) else 0)))
             for m in model.modules() if not list(m.children())]
    x = torch.randint(0, 100, (1, *input_shape)) if dtype == torch.long else torch.randn(1, *input_shape)
    try:
        with torch.no_grad():
            model(x.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return 2 * 4 * total[0] * batch_size


def _measure(model: torch.nn.Module, input_shape, num_classes: int, batch_size: int, device, dtype) -> tuple[float, float]:
    from .client import LocalConfig, evaluate, local_train
    from .data import ArrayDataset
    from .params import FlatModel
    g = torch.Generator().manual_seed(0)
    n = max(4 * batch_size, 256)
    x = (torch.randint(0, 100, (n, *input_shape), generator=g) if dtype == torch.long
         else torch.randn(n, *input_shape, generator=g))
    d = ArrayDataset(x, torch.randint(0, num_classes, (n,), generator=g), [str(i) for i in range(num_classes)],
                     "plan").to(device)
    fm = FlatModel(model.to(device))
    w = fm.flat()
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    local_train(fm, w, d, LocalConfig(lr=1e-9, batch_size=batch_size, steps=2))         # warm-up
    sync()

    def timed(fn, repeats):
        """The fastest of ``repeats`` timings: a busy machine or a scheduling pause only ever adds time."""
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t0)
        return best

    step = timed(lambda: local_train(fm, w, d, LocalConfig(lr=1e-9, batch_size=batch_size, steps=6)), 5) / 6
    return step, timed(lambda: evaluate(fm, w, d), 3) / n


def host_memory_bytes() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def plan(notebook: str, profile: str, build, model_name: str, input_shape: tuple, num_classes: int,
         batch_size: int, work: Work, data_bytes: float = 0.0, device=None, save: bool = True) -> Plan:
    """Measure, estimate, save (``runs/<profile>/plans/<notebook>.json``) and check a configuration.

    ``build()`` returns a fresh model of the run's architecture (its weights are not used). The global
    random state is left as it was. Raises :class:`BudgetError` before any work when memory or time
    would not suffice.
    """
    global _LAST_PLAN
    with torch.random.fork_rng(devices=[]):
        p = _plan(notebook, profile, build(), model_name, tuple(input_shape), num_classes, batch_size, work,
                  data_bytes, device, save)
    _LAST_PLAN = p
    print(p)
    check(p)
    return p


_LAST_PLAN: Plan | None = None


def last_plan() -> Plan | None:
    """The last plan :func:`plan` made in this process (a notebook's): :func:`lib.executors.runs_per_gpu` sizes
    the runs sharing a GPU from its device and host memory estimates."""
    return _LAST_PLAN


def _plan(notebook, profile, model, model_name, input_shape, num_classes, batch_size, work, data_bytes, device,
          save) -> Plan:
    from . import paths
    from .utils import default_device
    if work.runs < 1 or work.steps < 0 or work.eval_examples < 0:
        raise ValueError(f"work must count at least one run and non-negative steps, got {work}")
    device = torch.device(device) if device is not None else default_device()
    dtype = torch.long if model_name == "textcnn" else torch.float32
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = forward_flops(model, input_shape, dtype)
    # on a CPU the runs go to worker processes of one thread each (lib.utils.parallel_map): time a step so
    workers = 1
    if device.type == "cpu":
        workers = max(1, min(int(os.environ.get("WORKBOOK_WORKERS", 0)) or os.cpu_count() or 1, work.runs))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        step_s, eval_s = _measure(model, input_shape, num_classes, batch_size, device, dtype)
    finally:
        if device.type == "cpu":
            torch.set_num_threads(threads)
    model.cpu()
    vec = 4 * params
    host = data_bytes + work.client_vectors * work.num_clients * vec + 12 * vec
    act = activation_bytes(model, input_shape, max(batch_size, 256), dtype)   # a training batch or an eval batch
    dev_bytes = 10 * vec + act + (data_bytes if device.type == "cuda" else 0)
    hours = ((work.steps + work.extra_steps) * step_s / 3600 + work.eval_examples * eval_s / 3600) / workers
    floor = GPU_ASSUMED["step_floor_s"].get(model_name, 1e-3)
    gpu_step = max(floor, 3 * flops * batch_size / GPU_ASSUMED["flops_per_s"])
    gpu_eval = max(flops / GPU_ASSUMED["flops_per_s"], floor / 4096)
    gpu_hours = ((work.steps + work.extra_steps) * gpu_step + work.eval_examples * gpu_eval) / 3600
    max_hours = float(os.environ.get("WORKBOOK_MAX_HOURS", 8))
    p = Plan(notebook, profile, device.type, model_name, params, batch_size, work, step_s, eval_s, flops, host,
             dev_bytes, hours, gpu_hours, {"max_hours": max_hours, "host_bytes": host_memory_bytes()}, workers)
    if save:
        out = paths.results_dir(profile) / "plans"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{notebook}.json").write_text(json.dumps({**asdict(p), "work": asdict(work)}, indent=1, default=str) + "\n")
    return p


def check(p: Plan) -> None:
    """Raise BudgetError when the plan does not fit (skipped by scripts/plan.py, which only sizes). The
    time limit stops every profile but the :data:`SIZED_PROFILES`, where it warns."""
    if os.environ.get("WORKBOOK_PLAN_ONLY"):
        return
    problems, slow = [], None
    if p.host_bytes > 0.8 * p.limits["host_bytes"]:
        problems.append(f"host memory: needs about {p.host_bytes / 1e9:.1f} GB, this machine has "
                        f"{p.limits['host_bytes'] / 1e9:.1f} GB (per-client vectors: fewer clients or a smaller model)")
    if p.device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        if p.device_bytes > 0.9 * total:
            problems.append(f"GPU memory: needs about {p.device_bytes / 1e9:.1f} GB of {total / 1e9:.1f} GB")
    if math.isfinite(p.limits["max_hours"]) and p.hours > p.limits["max_hours"]:
        slow = (f"time: about {_hours(p.hours)} on this {p.device} at the measured rate, over the "
                f"budget of {p.limits['max_hours']:g} h (WORKBOOK_MAX_HOURS); on one H100 about "
                f"{_hours(p.gpu_hours_assumed)} (assumed rates). Shrink seeds, rounds or the grid with "
                f"papermill parameters, or raise WORKBOOK_MAX_HOURS to run it anyway")
        if p.profile in SIZED_PROFILES:
            # quick and smoke are sized to minutes by design and timed by CI: an estimate over the limit
            # there means the step timing was taken on a busy machine (oversubscribed threads can read
            # hundreds of times slow), so it warns instead of stopping a run that takes minutes
            warnings.warn(f"{p.notebook} ({p.profile}): {slow}", RuntimeWarning, stacklevel=3)
        else:
            problems.append(slow)
    if problems:
        raise BudgetError(f"{p.notebook} ({p.profile}) will not fit:\n- " + "\n- ".join(problems))


def sync_work(runs: int, rounds: int, clients_per_round: int, steps_per_client: float, eval_examples: int,
              num_clients: int = 0, client_vectors: int = 0, extra_steps: int = 0, evals_per_run: int | None = None) -> Work:
    """Synchronous FL: every round ``clients_per_round`` clients take ``steps_per_client`` steps; the model is
    evaluated on ``eval_examples`` examples after every round (``evals_per_run`` to override)."""
    evals = rounds + 1 if evals_per_run is None else evals_per_run
    return Work(runs, int(runs * rounds * clients_per_round * steps_per_client), runs * evals * eval_examples,
                num_clients, client_vectors, extra_steps,
                f"{runs} runs x {rounds} rounds x {clients_per_round} clients x {steps_per_client:.0f} steps; "
                f"{evals} evaluations of {eval_examples:,} examples per run")


def async_work(runs: int, concurrency: int, max_time: float, local_steps: int, eval_examples: int, evals_per_run: int,
               num_clients: int, delays: str = "fedrevive", client_vectors: int = 0, extra_steps: int = 0) -> Work:
    """Asynchronous FL under a delay model: ``concurrency`` clients busy for ``max_time`` time units, each
    task ``local_steps`` steps; tasks per run = concurrency x max_time / (mean task time)."""
    from .asyncfl import DelayModel
    mean = DelayModel(delays, max(num_clients, 1), seed=0, ref_steps=local_steps).mean_task_time(local_steps)
    tasks = concurrency * max_time / mean
    return Work(runs, int(runs * tasks * local_steps), runs * evals_per_run * eval_examples, num_clients,
                client_vectors, extra_steps,
                f"{runs} runs x {tasks:,.0f} client tasks (mean task {mean:.2f} time units) x {local_steps} steps; "
                f"{evals_per_run} evaluations of {eval_examples:,} examples per run")
