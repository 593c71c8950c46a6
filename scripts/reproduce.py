#!/usr/bin/env python3
"""Execute the notebooks headless with papermill (``make reproduce`` / ``make record``).

reproduce: notebooks/NN_*.ipynb -> runs/<profile>/NN_*.ipynb, figures/ and results/<profile>/;
           each notebook that ran to the end becomes the claims of record (claims/<profile>/),
           one that failed keeps its earlier rows, marked stale; then REPORT.md. A failing
           notebook does not stop the others; the exit code is non-zero if any failed.
           --executor ray|slurm (make reproduce EXECUTOR=...) spreads the notebooks over a
           cluster, each one task (Ray) or one job (SLURM) with WORKBOOK_NB_CPUS CPUs and
           WORKBOOK_NB_GPUS GPUs, its runs local to that task; the default runs them here in turn.
           A full-profile run that becomes the claims of record also stores its executed
           notebook, stripped, with the commit and date it ran at, in the tracked folder
           runs_of_record/full/ (the book renders it), unless it exceeds RUN_OF_RECORD_LIMIT.
record:    re-execute notebooks in place at the quick profile, strip papermill's timing
           metadata, and store every checked value with its tolerance beside the notebook
           (notebooks/NN_*.expected.json), which `make test` compares against.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lib.executors import ExecutorError  # noqa: E402
from lib.profiles import resolve_profile  # noqa: E402
from lib.report import main as report, mark_stale, promote  # noqa: E402

RECORDED_PROFILES = ("quick", "full")   # smoke runs test code paths; their numbers are not claims
RUN_OF_RECORD_PROFILES = ("full",)      # quick runs of record are the committed notebooks themselves
RUN_OF_RECORD_DIR = ROOT / "runs_of_record"
RUN_OF_RECORD_LIMIT = 5_000_000         # bytes per stored notebook (figures are embedded PNGs)


def notebooks(nb: str | None) -> list[Path]:
    found = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if nb:
        found = [p for p in found if p.name.startswith(nb.zfill(2) + "_") or p.stem == nb]
        if not found:
            raise SystemExit(f"no notebook matches NB={nb}; expected a number like 01 or a name like 01_initialization_matters")
    return found


def strip(path: Path) -> None:
    """Drop papermill's and nbclient's volatile metadata (timings, exceptions) from a notebook."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)       # a progress widget's state: the book would fetch its JS from a CDN
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                out.get("metadata", {}).pop("papermill", None)
                out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("output_type") not in ("display_data",)
                            or o.get("data")]
    nbformat.write(nb, path)


# a "What we see" cell describes the quick profile's recorded outputs; in another profile's run of record it is
# replaced by this note (the run's own numbers are its outputs and its claims of record)
# (so is a "The full profile" section, which quotes a record that may be older than this run)
QUICK_PROSE = ("**What we see", "## The full profile")
QUICK_PROSE_NOTE = ("*What we see* is written for the quick profile's outputs, so it is left out of this {profile} run of "
                    "record; read the outputs above, and the claims table at the end (`claims/{profile}/{notebook}.json`, "
                    "REPORT.md).")
RECORD_SECTION_NOTE = ("## The full profile\n\nThe quick chapter's section on the full profile quotes the claims of record; "
                       "in this {profile} run of record they are the claims table at the end "
                       "(`claims/{profile}/{notebook}.json`, REPORT.md).")


def drop_quick_prose(nb, profile: str, notebook: str) -> None:
    """Replace, in a run of record of another profile than quick, the cells written for the quick outputs."""
    if profile == "quick":
        return
    for cell in nb.cells:
        src = cell.source.lstrip() if cell.cell_type == "markdown" else ""
        if src.startswith(QUICK_PROSE[0]):
            cell.source = QUICK_PROSE_NOTE.format(profile=profile, notebook=notebook)
        elif src.startswith(QUICK_PROSE[1]):
            cell.source = RECORD_SECTION_NOTE.format(profile=profile, notebook=notebook)


