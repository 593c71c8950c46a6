"""lib.executors: one sweep, three backends (local processes, a local Ray cluster, submitit's local executor),
the same results byte for byte; failures named while the other runs land; a killed worker retried; an
interrupted sweep resumed; a change to lib's code invalidating the cached runs; slurm without sbatch refused."""
import os
import pickle
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from lib import executors, records

# Ray and submitit run these functions in other processes that cannot import this test module: ship them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

RETRIES = 1


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("WORKBOOK_SLURM_DIR", str(tmp_path / "slurm"))
    monkeypatch.setenv("WORKBOOK_RETRIES", str(RETRIES))
    monkeypatch.setenv("WORKBOOK_WORKERS", "2")
    monkeypatch.setenv("WORKBOOK_SLURM_LOCAL", "1")     # slurm = submitit's local executor: jobs as processes here
    for var in ("WORKBOOK_EXECUTOR", "RAY_ADDRESS", "WORKBOOK_RUNS_PER_GPU"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    saved = {k: os.environ.pop(k, None) for k in ("RAY_ADDRESS", "WORKBOOK_WORKERS")}
    os.environ["WORKBOOK_WORKERS"] = "2"
    try:
        executors.RayExecutor()._ensure()          # the backend's own start: a local cluster, 2 CPUs, no dashboard
        assert ray.cluster_resources()["CPU"] == 2
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


# module-scoped, so pytest runs every test of one backend before the next: nothing forks beside a live Ray driver
@pytest.fixture(scope="module", params=["local", "slurm", "ray"])
def backend(request):
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    if request.param == "slurm":
        pytest.importorskip("submitit")
    return request.param


def _mark(job):
    """(value, folder): leave a file per attempt, fail on 'bad' values, return twice the value."""
    value, folder = job
    Path(folder, f"ran-{value}-{os.getpid()}-{time.monotonic_ns()}").touch()
    if value == 2:
        raise ValueError(f"run {value} cannot converge")
    return value * 2


def _dies_once(job):
    """The worker running value 1 kills itself on the first attempt (a marker file tells attempts apart)."""
    value, folder = job
    first = Path(folder, f"started-{value}")
    if value == 1 and not first.exists():
        first.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    Path(folder, f"ran-{value}-{os.getpid()}-{time.monotonic_ns()}").touch()
    return value * 10


def _runs(folder: Path, value=None) -> int:
    return len(list(folder.glob("ran-*" if value is None else f"ran-{value}-*")))


def _keys(jobs):
    return [records.config_key({"sweep": "test"}, j if not isinstance(j, tuple) else j[0]) for j in jobs]


def test_the_code_fingerprint_hashes_every_source_file(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "_FINGERPRINTS", {})
    tree = tmp_path / "lib"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.py").write_text("x = 1\n")
    (tree / "sub" / "b.py").write_text("y = 2\n")
    executors._FINGERPRINTS.clear()
    before = executors.code_fingerprint(tree)
    (tree / "sub" / "__pycache__").mkdir()
    (tree / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"\0")
    (tree / "notes.txt").write_text("not code")
    executors._FINGERPRINTS.clear()
    assert executors.code_fingerprint(tree) == before               # only *.py sources count
    (tree / "sub" / "b.py").write_text("y = 3\n")
    assert executors.code_fingerprint(tree) == before               # remembered: the code this process loaded
    executors._FINGERPRINTS.clear()
    assert executors.code_fingerprint(tree) != before
    executors._FINGERPRINTS.clear()
    assert executors.code_fingerprint() == executors.code_fingerprint(executors.LIB_ROOT) and len(before) == 12


def test_a_change_to_lib_invalidates_the_cached_runs(tmp_path, monkeypatch, capsys):
    tree = tmp_path / "lib"
    tree.mkdir()
    (tree / "fl.py").write_text("ROUNDS = 10\n")
    monkeypatch.setattr(executors, "LIB_ROOT", tree)
    monkeypatch.setattr(executors, "_FINGERPRINTS", {})
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [(v, str(marks)) for v in (0, 1, 3)]
    keys = _keys(jobs)
    old_code = executors.code_fingerprint()
    # a stored run from before runs were keyed on the code: not reused, and no crash
    legacy = records.cache_path("nb", keys[0], "full").parent.parent / f"{keys[0]}.pkl"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"not a pickle of this code")
    records.cached_map(_mark, jobs, "nb", "full", keys)
    assert _runs(marks) == 3 and "1 stored by other code not reused" in capsys.readouterr().out
    records.cached_map(_mark, jobs, "nb", "full", keys)
    assert _runs(marks) == 3 and f"3 from the cache of lib code {old_code}" in capsys.readouterr().out
    (tree / "fl.py").write_text("ROUNDS = 11\n")                    # a fix in lib, then the notebook resumed
    monkeypatch.setattr(executors, "_FINGERPRINTS", {})
    new_code = executors.code_fingerprint()
    assert new_code != old_code
    records.cached_map(_mark, jobs, "nb", "full", keys)
    out = capsys.readouterr().out
    assert _runs(marks) == 6, "every run is computed again by the new code"
    assert f"3 runs: 0 from the cache of lib code {new_code}, 3 to compute" in out and "3 stored by other code" in out


