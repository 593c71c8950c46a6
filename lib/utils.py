"""Seeding, the device, progress bars and process-parallel runs."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch. Library code also takes explicit seeds; this covers notebook code."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (e.g. run seed, round, client id)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def progress_enabled() -> bool:
    """Progress bars show in interactive use; ``WORKBOOK_PROGRESS=0`` (batch runs, tests) hides them."""
    return os.environ.get("WORKBOOK_PROGRESS", "1").strip().lower() not in ("0", "false", "no")


def progress(iterable=None, **kwargs):
    """tqdm over ``iterable``: a widget in JupyterLab, text in a terminal, nothing in batch runs."""
    if progress_enabled():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
        kwargs["disable"] = True
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)


def default_device() -> torch.device:
    """Where runs train: ``WORKBOOK_DEVICE`` if set, else the GPU when one is present, else the CPU."""
    name = os.environ.get("WORKBOOK_DEVICE", "").strip()
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"WORKBOOK_DEVICE={name} but torch sees no CUDA GPU on this machine")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _worker_init():
    import torch
    torch.set_num_threads(1)            # one process per core; tiny models gain nothing from threads
    os.environ["WORKBOOK_PROGRESS"] = "0"


def parallel_map(fn, jobs, workers: int | None = None, desc: str | None = None, executor: str | None = None) -> list:
    """``[fn(job) for job in jobs]`` through the chosen executor (:mod:`lib.executors`); results in the order of ``jobs``.

    Every run in the workbook takes its own explicit seed, so the results are identical whatever the number of
    workers and whatever the backend. ``executor`` (else a papermill parameter ``executor``, else
    ``WORKBOOK_EXECUTOR``) picks ``local`` (the default), ``ray`` or ``slurm``. Locally, ``workers`` defaults to
    ``WORKBOOK_WORKERS`` or the CPU count; a single job runs in-process; workers are forked, so ``fn`` may be a
    function defined in a notebook; with a CUDA GPU they are spawned instead, as many as
    :func:`lib.executors.runs_per_gpu` allows (one, in-process, without a plan). Results travel back pickled
    (return frames and numbers, not models with open generators). A job that raises or whose worker dies is
    retried (``WORKBOOK_RETRIES``, default 2); any still failing are named in
    :class:`lib.executors.RunsFailed`, raised once every job has ended.
    """
    from .executors import LocalExecutor, get_executor, resolve
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs = list(jobs)
    if resolve(executor) == "local":
        return LocalExecutor(workers=workers).map(fn, jobs, desc=desc)
    # elsewhere, each run gets the threads it would have had here with these workers: the same results
    return get_executor(executor).map(fn, jobs, desc=desc,
                                      resources={"threads": LocalExecutor.local_threads(len(jobs), workers)})
