"""Event-driven asynchronous FL on a virtual clock.

The server loop (FedRevive's, and FedBuff's with B > 1)::

    dispatch K idle clients on version 0
    repeat, in order of simulated finish time:
        pop the next upload (client i, started from version v_i)
        tau_i = version - v_i                          # staleness
        buffer.append(update_i)
        if len(buffer) == B:  x, state = strategy.aggregate(x, state, buffer); version += 1
        dispatch one randomly chosen idle client on the current version

A task is download -> local training -> upload; its duration comes from a
:class:`DelayModel`. A client is never dispatched while it is still training. Uploads
that finish at the same instant are handled together before any new dispatch, so with
equal speeds and B = K the engine is exactly synchronous FedAvg. A strategy with
``synchronous = True`` waits for its whole cohort (a round lasts as long as its slowest
client); one with ``period`` aggregates on a timer instead of a count (FedFix).

Server time (``server_step_time``, off by default): the server is one machine, and its aggregation work
takes simulated time. After each aggregation the strategy reports its work (``server_work``: step counts,
e.g. FedRevive's ``{"synthesis": g_steps, "kd": K_KD}``); the server is busy for
``sum_k count_k * server_step_time[k]`` (+ ``server_step_time["aggregate"]`` per aggregation) time units.
Uploads that arrive while it is busy queue in arrival order and are handled, their staleness counted, only
once it is free; the new model exists (for evaluation and for the clients dispatched after the aggregation)
from the end of that work. A model of the work, never a wall-clock reading: runs stay deterministic.

Local training runs lazily when the upload is handled, from the model snapshot the
client downloaded: the result is the same as training at dispatch time.

Batched clients (``batched=True``; by default on a GPU): when an upload needs training, every other
task in flight on the same model version (up to ``batch_clients`` in all) is trained with it in one
vectorized computation (:mod:`lib.batched`), each with the seed it would have had, and kept until its
own upload is handled. Same results as the sequential path within float tolerance; a task still in
flight when the run stops may have been trained for nothing.
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
import numpy as np
import torch

from ..client import ClientHooks, LocalConfig, evaluate, local_train
from ..data import ArrayDataset
from ..params import FlatModel
from ..utils import derive_seed, progress
from .delays import DelayModel


@dataclass
class Update:
    """One upload as the server sees it: the client's model delta and metadata, never its data."""

    client_id: int
    delta: torch.Tensor
    x_sent: torch.Tensor
    base_version: int
    staleness: int
    num_samples: int
    num_steps: int
    lr: float
    momentum: float
    dispatch_time: float
    arrival_time: float
    train_time: float
    buffers: dict | None = None          # the client model's buffers (e.g. tracked statistics), if any
    label_counts: np.ndarray | None = None   # only for a strategy that asks (wants_label_counts)

    @property
    def x_client(self) -> torch.Tensor:
        return self.x_sent + self.delta


@dataclass
class AsyncStrategy:
    """Base of the asynchronous methods: buffered, staleness-free averaging (FedBuff with s = 1)."""

    buffer_size: int = 1
    server_lr: float = 1.0
    name = "async"
    synchronous = False          # wait for the whole cohort before dispatching again
    period = None                # aggregate every `period` time units instead of every B uploads
    wants_label_counts = False   # clients report their label histogram with each upload (off by default)

    def __post_init__(self):
        if self.buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if not self.server_lr > 0:
            raise ValueError(f"server_lr must be > 0, got {self.server_lr}")

    def init(self, x: torch.Tensor, num_clients: int) -> dict:
        """Server state; the engine adds ``state["concurrency"]`` (clients training at once)."""
        return {}

    def dispatch(self, state: dict, client_id: int, now: float) -> ClientHooks:
        """Hooks for the task about to start (local steps, proximal term, ...)."""
        return ClientHooks()

    def on_arrival(self, state: dict, update: Update) -> None:
        """Observe an upload before it is buffered (speed tracking, caches)."""

    def aggregate(self, x: torch.Tensor, state: dict, buffer: list[Update]):
        d = torch.stack([u.delta for u in buffer]).mean(0)
        return x + self.server_lr * d, state

    def server_work(self, state: dict) -> dict:
        """Counted work of the last aggregation, {kind: steps} (priced by ``run_async(server_step_time=...)``);
        none by default (then only ``server_step_time["aggregate"]`` is charged)."""
        return {}


