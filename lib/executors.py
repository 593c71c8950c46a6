"""Where a sweep's runs execute: one interface, three backends, chosen by ``WORKBOOK_EXECUTOR``.

Every run of a sweep takes its own explicit seed, so runs are independent and their results do not depend
on where, in what order or beside what they ran. :func:`lib.records.cached_map` and
:func:`lib.utils.parallel_map` hand their jobs to an :class:`Executor`; the backends are

=========  ===========================================================================================
``local``  the default, as before: forked worker processes on this machine (``WORKBOOK_WORKERS``, else
           every core), in-process for a single job; with a CUDA GPU, *spawned* (never forked) workers,
           :func:`runs_per_gpu` of them per GPU, each with its own CUDA context (in-process when that is 1)
``ray``    Ray tasks on the cluster named by ``RAY_ADDRESS`` (``ray start --head`` on one node,
           ``ray start --address=...`` on the others), or a local Ray instance started with this machine's
           CPUs (``WORKBOOK_WORKERS`` to change) and no dashboard; Ray places, queues and retries the tasks
``slurm``  submitit from a SLURM login node: one job array per sweep, at most ``WORKBOOK_SLURM_PARALLEL``
           jobs running at once, each job's GPUs, CPUs, time, memory and partition from the
           ``WORKBOOK_SLURM_*`` variables (:func:`slurm_parameters`); SLURM places and queues the jobs
=========  ===========================================================================================

The backend is chosen, first match wins, by the ``executor`` argument of ``cached_map`` / ``parallel_map``,
by a papermill parameter ``executor`` (``papermill nb.ipynb out.ipynb -p executor ray``: papermill injects it
into the notebook's namespace, where :func:`resolve` reads it), by ``WORKBOOK_EXECUTOR``, else ``local``.
No backend is a scheduler of the workbook's own: placement and queuing are the engine's.

**Results are the executor's business.** Under ``cached_map`` each worker writes its run's result itself to
the run cache, ``results/<profile>/cache/<name>/code-<fingerprint>/<key>.pkl`` (``WORKBOOK_RESULTS`` moves
``results/``; on a cluster it must be storage every worker shares), and the notebook collects the results by
key. The fingerprint is :func:`code_fingerprint`, a hash of lib's sources, so a run computed by other code is
never reused (its file is simply not found); a worker whose own lib differs from the caller's refuses the run.

**Failures.** A run that raises, or whose worker dies, is tried again up to ``WORKBOOK_RETRIES`` times (default
2, so three attempts): by Ray itself (``max_retries``, ``retry_exceptions``), and for ``local`` and
``slurm`` by resubmitting only the failed runs (a new pool, a new smaller job array). A run that still fails
is named with its error in :class:`RunsFailed`, raised only after every other run has finished and been
stored, so re-running the cell computes only the failed runs.

**Identical results.** A worker runs with one torch intra-op thread, as the local forked workers always did (or
with as many as the caller has, for the sweeps the local backend would run in-process), and with the caller's
NumPy BLAS threads (which a forked worker inherits), so a run's floating-point reductions are the same whatever
the backend: the results of a sweep under ``ray`` or ``slurm`` equal, byte
for byte, those under ``local`` on the same kind of machine (``python -m lib.executors check`` compares them).

``WORKBOOK_SLURM_LOCAL=1`` makes the ``slurm`` backend use submitit's *local* executor (jobs as processes on
this machine, no SLURM): for the tests and for trying the path; never chosen otherwise.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("local", "ray", "slurm")
DEFAULT_RETRIES = 2
LIB_ROOT = Path(__file__).resolve().parent
# a worker process's own device memory beside its run's: the CUDA context and the caching allocator's slack
# (assumed, not measured here)
CUDA_CONTEXT_BYTES = 750e6
MAX_RUNS_PER_GPU = 8


class ExecutorError(RuntimeError):
    """The chosen backend cannot run here (no ``sbatch``, no Ray, an unknown name); the message says what to do."""


class RunsFailed(RuntimeError):
    """Some runs still failed after their retries; every other run finished (and, under ``cached_map``, is stored).

    ``failures`` maps each failed run's key (or ``job <i>``) to its error, one line each.
    """

    def __init__(self, failures: dict, total: int, retries: int, backend: str, stored: str = ""):
        self.failures = dict(failures)
        self.total = total
        lines = [f"{len(failures)} of {total} runs failed under the {backend} executor after {retries + 1} "
                 f"attempts each" + (f"; the other {total - len(failures)} runs are stored in {stored} and a re-run "
                                     f"computes only the failed ones" if stored else "") + ":"]
        lines += [f"- {k}: {v}" for k, v in self.failures.items()]
        super().__init__("\n".join(lines))


@dataclass
class Outcome:
    """One job's end: its value (None when the worker stored it) or its error, and the attempts it took."""

    ok: bool
    value: object = None
    error: str = ""
    attempts: int | None = 1
    exc: BaseException | None = None


