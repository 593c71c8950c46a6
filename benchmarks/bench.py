#!/usr/bin/env python3
"""The simulator's speed, measured (``make bench``): never a timed unit test.

Jobs (fixed, so tables from different machines compare):

* ``sync``: FedAvg on Fashion-MNIST, ``cnn28``, 100 clients with Dirichlet(0.5) label skew, 10 per round,
  1 local epoch, batch 32, lr 0.05, 20 rounds, evaluation on the 10,000 test images every round;
  beside it, centralized SGD of the same model and batch over the same number of samples, in the same run,
  written as a plain PyTorch loop (``nn.Module`` + ``torch.optim.SGD``): the reference every ratio is taken to.
  The row also gives the ratio without evaluation (what the engine itself costs) and evaluation per image.
* ``sync-batched``: the same FedAvg (5 rounds) with each round's clients trained together (``lib.batched``)
  against the sequential path, both in the same run: the speed-up of batching on this device.
* ``async-engine``: the asynchronous engine alone (no training) at FedRevive's setting, 1,000 clients,
  100 concurrent, FedRevive's delay model: uploads per second.
* ``async``: FedBuff on the same data as ``sync`` (100 clients, 20 concurrent, 10 local steps) for 8 time
  units: samples/s and the wall-time split (training, evaluation, engine, aggregation).
* ``async-batched``: that FedBuff (4 time units) with the tasks in flight on the same model version trained
  together, against the sequential engine, both in the same run.
* ``fedrevive``: one FedRevive run at notebook 03's quick setting, 4 time units: the server's data-free
  distillation time per update against one client task.

Each job reports samples/s, the wall-time split, peak memory (host RSS; GPU allocator peak on a GPU)
and the ratio to centralized samples/s. Results are appended to ``benchmarks/results.md`` with the
machine named (CPU model, cores, torch, device) and written as JSON under ``benchmarks/runs/``.
``--quick`` shrinks every job (a check that the suite runs, not a measurement).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lib import data, fl, models, partition  # noqa: E402
from lib.asyncfl import DelayModel, get_async_strategy, run_async  # noqa: E402
from lib.client import LocalConfig, evaluate  # noqa: E402
from lib.params import FlatModel  # noqa: E402
from lib.utils import default_device  # noqa: E402


def machine() -> dict:
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True)
                   .stdout.splitlines() if l.startswith("Model name"))
    except Exception:  # no lscpu
        cpu = platform.processor() or "unknown"
    dev = default_device()
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else "-"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "device": dev.type, "gpu": gpu,
            "threads": torch.get_num_threads()}


def peak() -> dict:
    out = {"host_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def fashion(train_n: int | None, test_n: int | None):
    train, test = data.load_dataset("fashion_mnist")
    return train.sample(train_n, 0), test.sample(test_n, 1)


def plain_central(net: torch.nn.Module, train, steps: int, batch_size: int, lr: float) -> float:
    """Seconds for centralized SGD written the obvious way (an nn.Module, torch.optim.SGD, the same model,
    batch and number of samples, batches reshuffled every epoch): the reference every ratio is taken to."""
    from lib.client import batches
    import torch.nn.functional as F
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    net.train()
    t0 = time.perf_counter()
    for idx in batches(len(train), batch_size, steps, torch.Generator().manual_seed(0)):
        opt.zero_grad()
        F.cross_entropy(net(train.x[idx]), train.y[idx]).backward()
        opt.step()
    if train.x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def job_sync(quick: bool) -> dict:
    rounds = 3 if quick else 20
    train, test = fashion(6000 if quick else None, 2000 if quick else None)
    part = partition.dirichlet(train.y.numpy(), 100, alpha=0.5, seed=0, min_size=5)
    clients = fl.client_datasets(train, part)
    local = LocalConfig(lr=0.05, batch_size=32, epochs=1)
    net = lambda: models.build_model("cnn28", train.input_shape, train.num_classes, seed=0)  # noqa: E731
    t0 = time.perf_counter()
    run = fl.run_federated(net(), "fedavg", clients, test, rounds=rounds, clients_per_round=10, local=local, seed=0)
    total = time.perf_counter() - t0
    samples = int(run.records[-1]["grad_evals"]) * local.batch_size
    fm = FlatModel(net().to(default_device()))
    eval_t0 = time.perf_counter()
    evaluate(fm, fm.flat(), test.to(default_device()))
    eval_once = time.perf_counter() - eval_t0
    evals = rounds + 1
    eval_total = run.records[-1].get("eval_time") or evals * eval_once     # cumulative in the records
    # centralized SGD, same model and batch, same number of samples, as a plain PyTorch loop
    central = plain_central(net().to(default_device()), train.to(default_device()), samples // local.batch_size,
                            local.batch_size, local.lr)
    train_s = total - eval_total
    return {"job": "sync", "wall_s": total, "samples": samples, "samples_per_s": samples / total,
            "central_samples_per_s": samples / central, "ratio_to_central": central / total,
            "ratio_without_evaluation": central / train_s,
            "split": {"evaluation": eval_total / total, "training+aggregation": train_s / total},
            "note": f"{rounds} rounds, {evals} evaluations of {len(test)} images ({eval_total / evals:.2f} s each; "
                    f"{1e3 * eval_once / len(test):.3f} ms per image); without evaluation the ratio is "
                    f"{central / train_s:.2f}", **peak()}


def job_async_engine(quick: bool) -> dict:
    n, k, uploads = 1000, 100, (2000 if quick else 20000)
    x = torch.zeros(10)
    model = torch.nn.Linear(10, 1)
    dummy = data.ArrayDataset(torch.zeros(350, 10), torch.zeros(350, dtype=torch.long), ["a"], "dummy")
    t0 = time.perf_counter()
    r = run_async(model, get_async_strategy("fedbuff", buffer_size=10), [dummy] * n, None,
                  DelayModel("fedrevive", n, seed=0, ref_steps=25), k, local=LocalConfig(lr=0.1, steps=25),
                  max_versions=uploads // 10, train=False, device="cpu")
    wall = time.perf_counter() - t0
    del x
    return {"job": "async-engine", "wall_s": wall, "uploads": uploads, "uploads_per_s": uploads / wall,
            "split": {k_: v / wall for k_, v in r.timing.items() if k_.endswith("_s") and k_ != "wall_s"},
            "note": "1,000 clients, 100 concurrent, no training (engine and aggregation only)", **peak()}


def job_async(quick: bool) -> dict:
    train, test = fashion(6000, 1000)
    part = partition.dirichlet_mixture(train.y.numpy(), 100, alpha=0.5, seed=0)
    clients = fl.client_datasets(train, part)
    local = LocalConfig(lr=0.05, batch_size=32, steps=10)
    t0 = time.perf_counter()
    r = run_async(models.build_model("cnn28", train.input_shape, train.num_classes, seed=0),
                  get_async_strategy("fedbuff", buffer_size=10), clients, test,
                  DelayModel("fedrevive", 100, seed=0, ref_steps=10), 20, local=local, seed=0,
                  max_time=2.0 if quick else 8.0, eval_every_time=0.5)
    wall = time.perf_counter() - t0
    nparams = FlatModel(models.build_model("cnn28", train.input_shape, train.num_classes)).numel
    uploads = round(r.records[-1]["bytes_up"] / (4 * nparams))      # every finished client task
    samples = uploads * local.steps * local.batch_size
    central = plain_central(models.build_model("cnn28", train.input_shape, train.num_classes, seed=0).to(default_device()),
                            train.to(default_device()), local.steps * uploads, local.batch_size, local.lr)
    return {"job": "async", "wall_s": wall, "samples": samples, "samples_per_s": samples / wall,
            "central_samples_per_s": samples / central, "ratio_to_central": central / wall,
            "split": {k_: v / wall for k_, v in r.timing.items() if k_.endswith("_s") and k_ != "wall_s"},
            "note": f"FedBuff, {uploads} uploads, cnn28", **peak()}


def job_fedrevive(quick: bool) -> dict:
    from lib.fedrevive import SynthesisConfig
    from lib.fedrevive.experiment import run_job
    train, test = fashion(6000, 1000)
    k = 20
    kw = dict(server_lr=0.1, s_max=0.75 * k, model_input=train.input_shape, num_classes=train.num_classes, nz=64,
              ngf=16, warmup=k // 2, kd_start=k, mean=data.normalization("fashion_mnist")[0],
              std=data.normalization("fashion_mnist")[1], synthesis=SynthesisConfig(augment=False))
    model = models.build_model("mlp", train.input_shape, train.num_classes, seed=0, hidden=(64,), norm="track")
    t0 = time.perf_counter()
    out = run_job("fedrevive", "fedrevive", 0, kw, train, test, model, 100, k,
                  LocalConfig(lr=1e-3, optimizer="adam", batch_size=32, steps=10), 10, 2.0 if quick else 4.0)
    wall = time.perf_counter() - t0
    tm = out["timing"]
    dfkd = out["dfkd_s"].dfkd_s
    return {"job": "fedrevive", "wall_s": wall, "dfkd_median_ms": 1e3 * float(dfkd.median()) if len(dfkd) else float("nan"),
            "client_task_ms": 1e3 * tm["train_s"] / max(1, len(out["updates"])),
            "split": {k_: v / tm["wall_s"] for k_, v in tm.items() if k_.endswith("_s") and k_ != "wall_s"},
            "note": "notebook 03's quick setting (MLP-64 with trackers, K = 20)", **peak()}


def job_sync_batched(quick: bool) -> dict:
    """The sync job's FedAvg with the round's clients trained together (lib.batched) against the sequential
    path, both in this run, 5 rounds each (evaluation only at the end)."""
    rounds = 2 if quick else 5
    train, test = fashion(6000 if quick else None, 2000)
    part = partition.dirichlet(train.y.numpy(), 100, alpha=0.5, seed=0, min_size=5)
    clients = fl.client_datasets(train, part)
    local = LocalConfig(lr=0.05, batch_size=32, epochs=1)
    out = {}
    for batched in (False, True):
        net = models.build_model("cnn28", train.input_shape, train.num_classes, seed=0)
        t0 = time.perf_counter()
        run = fl.run_federated(net, "fedavg", clients, test, rounds=rounds, clients_per_round=10, local=local,
                               seed=0, eval_every=rounds, batched=batched)
        out[batched] = (time.perf_counter() - t0, int(run.records[-1]["grad_evals"]) * local.batch_size, run.x)
    (t_seq, n, x_seq), (t_bat, _, x_bat) = out[False], out[True]
    diff = float((x_seq - x_bat).norm() / x_seq.norm())
    return {"job": "sync-batched", "wall_s": t_bat, "samples": n, "samples_per_s": n / t_bat,
            "central_samples_per_s": n / t_seq, "ratio_to_central": t_seq / t_bat, "baseline": "sequential",
            "note": f"cnn28, {rounds} rounds of 10 clients; ratio = batched / sequential speed; models agree to "
                    f"{diff:.1e} (relative)", **peak()}


def job_async_batched(quick: bool) -> dict:
    """The async job's FedBuff with the tasks in flight on the same version trained together (lib.batched)
    against the sequential engine, both in this run."""
    train, test = fashion(6000, 1000)
    clients = fl.client_datasets(train, partition.dirichlet_mixture(train.y.numpy(), 100, alpha=0.5, seed=0))
    local = LocalConfig(lr=0.05, batch_size=32, steps=10)
    out = {}
    for batched in (False, True):
        t0 = time.perf_counter()
        r = run_async(models.build_model("cnn28", train.input_shape, train.num_classes, seed=0),
                      get_async_strategy("fedbuff", buffer_size=10), clients, test,
                      DelayModel("fedrevive", 100, seed=0, ref_steps=10), 20, local=local, seed=0,
                      max_time=1.0 if quick else 4.0, eval_every_time=4.0, batched=batched)
        out[batched] = (time.perf_counter() - t0, r)
    (t_seq, a), (t_bat, b) = out[False], out[True]
    n = len(a.updates) * local.steps * local.batch_size
    diff = float((a.x - b.x).norm() / a.x.norm())
    return {"job": "async-batched", "wall_s": t_bat, "samples": n, "samples_per_s": n / t_bat,
            "central_samples_per_s": n / t_seq, "ratio_to_central": t_seq / t_bat, "baseline": "sequential",
            "split": {k_: v / b.timing["wall_s"] for k_, v in b.timing.items() if k_.endswith("_s") and k_ != "wall_s"},
            "note": f"FedBuff, {len(b.updates)} uploads, cnn28, at most 32 tasks per batch; ratio = batched / "
                    f"sequential speed; models agree to {diff:.1e} (relative)", **peak()}


JOBS = {"sync": job_sync, "sync-batched": job_sync_batched, "async-batched": job_async_batched, "async-engine": job_async_engine, "async": job_async,
        "fedrevive": job_fedrevive}


def row(m: dict, r: dict) -> str:
    split = ", ".join(f"{k.replace('_s', '')} {100 * v:.0f}%" for k, v in r.get("split", {}).items())
    speed = (f"{r['samples_per_s']:,.0f} samples/s ({r.get('baseline', 'centralized')} {r['central_samples_per_s']:,.0f}; ratio "
             f"{r['ratio_to_central']:.2f})" if "samples_per_s" in r else
             f"{r['uploads_per_s']:,.0f} uploads/s" if "uploads_per_s" in r else
             f"DFKD {r['dfkd_median_ms']:.0f} ms per update vs a client task {r['client_task_ms']:.0f} ms")
    return (f"| {m['date']} | {m['cpu']} ({m['cores']} cores, {m['threads']} threads), {m['device']}"
            f"{' ' + m['gpu'] if m['gpu'] != '-' else ''}, torch {m['torch']} | {r['job']} | {speed} | {split} | "
            f"{r['wall_s']:.1f} s | {r['host_peak_mb']:,.0f} MB{' / GPU %.0f MB' % r['gpu_peak_mb'] if 'gpu_peak_mb' in r else ''} | {r['note']} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", nargs="*", default=list(JOBS), choices=list(JOBS))
    ap.add_argument("--quick", action="store_true", help="tiny jobs: checks the suite runs (not written to the table)")
    args = ap.parse_args(argv)
    os.environ.setdefault("WORKBOOK_PROGRESS", "0")
    m = {**machine(), "date": dt.date.today().isoformat()}
    results = []
    for name in args.jobs:
        print(f"bench {name} ...", flush=True)
        r = JOBS[name](args.quick)
        results.append(r)
        print(row(m, r), flush=True)
    if not args.quick:
        runs = ROOT / "benchmarks" / "runs"
        runs.mkdir(exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        (runs / f"{stamp}.json").write_text(json.dumps({"machine": m, "results": results}, indent=1) + "\n")
        table = ROOT / "benchmarks" / "results.md"
        if not table.exists():
            table.write_text("# Benchmark results (`make bench`)\n\n| date | machine | job | speed | wall-time split | wall | peak memory | job detail |\n|---|---|---|---|---|---|---|---|\n")
        with open(table, "a") as f:
            f.write("\n".join(row(m, r) for r in results) + "\n")
        print(f"appended to {table.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