def store_run_of_record(executed: Path, notebook: str, profile: str, claims_file: Path | None = None,
                        limit: int = RUN_OF_RECORD_LIMIT, out_dir: Path | None = None) -> Path | None:
    """Track an executed run of record: ``runs_of_record/<profile>/<notebook>.ipynb``, stripped.

    The notebook's metadata gets ``workbook_run`` = profile, commit, date and code hash, taken from its claims of
    record (``claims/<profile>/<notebook>.json``, which ``promote`` has just written), so the two name the same
    run. Outside the quick profile, every "What we see" cell (written for the quick outputs) is replaced by a
    note saying so. Above ``limit`` bytes the notebook is not stored (a message says so, and any earlier file is kept: the
    book flags it as older than the claims of record). Returns the stored path, or None.
    """
    import json
    import shutil
    import tempfile
    import nbformat
    claims_file = claims_file or ROOT / "claims" / profile / f"{notebook}.json"
    doc = json.loads(claims_file.read_text()) if claims_file.exists() else {}
    out = (out_dir or RUN_OF_RECORD_DIR / profile) / f"{notebook}.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / out.name
        shutil.copyfile(executed, work)
        strip(work)
        nb = nbformat.read(work, as_version=4)
        nb.metadata["workbook_run"] = {"notebook": notebook, "profile": profile, "commit": doc.get("commit"),
                                       "date": doc.get("date"), "code_hash": doc.get("code_hash")}
        drop_quick_prose(nb, profile, notebook)   # the quick prose is never set beside another run's outputs
        nbformat.write(nb, work)
        size = work.stat().st_size
        if size > limit:
            print(f"   not storing the run of record of {notebook} ({profile}): {size / 1e6:.1f} MB exceeds the "
                  f"{limit / 1e6:.0f} MB limit (RUN_OF_RECORD_LIMIT in scripts/reproduce.py); save smaller figures "
                  f"or fewer outputs"
                  + (f"; {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} is kept from an earlier run"
                     if out.exists() else ""))
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work, out)
    return out


def execute(src: Path, dst: Path, profile: str | None, kernel: str) -> tuple[bool, float, str]:
    """Run one notebook; ``profile=None`` keeps the notebook's own default (no injected cell)."""
    import papermill as pm
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dst), parameters={"profile": profile} if profile else None,
                            kernel_name=kernel, cwd=str(src.parent), progress_bar=False)
        return True, time.perf_counter() - t0, ""
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        return False, time.perf_counter() - t0, lines[-1] if lines else type(exc).__name__