# ---------------------------------------------------------------------------------------------- the code's hash

_FINGERPRINTS: dict[str, str] = {}


def code_fingerprint(root: Path | str | None = None) -> str:
    """sha256 (12 hex digits) of lib's Python sources: every ``*.py`` under ``root`` (default: lib/), in the order of
    their sorted relative paths, each path and content hashed.

    Computed once per process and remembered, so it names the code this process loaded, not a file edited since.
    Part of every run-cache path (:func:`lib.records.cache_path`): a run stored by other code is a cache miss.
    """
    root = Path(root or LIB_ROOT).resolve()
    key = str(root)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.py")
                       if "__pycache__" not in p.parts and not p.name.startswith("."))
        for rel, p in files:
            h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
        _FINGERPRINTS[key] = h.hexdigest()[:12]
    return _FINGERPRINTS[key]


# -------------------------------------------------------------------------------------------- choosing a backend

def _papermill_parameter() -> str | None:
    main = sys.modules.get("__main__")
    value = getattr(main, "executor", None)
    return value if isinstance(value, str) and value.strip() else None


def resolve(name: str | None = None) -> str:
    """The backend's name: ``name``, else a papermill parameter ``executor`` in the notebook, else
    ``WORKBOOK_EXECUTOR``, else ``local``. An unknown name raises :class:`ExecutorError`."""
    chosen = name or _papermill_parameter() or os.environ.get("WORKBOOK_EXECUTOR", "").strip() or "local"
    chosen = chosen.strip().lower()
    if chosen not in BACKENDS:
        raise ExecutorError(f"unknown executor {chosen!r}; WORKBOOK_EXECUTOR (or the executor parameter) is one of "
                            f"{', '.join(BACKENDS)}")
    return chosen


def _retries() -> int:
    value = int(os.environ.get("WORKBOOK_RETRIES", DEFAULT_RETRIES))
    if value < 0:
        raise ValueError(f"WORKBOOK_RETRIES must be >= 0, got {value}")
    return value


