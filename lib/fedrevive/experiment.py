"""One run of notebook 03's comparison: a method on the asynchronous engine under FedRevive's delays.

Kept here so the notebook narrates and plots; the run cache is :func:`lib.records.cached_map`.
"""
from __future__ import annotations


def run_job(method: str, label: str, seed: int, kw: dict, train, test, model, num_clients: int, concurrency: int,
            local, local_steps: int, max_time: float, setting: str = "vision", device=None,
            samples_per_client: int | None = None, server_step_time: dict | None = None, validation=None) -> dict:
    """Run ``method`` (an asynchronous strategy name, ``kw`` its hyperparameters) from ``model`` (a built,
    seeded module) on Dirichlet(0.5) mixtures of ``train`` over ``num_clients`` clients, ``concurrency``
    training at once, for ``max_time`` simulated time units; evaluate on ``test`` 32 times.
    ``samples_per_client`` (e.g. the paper's 350): each client gets that many, classes dealt again once
    they run out, as the authors' split (clients may share samples); None: the data split without reuse.
    ``server_step_time``: charge the server's work to the simulated clock (``run_async``; calibrated with
    ``lib.fedrevive.calibrate``); None: the server is free (the default). ``validation``: a server-held split
    evaluated beside ``test`` (``val_accuracy`` in the curve), on which hyperparameters are chosen.

    Returns picklable frames: the accuracy curve, the applied updates, wall-time split, and for FedRevive
    its DFKD time per update, KD and synthesis logs, and the newest pseudo-samples of the pool.
    """
    import pandas as pd

    from .. import fl, partition
    from ..asyncfl import REVIVE_METHODS, DelayModel, get_async_strategy, run_async
    from ..utils import default_device
    device = device or default_device()
    net = model.to(device)
    revive = method in REVIVE_METHODS
    kw = dict(kw, model=net, seed=seed) if revive else kw
    part = partition.dirichlet_mixture(train.y.numpy(), num_clients, alpha=0.5, seed=seed,
                                       samples_per_client=samples_per_client, reuse=samples_per_client is not None)
    clients = fl.client_datasets(train, part)
    r = run_async(net, get_async_strategy(method, **kw), clients, test,
                  DelayModel("fedrevive", num_clients, seed=seed, ref_steps=local_steps), concurrency,
                  local=local, seed=seed, max_time=max_time, eval_every_time=max_time / 32, label=label,
                  device=device, server_step_time=server_step_time, validation=validation)
    out = {"curve": r.frame().assign(setting=setting), "updates": r.update_frame().assign(setting=setting),
           "timing": {"setting": setting, "method": label, "seed": seed, **r.timing}}
    if isinstance(r.state, dict) and "server_log" in r.state:       # the server's charged work, per aggregation
        out["server_log"] = pd.DataFrame(r.state["server_log"]).assign(setting=setting, method=label, seed=seed)
    if revive:
        st = r.state
        tag = dict(setting=setting, method=label, seed=seed)
        out["dfkd_s"] = pd.DataFrame({**tag, "dfkd_s": st["dfkd_s"]})
        out["kd_log"] = pd.DataFrame(st["kd_log"]).assign(**tag)
        out["synth_log"] = pd.DataFrame(st["synth_log"]).assign(**tag)
        out["q_l1"] = pd.DataFrame(st["q_l1"]).assign(**tag)
        out["work_log"] = pd.DataFrame(st["work_log"]).assign(**tag)
        out["diagnostics"] = pd.DataFrame([{**tag, **diagnose(st, test, device)}])
        pool = st["synth"].pool
        if len(pool) and setting == "vision" and method == "fedrevive":
            xs, ys = pool.newest(64)
            out["samples"] = (xs[0].cpu(), ys.cpu())
    return out


def diagnose(state: dict, test, device, n: int = 512) -> dict:
    """At the end of a run, with its last teachers: how informative the distillation inputs are (the
    ensemble's probability of each input's target class, on the newest ``n`` pool inputs and on ``n`` real
    test images) and the ensemble's accuracy on the test data (``diagnostics``)."""
    from .diagnostics import ensemble_accuracy, informativeness
    teachers, pool, fm = state["teachers"], state["synth"].pool, state["synth"].fm
    if not teachers:
        return {}
    xt = test.x[:n] if not isinstance(test.x, tuple) else tuple(t[:n] for t in test.x)
    xt = tuple(t.to(device) for t in xt) if isinstance(xt, tuple) else xt.to(device)
    yt = test.y[:n].to(device)
    real = informativeness(fm, teachers, xt, yt)
    out = {"real_target_prob": real["target_prob"], "real_target_argmax": real["target_argmax"],
           "ensemble_accuracy": ensemble_accuracy(fm, teachers, xt, yt)}
    if len(pool):
        xs, ys = pool.newest(n)
        pinf = informativeness(fm, teachers, xs if len(xs) > 1 else xs[0], ys)
        out |= {"pool_target_prob": pinf["target_prob"], "pool_target_argmax": pinf["target_argmax"]}
    return out | {"pool_size": len(pool)}


def held_out_split(y, fraction: float, seed: int):
    """Indices (clients' part, server's held-out part) of labels ``y``: a stratified ``fraction`` held out,
    as the authors' ``kd_split`` for DD-FedRevive. The two parts are disjoint and cover every example."""
    import numpy as np

    from ..data import stratified_split
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    keep, held = stratified_split(np.asarray(y), fraction, seed=seed)
    return keep, held
