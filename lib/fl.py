"""The synchronous federated loop, shared by every synchronous method.

Per round t::

    S_t      = sample clients_per_round of N clients
    hooks_i  = strategy.configure_client(state, i)        for i in S_t
    result_i = local_train(x_t, client data_i, hooks_i)   (returns D_i = x_i - x_t)
    x_{t+1}, state = strategy.aggregate(x_t, state, results)

plus the bookkeeping every notebook needs: bytes up and down, simulated time
(a round lasts as long as its slowest selected client on the :class:`ClientClock`),
wall time, the clients' mini-batch gradient evaluations (``grad_evals``, their compute),
and evaluation every ``eval_every`` rounds. One record per evaluated
round; :meth:`FLRun.frame` gives them as a tidy DataFrame.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .client import LocalConfig, evaluate
from .clock import ClientClock
from .data import ArrayDataset
from .params import FlatModel
from .partition import Partition
from .strategies import Strategy, get_strategy
from .utils import default_device, derive_seed, progress


@dataclass
class FLRun:
    """What a run leaves behind: per-round records, the final model vector and server state."""

    records: list[dict]
    x: torch.Tensor
    state: dict
    config: dict = field(default_factory=dict)

    def frame(self):
        import pandas as pd
        return pd.DataFrame(self.records)

    @property
    def final_accuracy(self) -> float:
        return self.records[-1]["accuracy"]

    def best_accuracy(self) -> float:
        return max(r["accuracy"] for r in self.records)


def place(model, clients: Sequence[ArrayDataset], test: ArrayDataset | None, device=None):
    """Put the model, every client's data and the test set on one device (default: the GPU when present).

    Every runner calls this first, so a notebook never moves anything itself; tensors already there
    are not copied. Returns ``(flat_model, clients, test, device)``.
    """
    device = torch.device(device) if device is not None else default_device()
    fm = model if isinstance(model, FlatModel) else FlatModel(model.to(device))
    fm.to(device)
    clients = [c.to(device) for c in clients]
    test = test.to(device) if test is not None else None
    return fm, clients, test, device


def client_datasets(train: ArrayDataset, part: Partition) -> list[ArrayDataset]:
    if len(part.labels) != len(train):
        raise ValueError(f"partition covers {len(part.labels)} samples but the dataset has {len(train)}")
    return [train.subset(ix) for ix in part.indices]


def _average_buffers(results, fallback):
    """Weighted mean of float buffers (BatchNorm statistics), by client sample counts."""
    if not results or results[0].buffers is None:
        return fallback
    n = torch.tensor([float(r.num_samples) for r in results])
    p = n / n.sum()
    out = {}
    for k, v in results[0].buffers.items():
        if v.is_floating_point():
            out[k] = sum(pi * r.buffers[k] for pi, r in zip(p, results))
        else:
            out[k] = v
    return out


def run_federated(model: torch.nn.Module | FlatModel, strategy: Strategy | str, clients: Sequence[ArrayDataset],
                  test: ArrayDataset, rounds: int, clients_per_round: int, local: LocalConfig | None = None,
                  seed: int = 0, eval_every: int = 1, steps_per_client: Sequence[int] | None = None,
                  clock: ClientClock | None = None, x0: torch.Tensor | None = None, label: str | None = None,
                  strategy_kwargs: dict | None = None, metrics=None, device=None,
                  batched: bool | None = None, validation: ArrayDataset | None = None) -> FLRun:
    """Simulate ``rounds`` of synchronous FL and return the records.

    ``steps_per_client`` fixes each client's number of local steps (objective
    inconsistency); otherwise ``local`` decides (epochs or steps).
    ``x0`` starts from given weights (e.g. pre-trained) instead of the model's own.
    ``metrics(x) -> dict`` adds quantities of the global model to every record.
    ``validation``: a held-out split (``ArrayDataset.split_validation``) evaluated beside ``test`` at every
    evaluation, as ``val_accuracy`` / ``val_loss``, for choosing hyperparameters without the test set.
    ``device``: where to train (default: the GPU when present, see ``utils.default_device``).
    ``batched``: train each round's clients together (``lib.batched``; same results within float
    tolerance). Default: on a GPU when the model and strategy allow it (``WORKBOOK_BATCHED=0/1`` overrides);
    on a CPU it is off, since there it is no faster (``make bench`` measures both).
    """
    fm, clients, test, device = place(model, clients, test, device)
    validation = validation.to(device) if validation is not None else None
    if isinstance(strategy, str):
        strategy = get_strategy(strategy, **(strategy_kwargs or {}))
    local = local or LocalConfig()
    n = len(clients)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not 1 <= clients_per_round <= n:
        raise ValueError(f"clients_per_round must be in 1..{n} (the number of clients), got {clients_per_round}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    if steps_per_client is not None and len(steps_per_client) != n:
        raise ValueError(f"steps_per_client has {len(steps_per_client)} entries for {n} clients")
    clock = clock or ClientClock.uniform(n)
    if clock.num_clients != n:
        raise ValueError(f"the clock describes {clock.num_clients} clients, the partition {n}")

    from .batched import can_batch, local_train_batched, use_batched
    batched = use_batched(batched, can_batch(fm, strategy), device, strategy.name)
    x = (fm.flat() if x0 is None else x0.detach().clone().to(device))
    buffers = {k: v.clone() for k, v in fm.buffers.items()}
    state = strategy.init(x, n)
    rng = np.random.default_rng(derive_seed(seed, 1))
    model_bytes = fm.bytes()
    name = label or strategy.name
    bytes_up = bytes_down = grad_evals = 0
    sim_time, wall0 = 0.0, time.perf_counter()

    eval_s = 0.0

    def record(t, train_loss):
        nonlocal eval_s
        t0 = time.perf_counter()
        point = strategy.evaluation_point(x, state)
        acc, loss = evaluate(fm, point, test, buffers=buffers)
        extra = metrics(x) if metrics is not None else {}
        if validation is not None:
            extra["val_accuracy"], extra["val_loss"] = evaluate(fm, point, validation, buffers=buffers)
        eval_s += time.perf_counter() - t0
        return {"method": name, "seed": seed, "round": t, "accuracy": acc, "loss": loss,
                "train_loss": train_loss, "bytes_up": bytes_up, "bytes_down": bytes_down,
                "grad_evals": grad_evals,
                "sim_time": sim_time, "wall_time": time.perf_counter() - wall0, "eval_time": eval_s, **extra}

    records = [record(0, float("nan"))]
    for t in progress(range(1, rounds + 1), desc=name, unit="round"):
        selected = np.sort(rng.choice(n, size=clients_per_round, replace=False))
        results, times = [], []
        hooks = {}
        for cid in selected:
            cid = int(cid)
            hooks[cid] = strategy.configure_client(state, cid)
            if steps_per_client is not None:
                hooks[cid].num_steps = int(steps_per_client[cid])
        if batched:
            ids = [int(c) for c in selected]
            trained = iter(local_train_batched(fm, x, [clients[c] for c in ids], local, [hooks[c] for c in ids],
                                               [derive_seed(seed, t, c) for c in ids], ids))
        for cid in selected:
            cid = int(cid)
            r = next(trained) if batched else strategy.local_update(
                fm, x, clients[cid], local, hooks[cid], seed=derive_seed(seed, t, cid), client_id=cid,
                buffers=buffers)
            results.append(r)
            grad_evals += int(r.extra.get("grad_evals", r.num_steps))
            down, up = strategy.vectors_down * model_bytes, strategy.vectors_up * model_bytes
            bytes_down += down
            bytes_up += up
            times.append(clock.task_time(cid, r.num_steps, down, up))
        x, state = strategy.aggregate(x, state, results)
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"{name}: the global model diverged (non-finite weights) in round {t}; "
                                     f"lower the learning rate(s)")
        buffers = _average_buffers(results, buffers)
        sim_time += max(times)
        if t % eval_every == 0 or t == rounds:
            records.append(record(t, float(np.mean([r.loss for r in results]))))
    cfg = {"strategy": strategy.name, "rounds": rounds, "clients": n, "clients_per_round": clients_per_round,
           "seed": seed, "local": local.__dict__.copy()}
    return FLRun(records, x, state, cfg)