def test_slurm_without_sbatch_fails_at_once(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))                          # no sbatch here (nor anywhere on this PATH)
    monkeypatch.delenv("WORKBOOK_SLURM_LOCAL")                      # the real SLURM path
    monkeypatch.setenv("WORKBOOK_EXECUTOR", "slurm")
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [(v, str(marks)) for v in range(3)]
    t0 = time.perf_counter()
    with pytest.raises(executors.ExecutorError, match="no `sbatch` on PATH.*login node"):
        records.cached_map(_mark, jobs, "nb", "full", _keys(jobs))
    from lib.utils import parallel_map
    with pytest.raises(executors.ExecutorError, match="sbatch"):
        parallel_map(_mark, jobs)
    from lib.profiles import configure
    with pytest.raises(executors.ExecutorError, match="sbatch"):     # a notebook stops in its configuration cell
        configure("quick", {"quick": {"a": 1}, "full": {"a": 2}, "smoke": {}})
    assert time.perf_counter() - t0 < 5 and _runs(marks) == 0
    assert not (tmp_path / "results").exists() and not (tmp_path / "slurm").exists()


def test_the_executor_is_chosen_by_argument_papermill_parameter_or_environment(monkeypatch):
    assert executors.resolve() == "local"
    monkeypatch.setenv("WORKBOOK_EXECUTOR", "ray")
    assert executors.resolve() == "ray"
    monkeypatch.setattr(sys.modules["__main__"], "executor", "slurm", raising=False)   # papermill -p executor slurm
    assert executors.resolve() == "slurm" and executors.resolve("local") == "local"
    with pytest.raises(executors.ExecutorError, match="unknown executor 'dask'"):
        executors.resolve("dask")


def _where(job):
    return (job * 3, "_pytest" in sys.modules, os.environ.get("OMP_NUM_THREADS"), os.environ["WORKBOOK_EXECUTOR"],
            executors.blas_threads())


def test_spawned_workers_run_a_function_shipped_by_value():
    out = executors.LocalExecutor(workers=2, start_method="spawn").map(_where, [1, 2, 3])
    assert [o[0] for o in out] == [3, 6, 9]
    # a spawned process (a fresh interpreter: no pytest in it, unlike a forked one), one thread, nested runs local,
    # NumPy's BLAS threads as a forked worker inherits them
    assert {o[1:] for o in out} == {(False, "1", "local", executors.blas_threads())}


def test_a_gpu_machine_spawns_as_many_runs_per_gpu_as_fit(monkeypatch):
    import torch

    from lib import budget
    gb = 1e9
    assert executors.runs_per_gpu(device_bytes=2 * gb, gpu_bytes=80 * gb, cpus=16) == executors.MAX_RUNS_PER_GPU
    assert executors.runs_per_gpu(device_bytes=20 * gb, gpu_bytes=80 * gb, cpus=16) == 3   # 64 GB / 20.75 GB
    assert executors.runs_per_gpu(device_bytes=20 * gb, gpu_bytes=80 * gb, cpus=2) == 2    # one core per run
    assert executors.runs_per_gpu(device_bytes=90 * gb, gpu_bytes=80 * gb, cpus=16) == 1
    monkeypatch.setattr(budget, "_LAST_PLAN", None)
    assert executors.runs_per_gpu() == 1                            # no plan: one run at a time, as before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert executors.LocalExecutor()._mode(4)[0] == "inline"
    monkeypatch.setenv("WORKBOOK_RUNS_PER_GPU", "2")
    assert executors.runs_per_gpu() == 2
    assert executors.LocalExecutor()._mode(4)[:2] == ("spawn", 2)   # never forked once a GPU is present
    assert executors.LocalExecutor(workers=1)._mode(4)[0] == "inline"


def test_a_sweep_gives_the_local_results_byte_for_byte_under_every_backend(backend, tmp_path, monkeypatch):
    seeds = [0, 1, 2, 3]
    keys = _keys(seeds)
    if backend == "ray":         # the local run in-process (nothing forks beside a live Ray driver): the same results
        monkeypatch.setenv("WORKBOOK_WORKERS", "1")
    local = records.cached_map(executors.probe, seeds, "probe", "full", keys, executor="local")
    monkeypatch.setenv("WORKBOOK_WORKERS", "2")
    local_files = {k: records.cache_path("probe", k, "full").read_bytes() for k in keys}
    for p in (tmp_path / "results").rglob("*.pkl"):
        p.unlink()
    there = records.cached_map(executors.probe, seeds, "probe", "full", keys, executor=backend)
    assert [pickle.dumps(there[k]) for k in keys] == [pickle.dumps(local[k]) for k in keys]
    assert {k: records.cache_path("probe", k, "full").read_bytes() for k in keys} == local_files
    # the uncached path (parallel_map, cached_map with the cache off): results travel back, the same again
    assert records.cached_map(executors.probe, seeds[:2], "probe", "full", keys[:2], enabled=False,
                              executor=backend) == {k: local[k] for k in keys[:2]}
    # because every run there has the threads a local worker has: torch's intra-op threads and NumPy's BLAS threads
    from lib.utils import parallel_map
    assert parallel_map(_threads, [0, 1], executor=backend) == [(1, executors.blas_threads())] * 2


