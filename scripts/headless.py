#!/usr/bin/env python3
"""Run a notebook as a plain Python script, for machines with no Jupyter (a rented GPU box, say).

    python scripts/headless.py notebooks/00_workbook_tour.ipynb --profile full [--until budget.plan(]

The code cells run in order in one namespace, with ``profile`` (and any ``--set name=value``) injected
right after the cell tagged ``parameters``, exactly as papermill does; the working directory is
``notebooks/``, as under papermill, so figures, results and claims land where ``make reproduce`` puts
them. Outputs are printed, not stored: this is for producing results (``results/``, ``claims/``), not
for recording a notebook. ``--until TEXT`` stops after the first code cell containing TEXT.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def code_cells(path: Path) -> list[tuple[list[str], str]]:
    book = json.loads(Path(path).read_text())
    cells = []
    for c in book["cells"]:
        if c["cell_type"] != "code":
            continue
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        bad = [l for l in src.splitlines() if l.lstrip().startswith(("%", "!"))]
        if bad:
            raise SystemExit(f"{path}: IPython syntax cannot run headless: {bad[0]!r}")
        cells.append((c.get("metadata", {}).get("tags", []), src))
    return cells


def run(path: Path, parameters: dict, until: str | None = None) -> dict:
    """Execute the notebook's code cells; returns the namespace."""
    import matplotlib
    matplotlib.use("Agg")
    path = Path(path).resolve()
    cells = code_cells(path)
    if not any("parameters" in tags for tags, _ in cells):
        raise SystemExit(f"{path}: no cell is tagged 'parameters'")
    # like a kernel, the cells run in a module named __main__, so that functions they define can be pickled
    # by reference (lib.utils.parallel_map forks workers that look them up there)
    module = types.ModuleType("__main__")
    module.display = _display
    ns = module.__dict__
    saved_main, sys.modules["__main__"] = sys.modules["__main__"], module
    cwd = os.getcwd()
    os.chdir(path.parent)
    sys.path.insert(0, str(ROOT))
    try:
        for i, (tags, src) in enumerate(cells):
            t0 = time.perf_counter()
            _exec(src, ns, f"{path.name}[cell {i}]")
            if "parameters" in tags:
                for k, v in parameters.items():
                    ns[k] = v
            print(f"# {path.name}: code cell {i} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            if until and until in src:
                break
    finally:
        os.chdir(cwd)
        sys.modules["__main__"] = saved_main
    return ns


def _exec(src: str, ns: dict, name: str) -> None:
    """Run a cell; like a notebook, print the value of a last bare expression."""
    tree = ast.parse(src, name)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        exec(compile(ast.Module(tree.body[:-1], []), name, "exec"), ns)
        value = eval(compile(ast.Expression(last.value), name, "eval"), ns)
        if value is not None:
            _display(value)
    else:
        exec(compile(tree, name, "exec"), ns)


def _display(*objs, **_) -> None:
    for o in objs:
        to_string = getattr(o, "to_string", None)       # pandas
        text = getattr(o, "data", None)                 # IPython.display.Markdown
        print(to_string() if callable(to_string) else text if isinstance(text, str) else o, flush=True)


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--profile", default=None, help="quick, full or smoke (default: the notebook's own)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="another parameter")
    ap.add_argument("--until", default=None, help="stop after the first code cell containing this text")
    args = ap.parse_args(argv)
    params = {} if args.profile is None else {"profile": args.profile}
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"--set expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        params[k.strip()] = _value(v)
    run(args.notebook, params, args.until)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