def spread(todo: list[Path], out_dir: Path, profile: str, kernel: str, executor: str, finish,
           execute_fn=execute) -> None:
    """Run whole notebooks as tasks of a cluster (``lib.executors``: ``ray`` or ``slurm``), calling
    ``finish(nb, dst, ok, secs, err)`` here as each ends.

    Each notebook gets ``WORKBOOK_NB_CPUS`` CPUs (default 4; on Ray at most a node's) and ``WORKBOOK_NB_GPUS`` GPUs
    (default: one where a Ray cluster has GPUs; none on SLURM unless set), ``WORKBOOK_NB_TIME`` minutes on SLURM
    (default 720); inside it, its runs go to local worker processes on those CPUs (``WORKBOOK_EXECUTOR=local``,
    ``WORKBOOK_WORKERS``), so no notebook waits on the cluster while holding a share of it. Notebooks, results
    and the venv must be on storage every node shares, at the same path.
    """
    from lib.executors import NotebookTask, get_executor
    ex = get_executor(executor)
    cpus = int(os.environ.get("WORKBOOK_NB_CPUS", 4))
    gpus = os.environ.get("WORKBOOK_NB_GPUS", "").strip() or "auto"
    gpus = gpus if gpus == "auto" else float(gpus)
    time_min = int(os.environ.get("WORKBOOK_NB_TIME", 720))
    env = {k: v for k, v in os.environ.items() if k.startswith("WORKBOOK_")}
    env.update(WORKBOOK_EXECUTOR="local", WORKBOOK_WORKERS=str(cpus))
    jobs = [(str(nb), str(out_dir / nb.name), profile, kernel) for nb in todo]
    print(f"spreading {len(todo)} notebooks over {ex.describe()}: {cpus} CPUs and "
          f"{gpus if gpus == 'auto' else f'{gpus:g}'} GPUs each", flush=True)

    def done(i, outcome):
        ok, secs, err = outcome.value if outcome.ok else (False, 0.0, f"the task failed: {outcome.error}")
        finish(todo[i], out_dir / todo[i].name, ok, secs, err)
    ex.run(NotebookTask(execute_fn, env), jobs, on_done=done,
           resources=dict(cpus=cpus, gpus=gpus, time_min=time_min, threads=cpus))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="auto")
    ap.add_argument("--nb")
    ap.add_argument("--kernel", default="fl-workbook")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--executor", default="local", choices=["local", "ray", "slurm"],
                    help="where the notebooks run: here in turn (local), or spread over a Ray or SLURM cluster")
    args = ap.parse_args()
    os.environ.setdefault("WORKBOOK_PROGRESS", "0")
    os.environ["WORKBOOK_CHECKS"] = "record" if args.record else "off"
    # the kernel must draw inline, so that recorded and reproduced notebooks embed their figures
    # (CI exports MPLBACKEND=Agg for pytest; a recording made under it would carry no images)
    os.environ.pop("MPLBACKEND", None)
    try:
        profile = "quick" if args.record else resolve_profile(args.profile)
    except ValueError as exc:   # a mistyped PROFILE=: one line, no traceback
        print(f"make reproduce: {exc} (PROFILE=...)", file=sys.stderr)
        return 2
    if args.profile != "auto" or args.record:
        print(f"profile: {profile} ({'record always uses quick' if args.record else 'as asked'})")
    todo = notebooks(args.nb)
    out_dir = ROOT / "runs" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []

    def finish(nb, dst, ok, secs, err):
        if ok and args.record:
            strip(dst)
        if profile in RECORDED_PROFILES:
            if ok:
                promote(nb.stem, profile)
                if profile in RUN_OF_RECORD_PROFILES:
                    stored = store_run_of_record(dst, nb.stem, profile)
                    if stored:
                        print(f"   stored the run of record: {stored.relative_to(ROOT)} "
                              f"({stored.stat().st_size / 1e6:.2f} MB)")
            elif mark_stale(nb.stem, profile, err):
                print(f"   kept the claims of record of {nb.stem} ({profile}), marked stale")
        results.append((nb.name, ok, secs, err))
        print(f"   {'ok    ' if ok else 'FAILED'} {secs:6.1f} s  {err}", flush=True)

    if args.executor != "local" and not args.record:
        try:
            spread(todo, out_dir, profile, args.kernel, args.executor,
                   lambda nb, dst, ok, secs, err: (print(f"-> {nb.name} ({profile}) done", flush=True),
                                                   finish(nb, dst, ok, secs, err)))
        except ExecutorError as exc:     # the executor cannot run here (no sbatch, no Ray): one line, no traceback
            print(f"make reproduce: {exc}", file=sys.stderr)
            return 2
    else:
        for nb in todo:
            dst = nb if args.record else out_dir / nb.name
            print(f"-> {nb.name} ({profile}) ...", flush=True)
            ok, secs, err = execute(nb, dst, None if args.record else profile, args.kernel)
            finish(nb, dst, ok, secs, err)
    report([])  # every profile of record: a full run must not drop the quick section
    print("\nsummary:")
    for name, ok, secs, err in results:
        print(f"  {'passed' if ok else 'FAILED'}  {name:45s} {secs:7.1f} s  {err[:100]}")
    failed = sum(not ok for _, ok, _, _ in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