def _flag(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes")


def get_executor(name: str | None = None, **options) -> Executor:
    """The executor :func:`resolve` picks, with ``options`` for its class (``retries``, ``workers``, ...)."""
    chosen = resolve(name)
    return {"local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}[chosen](**options)


def check(name: str | None = None) -> str:
    """Fail at once, before any work, when the chosen backend cannot run here; returns its name.

    Cheap (starts nothing): ``slurm`` needs ``sbatch`` on PATH (unless ``WORKBOOK_SLURM_LOCAL=1``) and submitit,
    ``ray`` needs Ray. :func:`lib.profiles.configure` calls it, so a notebook stops in its configuration cell.
    """
    chosen = resolve(name)
    if chosen == "slurm":
        SlurmExecutor._require()
    elif chosen == "ray":
        RayExecutor._require()
    return chosen


# ------------------------------------------------------------------------------------------ the worker's side

_FNS: dict[str, object] = {}
_SETUP_DONE = False


def _cloudpickle():
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - scikit-learn's joblib carries one
        from joblib.externals import cloudpickle
    return cloudpickle


def _load_fn(digest: str, source):
    fn = _FNS.get(digest)
    if fn is None:
        if source is None:
            raise RuntimeError(f"function {digest} was not shipped to this worker")
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
        if len(_FNS) > 8:
            _FNS.clear()
        fn = _FNS[digest] = _cloudpickle().loads(data)
    return fn


def _set_threads(threads: int) -> None:
    if "torch" in sys.modules:
        import torch
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    else:  # torch reads these when it is first imported
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


_BLAS_SET: int | None = None


def _set_blas(blas: int | None) -> None:
    """NumPy's BLAS threads, as the caller has them (a forked worker inherits them; others start with one)."""
    global _BLAS_SET
    if not blas or blas == _BLAS_SET:
        return
    try:
        import numpy  # noqa: F401  (loads the BLAS library threadpoolctl adjusts)
        from threadpoolctl import threadpool_limits
    except ImportError:   # pragma: no cover - scikit-learn brings threadpoolctl
        return
    threadpool_limits(limits=blas, user_api="blas")
    _BLAS_SET = blas


def blas_threads() -> int | None:
    """This process's NumPy BLAS threads (None when NumPy is not loaded or threadpoolctl is missing)."""
    if "numpy" not in sys.modules:
        return None
    try:
        from threadpoolctl import threadpool_info
    except ImportError:   # pragma: no cover
        return None
    counts = [d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"]
    return max(counts) if counts else None


def _worker_setup() -> None:
    """Once per worker process (spawned, Ray, SLURM): batch mode, and runs nested in a run stay in-process."""
    global _SETUP_DONE
    if not _SETUP_DONE:
        os.environ["WORKBOOK_PROGRESS"] = "0"
        os.environ["WORKBOOK_EXECUTOR"] = "local"
        os.environ["WORKBOOK_WORKERS"] = "1"
        _SETUP_DONE = True


def store(path: Path | str, value) -> None:
    """Write ``value`` to ``path`` atomically (a temporary file beside it, then a rename): a reader sees the whole
    result or none, even with two workers finishing the same run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            _cloudpickle().dump(value, f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path | str):
    with open(path, "rb") as f:
        return pickle.load(f)


def _execute(digest: str, source, job, target, fingerprint: str | None, threads: int | None = None,
             blas: int | None = None):
    """Run ``fn(job)``; with ``target`` store the result there and return None, else return it. ``threads`` (torch's
    intra-op threads) and ``blas`` (NumPy's BLAS threads) are set first, as the local backend would have them."""
    if fingerprint and code_fingerprint() != fingerprint:
        raise ExecutorError(f"this worker's lib (code {code_fingerprint()}) is not the caller's (code {fingerprint}): "
                            f"every worker must run the same checkout (a shared file system, or the same commit)")
    fn = _load_fn(digest, source)
    if threads:
        _set_threads(threads)
    _set_blas(blas)
    value = fn(job)
    if target is None:
        return value
    store(target, value)
    return None


def _remote_execute(digest: str, source, job, target, fingerprint: str | None, threads: int = 1,
                    blas: int | None = None):
    """The entry point of a Ray task or a SLURM job."""
    _worker_setup()
    _set_threads(threads)           # before the function's imports, where torch may read OMP_NUM_THREADS
    return _execute(digest, source, job, target, fingerprint, threads, blas)


_SLOTS = None
_SLOT = 0


def _init_pool_worker(start: str, slots, counter, gpus, digest: str, source, blas: int | None = None) -> None:
    global _SLOTS, _SLOT
    with counter.get_lock():
        _SLOT = counter.value
        counter.value += 1
    _SLOTS = slots
    if gpus:                        # before this process touches CUDA: its own GPU, k workers per GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[_SLOT % len(gpus)]
    if start == "fork":
        from .utils import _worker_init
        _worker_init()
    else:
        _worker_setup()
        _set_threads(1)
        _load_fn(digest, source)    # the function, once per worker
        _set_blas(blas)             # NumPy's BLAS threads as a forked worker would inherit them


def _pool_execute(index: int, digest: str, job, target, fingerprint, packed: bool):
    _SLOTS[_SLOT] = index + 1        # which run this worker holds, should it die
    try:
        if packed:
            job = _cloudpickle().loads(job)
        return _execute(digest, None, job, target, fingerprint)
    finally:
        _SLOTS[_SLOT] = 0


def _ship(fn, backend: str) -> tuple[bytes, str]:
    """``fn`` pickled by value (cloudpickle) and its digest; a clear error when it, or a global it uses, cannot be."""
    try:
        source = _cloudpickle().dumps(fn)
    except Exception as exc:  # noqa: BLE001
        raise ExecutorError(f"the run function {getattr(fn, '__qualname__', fn)!r} cannot be sent to {backend} workers "
                            f"({_describe(exc)}): it, or a global it uses, cannot be pickled; the local backend on a "
                            f"CPU forks and does not need to") from exc
    return source, hashlib.sha256(source).hexdigest()[:16]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:400] if first else type(exc).__name__


# ------------------------------------------------------------------------------------------------ the backends

class Executor:
    """One interface: :meth:`run` gives one :class:`Outcome` per job, :meth:`map` the values or :class:`RunsFailed`.

    ``fn`` may be a function defined in a notebook: the local backend forks (the function is inherited), the others
    ship it once per sweep with cloudpickle (by value, with the globals it uses). ``targets`` (one path or None
    per job) asks each worker to store its result there instead of returning it.
    """

    name = "?"

    def __init__(self, retries: int | None = None):
        self.retries = _retries() if retries is None else int(retries)

    def describe(self) -> str:
        return self.name

    @staticmethod
    def local_threads(n: int, workers: int | None = None) -> int:
        """The intra-op threads the local backend (with ``workers``) would give each of ``n`` jobs: 1 in worker
        processes, the caller's own count for a sweep it runs in-process (a worker of any backend uses the same,
        for identical results)."""
        return 1 if LocalExecutor(retries=0, workers=workers)._mode(n)[0] != "inline" else _torch_threads()

    def run(self, fn, jobs, targets=None, desc: str | None = None, on_done=None, resources: dict | None = None
            ) -> list[Outcome]:
        """Run ``fn(job)`` for every job; one :class:`Outcome` per job, in the order of ``jobs``.

        ``on_done(i, outcome)`` is called as each job ends for good. ``resources`` (``cpus``, ``gpus``,
        ``time_min``) sizes each job where the backend places jobs (Ray, SLURM); the local backend ignores it.
        """
        jobs = list(jobs)
        targets = list(targets) if targets is not None else [None] * len(jobs)
        if len(targets) != len(jobs):
            raise ValueError("one target per job")
        if not jobs:
            return []
        return self._run(fn, jobs, targets, code_fingerprint(), desc, on_done, resources or {})

    def map(self, fn, jobs, desc: str | None = None, labels=None, resources: dict | None = None) -> list:
        """``[fn(job) for job in jobs]`` through the backend; :class:`RunsFailed` (after all have ended) if any failed."""
        jobs = list(jobs)
        outs = self.run(fn, jobs, desc=desc, resources=resources)
        labels = list(labels) if labels is not None else [f"job {i}" for i in range(len(jobs))]
        raise_failures(outs, labels, self)
        return [o.value for o in outs]

    def _run(self, fn, jobs, targets, fingerprint, desc, on_done, resources):  # pragma: no cover
        raise NotImplementedError


def raise_failures(outcomes: list[Outcome], labels: list, executor: Executor, stored: str = "",
                   total: int | None = None) -> None:
    """Raise :class:`RunsFailed` naming every failed outcome with its error (chained to the first one's exception);
    ``total`` counts the whole sweep (runs from the cache included)."""
    failed = {labels[i]: o.error for i, o in enumerate(outcomes) if not o.ok}
    if failed:
        first = next((o.exc for o in outcomes if not o.ok and o.exc is not None), None)
        raise RunsFailed(failed, total or len(outcomes), executor.retries, executor.name, stored) from first


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def _cuda_present() -> bool:
    if "torch" not in sys.modules:
        import torch  # noqa: F401
    import torch
    return torch.cuda.is_available() or torch.cuda.is_initialized()


def _visible_gpus() -> list[str]:
    import torch
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if env is not None and env.strip():
        ids = [g.strip() for g in env.split(",") if g.strip()]
        return ids[:count] if count else ids
    return [str(i) for i in range(count)]


def runs_per_gpu(device_bytes: float | None = None, gpu_bytes: float | None = None,
                 host_bytes: float | None = None, cpus: int | None = None) -> int:
    """How many runs share one GPU, each in its own spawned process: ``WORKBOOK_RUNS_PER_GPU`` if set; else as many
    as fit in 80% of the GPU's memory at the run's estimated device memory plus a CUDA context each
    (``CUDA_CONTEXT_BYTES``), and in 80% of host memory at the run's host estimate, at most one per core and at most
    ``MAX_RUNS_PER_GPU``. The run's estimates are the last :func:`lib.budget.plan` made on a GPU in this process
    (a notebook's configuration cell makes one); without one, 1 (one run at a time, in-process, as before).
    """
    env = os.environ.get("WORKBOOK_RUNS_PER_GPU", "").strip()
    if env:
        return max(1, int(env))
    if device_bytes is None:
        from .budget import last_plan
        plan = last_plan()
        if plan is None or plan.device != "cuda":
            return 1
        device_bytes, host_bytes = plan.device_bytes, plan.host_bytes if host_bytes is None else host_bytes
    if gpu_bytes is None:
        import torch
        if not torch.cuda.is_available():
            return 1
        gpu_bytes = torch.cuda.get_device_properties(0).total_memory
    k = int(0.8 * gpu_bytes // (device_bytes + CUDA_CONTEXT_BYTES))
    if host_bytes:
        from .budget import host_memory_bytes
        k = min(k, int(0.8 * host_memory_bytes() // host_bytes))
    return max(1, min(k, MAX_RUNS_PER_GPU, cpus or os.cpu_count() or 1))


class LocalExecutor(Executor):
    """This machine's processes (the default backend).

    On a CPU: ``workers`` (default ``WORKBOOK_WORKERS``, else every core) forked processes with one thread each;
    a single job, or one worker, runs in-process. With a CUDA GPU: never forked; :func:`runs_per_gpu` x GPUs
    spawned processes (at most ``workers``), each given one GPU through ``CUDA_VISIBLE_DEVICES``, or in-process
    when that makes one. A job that raises, or whose worker dies, is run again up to ``retries`` times (only the
    runs the dead worker pool held count an attempt; the others are resubmitted for free).
    """

    name = "local"

    def __init__(self, retries: int | None = None, workers: int | None = None, start_method: str | None = None):
        super().__init__(retries)
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.start_method = start_method

    def _mode(self, n: int) -> tuple[str, int, list[str]]:
        import multiprocessing as mp
        workers = self.workers or int(os.environ.get("WORKBOOK_WORKERS", 0)) or os.cpu_count() or 1
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if self.start_method:                       # forced (the tests exercise the spawn path on a CPU)
            workers = min(workers, n)
            return ("inline" if workers <= 1 else self.start_method), workers, []
        if _cuda_present():
            gpus = _visible_gpus()
            workers = min(workers, runs_per_gpu() * max(1, len(gpus)), n)     # at most one per core, too
            return ("inline" if workers <= 1 else "spawn"), workers, gpus
        workers = min(workers, n)
        if workers <= 1 or "fork" not in mp.get_all_start_methods():
            return "inline", 1, []
        return "fork", workers, []

    def describe(self) -> str:
        return "local"

    def _run(self, fn, jobs, targets, fingerprint, desc, on_done, resources):
        mode, workers, gpus = self._mode(len(jobs))
        if mode == "inline":
            return self._inline(fn, jobs, targets, fingerprint, desc, on_done)
        return self._pool(fn, jobs, targets, fingerprint, desc, on_done, mode, workers, gpus)

    def _inline(self, fn, jobs, targets, fingerprint, desc, on_done):
        from .utils import progress
        digest = f"inline-{uuid.uuid4().hex}"
        _FNS[digest] = fn
        out = []
        try:
            for i in progress(range(len(jobs)), desc=desc):
                for attempt in range(1, self.retries + 2):
                    try:
                        o = Outcome(True, _execute(digest, None, jobs[i], targets[i], fingerprint), attempts=attempt)
                        break
                    except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the others
                        o = Outcome(False, error=_describe(exc), attempts=attempt, exc=exc)
                out.append(o)
                if on_done:
                    on_done(i, o)
        finally:
            _FNS.pop(digest, None)
        return out

    def _pool(self, fn, jobs, targets, fingerprint, desc, on_done, start, workers, gpus):
        import concurrent.futures as cf
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool

        from .utils import progress
        ctx = mp.get_context(start)
        n = len(jobs)
        packed = start != "fork"
        if packed:      # a spawned worker cannot look a notebook's function up: ship it once, by value
            source, digest = _ship(fn, "spawned")
            payloads = [_cloudpickle().dumps(j) for j in jobs]
        else:           # a forked worker inherits it
            source, digest, payloads = None, f"fork-{uuid.uuid4().hex}", jobs
            _FNS[digest] = fn
        out: list[Outcome | None] = [None] * n
        attempts = [0] * n
        todo = list(range(n))
        try:
            while todo:
                slots, counter = ctx.Array("q", workers, lock=False), ctx.Value("i", 0)
                init = (start, slots, counter, gpus, digest, source, blas_threads() if packed else None)
                retry, lost, suspects = [], [], None
                with cf.ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init_pool_worker,
                                            initargs=init) as ex:
                    futures = {ex.submit(_pool_execute, i, digest, payloads[i], targets[i], fingerprint, packed): i
                               for i in todo}
                    for f in progress(cf.as_completed(futures), total=len(futures), desc=desc):
                        i = futures[f]
                        try:
                            value = f.result()
                        except BrokenProcessPool:
                            if suspects is None:   # the runs the pool held when a worker died
                                suspects = {v - 1 for v in slots if v > 0}
                            lost.append(i)
                            continue
                        except Exception as exc:  # noqa: BLE001
                            attempts[i] += 1
                            out[i] = Outcome(False, error=_describe(exc), attempts=attempts[i], exc=exc)
                            if attempts[i] <= self.retries:
                                retry.append(i)
                            elif on_done:
                                on_done(i, out[i])
                            continue
                        attempts[i] += 1
                        out[i] = Outcome(True, value, attempts=attempts[i])
                        if on_done:
                            on_done(i, out[i])
                for i in lost:
                    if not suspects or i in suspects:
                        attempts[i] += 1
                        out[i] = Outcome(False, error="its worker process died (killed, or out of memory)",
                                         attempts=attempts[i])
                        if attempts[i] > self.retries:
                            if on_done:
                                on_done(i, out[i])
                            continue
                    retry.append(i)
                todo = sorted(retry)
        finally:
            _FNS.pop(digest, None)
        return out


class RayExecutor(Executor):
    """Ray tasks: on the cluster at ``RAY_ADDRESS`` (or ``address``), else on a local Ray instance started with
    ``WORKBOOK_WORKERS`` (else every) CPUs and no dashboard, kept for the rest of the process.

    Each run is a task of ``WORKBOOK_RAY_CPUS`` CPUs (default 1) and ``WORKBOOK_RAY_GPUS`` GPUs (default: none on a
    cluster without GPUs, else 1 / :func:`runs_per_gpu`, so Ray packs several runs on a GPU); Ray retries a task
    whose worker died or that raised (``max_retries = retries``, ``retry_exceptions``). The function is put in the
    object store once per sweep and loaded once per worker process.
    """

    name = "ray"

    def __init__(self, retries: int | None = None, address: str | None = None):
        super().__init__(retries)
        self._require()
        self.address = address

    @staticmethod
    def _require():
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise ExecutorError("WORKBOOK_EXECUTOR=ray needs Ray: `make cluster`, or `.venv/bin/pip install -r "
                                "requirements-cluster.txt -c requirements.txt`") from exc

    def _ensure(self):
        import ray
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS", "").strip()
            if address:
                # a cluster's workers do not inherit this process's environment: pass the workbook's variables
                env = {k: v for k, v in os.environ.items() if k.startswith("WORKBOOK_")
                       and k not in ("WORKBOOK_EXECUTOR", "WORKBOOK_WORKERS")}
                ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
            else:
                import logging
                cpus = int(os.environ.get("WORKBOOK_WORKERS", 0)) or os.cpu_count() or 1
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        return ray

    def describe(self) -> str:
        return "ray" + (f" ({self.address or os.environ.get('RAY_ADDRESS')})"
                        if self.address or os.environ.get("RAY_ADDRESS") else " (local)")

    def _options(self, ray, resources: dict) -> dict:
        cpus = resources.get("cpus") or float(os.environ.get("WORKBOOK_RAY_CPUS", 1))
        gpus = resources.get("gpus")
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        if gpus == "auto":            # a whole notebook: one GPU where the cluster has any
            gpus = 1.0 if has_gpu else 0.0
        elif gpus is None:
            env = os.environ.get("WORKBOOK_RAY_GPUS", "").strip()
            gpus = float(env) if env else (1.0 / runs_per_gpu() if has_gpu else 0.0)
        biggest = max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=cpus)
        return dict(num_cpus=min(cpus, biggest) if biggest else cpus, num_gpus=gpus, max_retries=self.retries,
                    retry_exceptions=True)

    def _run(self, fn, jobs, targets, fingerprint, desc, on_done, resources):
        from .utils import progress
        source, digest = _ship(fn, "ray")
        ray = self._ensure()
        ref = ray.put(source)
        threads = resources.get("threads") or self.local_threads(len(jobs))
        blas = blas_threads()
        task = ray.remote(_remote_execute).options(**self._options(ray, resources))
        refs = {task.remote(digest, ref, job, None if t is None else str(t), fingerprint, threads, blas): i
                for i, (job, t) in enumerate(zip(jobs, targets))}
        out: list[Outcome | None] = [None] * len(jobs)
        bar = progress(total=len(jobs), desc=desc)
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for r in ready:
                    i = refs[r]
                    try:
                        out[i] = Outcome(True, ray.get(r), attempts=None)
                    except ray.exceptions.RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        out[i] = Outcome(False, error=_describe(cause) if cause is not None else
                                         str(exc).strip().splitlines()[-1][:400], attempts=None, exc=cause or exc)
                    except ray.exceptions.RayError as exc:      # the worker died on every attempt, or Ray failed
                        out[i] = Outcome(False, error=_describe(exc), attempts=None, exc=exc)
                    bar.update()
                    if on_done:
                        on_done(i, out[i])
        finally:
            bar.close()
        return out


def slurm_parameters(resources: dict | None = None) -> dict:
    """submitit's parameters for each job, from the environment (``resources`` overrides cpus/gpus/time):

    ``WORKBOOK_SLURM_TIME`` minutes per job (default 240), ``WORKBOOK_SLURM_GPUS`` per job (default 0),
    ``WORKBOOK_SLURM_CPUS`` per job (default 1), ``WORKBOOK_SLURM_MEM_GB`` (default: the partition's),
    ``WORKBOOK_SLURM_PARTITION``, ``WORKBOOK_SLURM_PARALLEL`` jobs of an array running at once (default 64), and
    ``WORKBOOK_SLURM_EXTRA``: more ``sbatch`` options as ``key=value`` pairs separated by commas
    (``account=abc,qos=high``).
    """
    r = resources or {}
    env = os.environ.get
    p = dict(name="workbook", timeout_min=int(r.get("time_min") or env("WORKBOOK_SLURM_TIME") or 240),
             cpus_per_task=int(r.get("cpus") or env("WORKBOOK_SLURM_CPUS") or 1),
             gpus_per_node=int(r["gpus"] if r.get("gpus") not in (None, "auto") else env("WORKBOOK_SLURM_GPUS") or 0),
             slurm_array_parallelism=int(env("WORKBOOK_SLURM_PARALLEL") or 64))
    if env("WORKBOOK_SLURM_MEM_GB"):
        p["mem_gb"] = float(env("WORKBOOK_SLURM_MEM_GB"))
    if env("WORKBOOK_SLURM_PARTITION"):
        p["slurm_partition"] = env("WORKBOOK_SLURM_PARTITION")
    extra = [kv.split("=", 1) for kv in (env("WORKBOOK_SLURM_EXTRA") or "").split(",") if kv.strip()]
    if extra:
        p["slurm_additional_parameters"] = {k.strip(): v.strip() for k, v in extra}
    return p


class SlurmExecutor(Executor):
    """submitit: each sweep one SLURM job array of its runs (sized by :func:`slurm_parameters`), from a login node.

    Job scripts, logs and the pickled function live under ``WORKBOOK_SLURM_DIR`` (default ``results/slurm/``): it
    must be on storage the compute nodes share, as the run cache must. SLURM does not retry a failed job, so the
    runs that failed (an exception, a job killed or timed out) are resubmitted as a new array, up to ``retries``
    times. Without ``sbatch`` on PATH it fails at once; ``local=True`` (or ``WORKBOOK_SLURM_LOCAL=1``) uses
    submitit's local executor instead, jobs as processes on this machine (the tests' path).
    """

    name = "slurm"

    def __init__(self, retries: int | None = None, local: bool | None = None, folder: Path | str | None = None):
        super().__init__(retries)
        self.local = _flag("WORKBOOK_SLURM_LOCAL") if local is None else bool(local)
        self._require(self.local)
        self.folder = Path(folder or os.environ.get("WORKBOOK_SLURM_DIR") or _results_root() / "slurm")

    @staticmethod
    def _require(local: bool | None = None):
        local = _flag("WORKBOOK_SLURM_LOCAL") if local is None else local
        if not local and shutil.which("sbatch") is None:
            raise ExecutorError("WORKBOOK_EXECUTOR=slurm, but this machine has no `sbatch` on PATH: run from a SLURM "
                                "login node (where sbatch and squeue work), or choose WORKBOOK_EXECUTOR=local or ray")
        try:
            import submitit  # noqa: F401
        except ImportError as exc:
            raise ExecutorError("WORKBOOK_EXECUTOR=slurm needs submitit: `make cluster`, or `.venv/bin/pip install "
                                "-r requirements-cluster.txt -c requirements.txt`") from exc

    def describe(self) -> str:
        return "slurm (submitit's local executor)" if self.local else "slurm"

    def _run(self, fn, jobs, targets, fingerprint, desc, on_done, resources):
        import submitit
        from submitit.helpers import as_completed

        from .utils import progress
        source, digest = _ship(fn, "slurm")
        fn_file = self.folder / "functions" / f"{digest}.pkl"
        if not fn_file.exists():          # written once, read once by each job (not pickled into every job)
            fn_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = fn_file.with_name(f".{fn_file.name}.{os.getpid()}.tmp")
            tmp.write_bytes(source)
            os.replace(tmp, fn_file)
        ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster="local" if self.local else "slurm")
        params = slurm_parameters(resources)
        if self.local:
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
            params["gpus_per_node"] = 0
        ex.update_parameters(**params)
        threads = resources.get("threads") or self.local_threads(len(jobs))
        blas = blas_threads()
        n = len(jobs)
        out: list[Outcome | None] = [None] * n
        attempts = [0] * n
        todo = list(range(n))
        bar = progress(total=n, desc=desc)
        try:
            while todo:
                sjobs = ex.map_array(_remote_execute, [digest] * len(todo), [str(fn_file)] * len(todo),
                                     [jobs[i] for i in todo], [None if targets[i] is None else str(targets[i])
                                                               for i in todo],
                                     [fingerprint] * len(todo), [threads] * len(todo), [blas] * len(todo))
                index = {id(j): i for j, i in zip(sjobs, todo)}
                if self.local:
                    for j in sjobs:       # a local job that died leaves no result to wait for on a slow file system
                        j._results_timeout_s = 1
                retry = []
                for j in as_completed(sjobs, poll_frequency=0.5 if self.local else 10):
                    i = index[id(j)]
                    attempts[i] += 1
                    try:
                        out[i] = Outcome(True, j.result(), attempts=attempts[i])
                    except Exception as exc:  # noqa: BLE001
                        out[i] = Outcome(False, error=_submitit_error(exc), attempts=attempts[i], exc=exc)
                        if attempts[i] <= self.retries:
                            retry.append(i)
                            continue
                    bar.update()
                    if on_done:
                        on_done(i, out[i])
                todo = sorted(retry)
        finally:
            bar.close()
        return out


def _submitit_error(exc: BaseException) -> str:
    """The exception line of a job's trace, or why the job left no result (killed, timed out, cancelled)."""
    import re
    text = str(exc)
    if "failed during processing" in text:
        trace = text.split("----------------------")[1] if text.count("----------------------") >= 2 else text
        lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b", ln)]
        return (errors[-1] if errors else lines[-1] if lines else text)[:400]
    if "has not produced any output" in text:
        state = re.search(r"state: ([A-Z_]+)", text)
        return f"its job ended without a result (state {state.group(1) if state else 'unknown'}: killed, timed out " \
               f"or cancelled)"
    return _describe(exc)


def _results_root() -> Path:
    from . import paths
    return paths.results_dir()


# ------------------------------------------------------------------------------------------------ whole notebooks

class NotebookTask:
    """``execute(src, dst, profile, kernel)`` in a worker, with the environment its kernel must inherit: how
    ``scripts/reproduce.py --executor ray|slurm`` runs a whole notebook as one task."""

    def __init__(self, execute, env: dict):
        self.execute, self.env = execute, dict(env)

    def __call__(self, job):
        src, dst, profile, kernel = job
        os.environ.update(self.env)
        for var in ("MPLBACKEND", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.pop(var, None)   # the kernel draws inline and uses its node's cores, as under make reproduce
        return self.execute(Path(src), Path(dst), profile, kernel)


# ------------------------------------------------------------------------------------------------ checking a setup

def probe(seed: int) -> tuple:
    """A tiny seeded torch computation (a few matrix products and reductions): the sweep that
    ``python -m lib.executors check`` runs under each backend."""
    import torch
    g = torch.Generator().manual_seed(int(seed))
    a, b = torch.randn(64, 64, generator=g), torch.randn(64, 8, generator=g)
    h = torch.tanh(a @ a.T / 8) @ b
    return int(seed), h.sum().item(), h.pow(2).mean().item(), h.numpy().tobytes()


def _check_main(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m lib.executors",
                                 description="check a backend: the probe sweep there equals the local run, byte for byte")
    ap.add_argument("command", choices=["check"])
    ap.add_argument("--executor", default=None, help="local | ray | slurm (default: WORKBOOK_EXECUTOR)")
    ap.add_argument("--jobs", type=int, default=8)
    args = ap.parse_args(argv)
    name = resolve(args.executor)
    seeds = list(range(args.jobs))
    t0 = time.perf_counter()
    here = LocalExecutor().map(probe, seeds)
    t1 = time.perf_counter()
    there = get_executor(name).map(probe, seeds)
    t2 = time.perf_counter()
    same = [pickle.dumps(a) == pickle.dumps(b) for a, b in zip(here, there)]
    print(f"{args.jobs} probe runs: local {t1 - t0:.1f} s, {name} {t2 - t1:.1f} s (code {code_fingerprint()}); "
          f"{sum(same)} of {len(same)} identical byte for byte")
    return 0 if all(same) else 1


if __name__ == "__main__":     # the module itself, not this __main__ copy, so that workers import what they run
    from lib.executors import _check_main as _main
    raise SystemExit(_main(sys.argv[1:]))