@dataclass
class AsyncRun:
    records: list[dict]
    updates: list[dict]
    x: torch.Tensor
    state: dict
    timing: dict = field(default_factory=dict)

    def frame(self):
        import pandas as pd
        return pd.DataFrame(self.records)

    def update_frame(self):
        import pandas as pd
        return pd.DataFrame(self.updates)


def run_async(model, strategy: AsyncStrategy, clients: list[ArrayDataset], test: ArrayDataset | None,
              delays: DelayModel, concurrency: int, local: LocalConfig | None = None, seed: int = 0,
              max_time: float | None = None, max_versions: int | None = None, eval_every: int = 10,
              eval_every_time: float | None = None, label: str | None = None, train: bool = True,
              device=None, batched: bool | None = None, batch_clients: int = 32,
              server_step_time: dict | None = None, validation=None) -> AsyncRun:
    """Simulate asynchronous FL until ``max_time`` (simulated) or ``max_versions`` server updates.

    ``eval_every`` versions (or every ``eval_every_time`` time units) the global model is
    evaluated on ``test``. ``train=False`` skips local training (zero updates): it measures
    the engine alone. ``device``: where to train (default: the GPU when present). ``batched``: train
    the tasks dispatched on the same version together, at most ``batch_clients`` at once (default: on
    a GPU, off on a CPU where it is no faster; ``WORKBOOK_BATCHED=0/1`` overrides).
    ``server_step_time``: charge the server's work to the simulated clock (module docstring), e.g.
    ``{"synthesis": s1, "kd": s2}`` in time units per step (``lib.fedrevive.calibrate``); None: free (default).
    ``validation``: a held-out split evaluated beside ``test`` (``val_accuracy``, ``val_loss``), for choosing
    hyperparameters without the test set (``lib.sweep.select_on_validation``).
    """
    from ..fl import place
    fm, clients, test, device = place(model, clients, test, device)
    validation = validation.to(device) if validation is not None else None
    local = local or LocalConfig()
    n = len(clients)
    if not 1 <= concurrency <= n:
        raise ValueError(f"concurrency must be in 1..{n} (the number of clients), got {concurrency}")
    if strategy.buffer_size > concurrency and not strategy.synchronous:
        raise ValueError(f"buffer_size {strategy.buffer_size} is larger than the concurrency {concurrency}: "
                         f"at most {concurrency} uploads can be outstanding")
    if strategy.synchronous and strategy.buffer_size != concurrency:
        raise ValueError("a synchronous strategy's buffer must equal the cohort (concurrency)")
    if delays.n != n:
        raise ValueError(f"the delay model describes {delays.n} clients, the partition {n}")
    if max_time is None and max_versions is None:
        raise ValueError("give max_time or max_versions")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    if batch_clients < 1:
        raise ValueError(f"batch_clients must be >= 1, got {batch_clients}")
    charged = server_step_time is not None
    if charged:
        server_step_time = {k: float(v) for k, v in server_step_time.items()}
        if any(not (v >= 0 and np.isfinite(v)) for v in server_step_time.values()):
            raise ValueError(f"server_step_time values must be finite and >= 0, got {server_step_time}")
        if strategy.synchronous or strategy.period is not None:
            raise ValueError("server_step_time is supported for count-triggered asynchronous strategies only")
    server_free, server_busy, server_log = 0.0, 0.0, []
    handled = {}                          # id(update) -> when the server took it (after any queueing)
    from ..batched import can_batch, local_train_batched, use_batched
    batched = use_batched(batched, can_batch(fm, strategy), device, strategy.name)
    ready = {}                            # task seq -> its ClientResult, trained ahead in a batch

    rng = np.random.default_rng(derive_seed(seed, 2))
    x = fm.flat()
    state = strategy.init(x, n)
    if isinstance(state, dict):
        state.setdefault("concurrency", concurrency)    # how many clients train at once (FedFix's population)
    keep_history = hasattr(strategy, "local_update")   # device-side fetches need past global models
    history = [(0.0, x)]                 # (time, global model), pruned to what outstanding tasks can ask for
    heap, seq = [], 0
    idle = np.ones(n, dtype=bool)
    redispatch = {}                       # (client, version) -> times dispatched on that version
    version, now, buffer = 0, 0.0, []
    name = label or strategy.name
    records, updates = [], []
    engine_s = train_s = eval_s = aggregate_s = 0.0
    model_bytes = fm.bytes()
    bytes_up = bytes_down = 0
    wall0 = time.perf_counter()
    next_eval_time = eval_every_time
    next_period = strategy.period

    def dispatch(t):
        nonlocal seq, bytes_down
        free = np.flatnonzero(idle)
        if len(free) == 0:
            return
        cid = int(free[rng.integers(len(free))])
        hooks = strategy.dispatch(state, cid, t)
        steps = hooks.num_steps or local.num_steps(len(clients[cid]))
        down, tr, up = delays.sample(cid, steps, rng)
        idle[cid] = False
        bytes_down += model_bytes
        heapq.heappush(heap, (t + down + tr + up, seq, cid, version, x, hooks, steps, t, tr, down))
        seq += 1

    def evaluate_now(t, model=None):
        nonlocal eval_s
        t0 = time.perf_counter()
        w = x if model is None else model
        acc, loss = evaluate(fm, w, test) if test is not None else (float("nan"), float("nan"))
        val = {}
        if validation is not None:
            val["val_accuracy"], val["val_loss"] = evaluate(fm, w, validation)
        eval_s += time.perf_counter() - t0
        records.append({"method": name, "seed": seed, "version": version, "sim_time": t, "accuracy": acc,
                        "loss": loss, "bytes_up": bytes_up, "bytes_down": bytes_down,
                        "wall_time": time.perf_counter() - wall0, **val})

    def apply(t):
        nonlocal x, state, version, buffer, aggregate_s, server_free, server_busy, next_eval_time
        t0 = time.perf_counter()
        x_old = x
        x, state = strategy.aggregate(x, state, buffer)
        aggregate_s += time.perf_counter() - t0
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"{name}: the global model diverged at version {version + 1}")
        start = t
        if charged:                       # the server works from t; the new model exists from t + d
            work = strategy.server_work(state) or {}
            d = server_step_time.get("aggregate", 0.0) + sum(n * server_step_time.get(k, 0.0)
                                                              for k, n in work.items())
            unpriced = [k for k, n in work.items() if n and k not in server_step_time]
            if unpriced:
                raise ValueError(f"{name} reports server work {unpriced} that server_step_time does not price")
            server_log.append({"method": name, "seed": seed, "version": version + 1, "start": t, "duration": d,
                               **{f"{k}_steps": n for k, n in work.items()}})
            server_busy += d
            t = server_free = t + d
            while (eval_every_time is not None and next_eval_time < t      # the old model until the work is done
                   and (max_time is None or next_eval_time <= max_time)):
                evaluate_now(next_eval_time, x_old)
                next_eval_time += eval_every_time
        version += 1
        if keep_history:
            history.append((t, x))
            oldest = min((item[7] for item in heap), default=t)     # earliest dispatch still in flight
            while len(history) > 1 and history[1][0] <= oldest:
                history.pop(0)
        for u in buffer:
            updates.append({"method": name, "seed": seed, "version": version, "client": u.client_id,
                            "staleness": u.staleness, "arrival_time": u.arrival_time,
                            "train_time": u.train_time, "num_steps": u.num_steps,
                            **({"handled_time": handled.pop(id(u)), "applied_time": t} if charged else {})})
        buffer = []
        if eval_every_time is None and version % eval_every == 0:
            evaluate_now(t)

    def model_at(t):
        """The global model the server held at simulated time t."""
        k = np.searchsorted([h[0] for h in history], t, side="right") - 1
        return history[max(k, 0)][1]

    def batch_with_inflight(tid, cid, v0, x_sent, hooks, parts):
        """Train task ``tid`` together with the tasks in flight on the same version (same seeds as alone)."""
        group = [(tid, cid, hooks, derive_seed(*parts))]
        for item in sorted(heap):
            if len(group) >= batch_clients:
                break
            _, tid2, cid2, v2, _, hooks2, *_ = item
            if v2 == v0 and tid2 not in ready and not hooks2.state:
                k2 = redispatch.get((cid2, v2), 0)         # its earlier uploads on this version: none can come first
                group.append((tid2, cid2, hooks2, derive_seed(seed, v2 + 1, cid2) if k2 == 0 else
                              derive_seed(seed, v2 + 1, cid2, k2)))
        results = local_train_batched(fm, x_sent, [clients[c] for _, c, _, _ in group], local,
                                      [h for _, _, h, _ in group], [sd for *_, sd in group],
                                      [c for _, c, _, _ in group])
        for (t_, *_), r in zip(group, results):
            ready[t_] = r

    evaluate_now(0.0)
    cohort = concurrency
    for _ in range(cohort):
        dispatch(0.0)
    bar = progress(total=max_versions or None, desc=name, unit="version")
    done = False
    while heap and not done:
        t_next = max(heap[0][0], server_free)        # an upload waits while the server works
        if (next_period is not None and next_period <= t_next
                and (max_time is None or next_period <= max_time)):   # FedFix: the timer fires first
            now = next_period
            if buffer:
                apply(now)
            next_period += strategy.period
            continue
        if max_time is not None and t_next > max_time:
            break
        now = t_next
        while eval_every_time is not None and next_eval_time <= now:
            evaluate_now(next_eval_time)
            next_eval_time += eval_every_time
        # every upload that finishes at this instant, then the dispatches
        arrived = 0
        while heap and heap[0][0] <= now and server_free <= now and not done:
            t0 = time.perf_counter()
            t_arr, tid, cid, v0, x_sent, hooks, steps, t_disp, tr, down = heapq.heappop(heap)
            k = redispatch.get((cid, v0), 0)
            redispatch[(cid, v0)] = k + 1
            engine_s += time.perf_counter() - t0
            t1 = time.perf_counter()
            parts = (seed, v0 + 1, cid) if k == 0 else (seed, v0 + 1, cid, k)
            bufs = None
            if train:
                if hasattr(strategy, "local_update"):   # device-side logic (FedASMU's mid-task mixing)
                    delta = strategy.local_update(fm, x_sent, clients[cid], local, hooks, derive_seed(*parts), cid,
                                                  model_at(t_disp + down + tr / 2), steps)
                elif batched and not hooks.state:
                    if tid not in ready:
                        batch_with_inflight(tid, cid, v0, x_sent, hooks, parts)
                    res = ready.pop(tid)
                    delta, bufs = res.delta, res.buffers
                else:
                    res = local_train(fm, x_sent, clients[cid], local, hooks, seed=derive_seed(*parts), client_id=cid)
                    delta, bufs = res.delta, res.buffers
            else:
                delta = torch.zeros_like(x_sent)
            train_s += time.perf_counter() - t1
            t0 = time.perf_counter()
            counts = (np.bincount(clients[cid].y.cpu().numpy(), minlength=clients[cid].num_classes)
                      if strategy.wants_label_counts else None)
            u = Update(cid, delta, x_sent, v0, version - v0, len(clients[cid]), steps, local.lr, local.momentum,
                       t_disp, t_arr, tr, bufs, counts)
            handled[id(u)] = now
            idle[cid] = True
            bytes_up += model_bytes
            strategy.on_arrival(state, u)
            buffer.append(u)
            arrived += 1
            engine_s += time.perf_counter() - t0
            if strategy.period is None and len(buffer) >= strategy.buffer_size:
                t1, e0, a0 = time.perf_counter(), eval_s, aggregate_s
                apply(now)
                bar.update(1)
                engine_s += time.perf_counter() - t1 - (eval_s - e0) - (aggregate_s - a0)
                if max_versions is not None and version >= max_versions:
                    done = True
        t0 = time.perf_counter()
        if strategy.synchronous:
            if not heap:
                for _ in range(cohort):
                    dispatch(now)
        else:
            for _ in range(arrived):
                dispatch(max(now, server_free))          # the server hands out work once it is free
        engine_s += time.perf_counter() - t0
    bar.close()
    if eval_every_time is None and (not records or records[-1]["version"] != version):
        evaluate_now(now)
    wall = time.perf_counter() - wall0
    # engine_s: the simulator's own work (heap, dispatch, bookkeeping); aggregation, training and
    # evaluation are timed apart
    timing = {"wall_s": wall, "train_s": train_s, "eval_s": eval_s, "engine_s": engine_s, "aggregate_s": aggregate_s,
              "events": len(updates), "versions": version, "sim_time": now}
    if charged:
        timing |= {"server_busy": server_busy, **{f"server_step_time_{k}": v for k, v in server_step_time.items()}}
        if isinstance(state, dict):
            state["server_log"] = server_log
    return AsyncRun(records, updates, x, state, timing)
