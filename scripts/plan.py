#!/usr/bin/env python3
"""Size every notebook's profile without running it: execute each notebook up to its ``budget.plan`` call.

    python scripts/plan.py [--profile full] [--readme]

Each notebook's configuration cell counts its work and measures one local step on this machine's
device (``lib.budget``). Datasets are sized from ``lib.data.INFO``, not loaded (``WORKBOOK_PLAN_ONLY``),
so the estimate is for the profile as written (CIFAR-10's 50,000 images on a connected machine), and
the time limit is lifted. ``--readme`` rewrites the table between the ``plans`` markers in docs/profiles.md (the book's page on profiles).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["00_workbook_tour", "01_initialization_matters", "02_async_fl_staleness", "03_fedrevive",
             "04_adaptive_federated_dynamics"]


def plan_one(nb: str, profile: str, kernel: str, out: Path, headless: bool = False) -> dict:
    try:
        import nbformat
        import papermill
    except ImportError:                          # no Jupyter here (a rented GPU machine): run the cells as a script
        headless = True
    if headless:
        sys.path.insert(0, str(ROOT / "scripts"))
        import headless
        headless.run(ROOT / "notebooks" / f"{nb}.ipynb", {"profile": profile}, until="budget.plan(")
        return json.loads((out / "results" / profile / "plans" / f"{nb}.json").read_text())
    import nbformat
    book = nbformat.read(ROOT / "notebooks" / f"{nb}.ipynb", as_version=4)
    last = next(i for i, c in enumerate(book.cells) if c.cell_type == "code" and "budget.plan(" in c.source)
    book.cells = book.cells[: last + 1]
    src = out / f"{nb}.ipynb"
    nbformat.write(book, src)
    papermill.execute_notebook(str(src), str(out / f"{nb}.out.ipynb"), parameters={"profile": profile},
                               kernel_name=kernel, cwd=str(ROOT / "notebooks"), progress_bar=False)
    return json.loads((out / "results" / profile / "plans" / f"{nb}.json").read_text())


def _h(hours: float) -> str:
    return f"{hours:,.0f} h" if hours >= 10 else f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def table(plans: list[dict]) -> str:
    rows = ["| notebook | work counted | step here | time here | one H100 (assumed rates) | host memory | GPU memory |",
            "|---|---|---|---|---|---|---|"]
    for p in plans:
        w = p["work"]
        rows.append(f"| {p['notebook']} | {w['runs']} runs, {w['steps'] + w['extra_steps']:,} steps of {p['model']} "
                    f"({p['params'] / 1e6:.2f}M), {w['eval_examples'] / 1e6:,.1f}M examples evaluated | "
                    f"{p['step_s'] * 1e3:.1f} ms ({p['device']}) | {_h(p['hours'])} | {p['gpu_hours_assumed']:.1f} h | "
                    f"{p['host_bytes'] / 1e9:.1f} GB | {p['device_bytes'] / 1e9:.1f} GB |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="full")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--readme", action="store_true")
    ap.add_argument("--headless", action="store_true", help="run the cells as a script (scripts/headless.py), no Jupyter")
    args = ap.parse_args(argv)
    plans = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        os.environ.update(WORKBOOK_PLAN_ONLY="1", WORKBOOK_MAX_HOURS="inf", WORKBOOK_RESULTS=str(out / "results"),
                          WORKBOOK_PROGRESS="0")
        for nb in NOTEBOOKS:
            print(f"planning {nb} ({args.profile})", file=sys.stderr, flush=True)
            plans.append(plan_one(nb, args.profile, args.kernel, out, args.headless))
    text = table(plans)
    print(text)
    if args.readme:
        readme = ROOT / "docs" / "profiles.md"
        s = readme.read_text()
        a, b = "<!-- plans:start -->", "<!-- plans:end -->"
        if a not in s or b not in s:
            raise SystemExit(f"docs/profiles.md lacks the markers {a} ... {b}")
        s = s[: s.index(a) + len(a)] + "\n" + text + "\n" + s[s.index(b):]
        readme.write_text(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