def _threads(_):
    import torch
    return torch.get_num_threads(), executors.blas_threads()


def test_a_failing_run_is_named_with_its_error_while_the_others_land(backend, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [(v, str(marks)) for v in range(4)]
    keys = _keys(jobs)
    with pytest.raises(executors.RunsFailed) as info:
        records.cached_map(_mark, jobs, "fails", "full", keys, executor=backend)
    err = info.value
    assert list(err.failures) == [keys[2]] and "ValueError: run 2 cannot converge" in err.failures[keys[2]]
    assert keys[2] in str(err) and "1 of 4 runs failed" in str(err) and f"{RETRIES + 1} attempts" in str(err)
    assert _runs(marks, 2) == RETRIES + 1                       # retried, then reported
    assert [records.cache_exists("fails", k, "full") for k in keys] == [True, True, False, True]
    # parallel_map reports the same way, naming the job
    from lib.utils import parallel_map
    with pytest.raises(executors.RunsFailed, match="job 2: ValueError: run 2 cannot converge"):
        parallel_map(_mark, jobs, executor=backend)


def test_a_killed_worker_is_retried_and_the_sweep_completes(backend, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [(v, str(marks)) for v in range(4)]
    keys = _keys(jobs)
    out = records.cached_map(_dies_once, jobs, "killed", "full", keys, executor=backend)
    assert (marks / "started-1").exists()                        # its first worker did die
    assert list(out.values()) == [0, 10, 20, 30] and _runs(marks, 1) == 1


def test_an_interrupted_sweep_recomputes_only_the_missing_runs(backend, tmp_path, capsys):
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [(v, str(marks)) for v in (0, 1, 3, 4, 5)]
    keys = _keys(jobs)
    first = records.cached_map(_mark, jobs, "resume", "full", keys, executor=backend)
    assert _runs(marks) == 5
    for k in (keys[1], keys[3]):                               # the sweep stopped before these two were stored
        records.cache_path("resume", k, "full").unlink()
    for m in marks.iterdir():
        m.unlink()
    capsys.readouterr()
    assert records.cached_map(_mark, jobs, "resume", "full", keys, executor=backend) == first
    assert sorted(m.name.split("-")[1] for m in marks.iterdir()) == ["1", "4"]
    line = capsys.readouterr().out
    assert f"5 runs: 3 from the cache of lib code {executors.code_fingerprint()}, 2 to compute ({backend}" in line


def _fake_execute(src, dst, profile, kernel):
    Path(dst).write_text(f"{Path(src).name} {profile} {os.environ['WORKBOOK_EXECUTOR']} {os.environ['WORKBOOK_WORKERS']}")
    return Path(src).name != "02_b.ipynb", 0.1, "" if Path(src).name != "02_b.ipynb" else "CellExecutionError: boom"


def test_reproduce_spreads_whole_notebooks_over_a_cluster(ray_cluster, tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import reproduce
    monkeypatch.setenv("WORKBOOK_NB_CPUS", "1")
    todo = [tmp_path / "01_a.ipynb", tmp_path / "02_b.ipynb"]
    out = tmp_path / "runs"
    out.mkdir()
    done = []
    reproduce.spread(todo, out, "quick", "fl-workbook", "ray", lambda *a: done.append(a), execute_fn=_fake_execute)
    assert sorted((nb.name, ok, err) for nb, _, ok, _, err in done) == [
        ("01_a.ipynb", True, ""), ("02_b.ipynb", False, "CellExecutionError: boom")]
    # each notebook ran as one task, its own runs local on the task's CPUs
    assert (out / "01_a.ipynb").read_text() == "01_a.ipynb quick local 1"


def test_a_worker_running_other_code_refuses_the_run(tmp_path):
    executors._FNS["refuse-test"] = lambda job: job
    try:
        with pytest.raises(executors.ExecutorError, match="is not the caller's"):
            executors._execute("refuse-test", None, 1, tmp_path / "r.pkl", "000000000000")
        assert not (tmp_path / "r.pkl").exists()
        assert executors._execute("refuse-test", None, 1, None, executors.code_fingerprint()) == 1
    finally:
        executors._FNS.pop("refuse-test")


_LOCK = __import__("threading").Lock()


def _uses_a_lock(job):
    with _LOCK:
        return job


def test_a_run_function_that_cannot_be_shipped_is_named_before_any_work():
    with pytest.raises(executors.ExecutorError, match="'_uses_a_lock' cannot be sent to spawned workers.*lock"):
        executors.LocalExecutor(workers=2, start_method="spawn").map(_uses_a_lock, [1, 2])
    assert executors.LocalExecutor(workers=2).map(_uses_a_lock, [1, 2]) == [1, 2]     # forked: inherited as it is
