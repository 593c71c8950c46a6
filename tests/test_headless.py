"""scripts/headless.py runs a notebook without Jupyter, with papermill's parameter semantics."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import headless  # noqa: E402


def _book(path: Path, cells: list[tuple[list[str], str]]) -> Path:
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# title"}] +
                   [{"cell_type": "code", "metadata": {"tags": tags}, "source": src, "outputs": [],
                     "execution_count": None} for tags, src in cells]}
    path.write_text(json.dumps(nb))
    return path


def test_parameters_are_injected_after_the_tagged_cell_and_cells_share_one_main_module(tmp_path):
    book = _book(tmp_path / "nb.ipynb", [
        ([], "before = 1"),
        (["parameters"], "profile = 'quick'\nn = 2"),
        ([], "import os, pickle\n"
             "def double(v):\n    return 2 * v\n"
             "doubled = double(n)\n"
             "restored = pickle.loads(pickle.dumps(double))\n"   # by reference: needs double in __main__
             "where = os.getcwd()"),
        ([], "stopped_here = True"),
        ([], "after = True"),
    ])
    ns = headless.run(book, {"profile": "full", "n": 5}, until="stopped_here")
    assert ns["profile"] == "full" and ns["doubled"] == 10 and ns["restored"](3) == 6
    assert ns["where"] == str(tmp_path) and ns["stopped_here"] and "after" not in ns
    assert sys.modules["__main__"].__dict__ is not ns      # the caller's __main__ is given back


def test_ipython_syntax_and_a_missing_parameters_cell_are_refused(tmp_path):
    magic = _book(tmp_path / "magic.ipynb", [(["parameters"], "x = 1"), ([], "%timeit x")])
    plain = _book(tmp_path / "plain.ipynb", [([], "x = 1")])
    for book, message in ((magic, "IPython syntax"), (plain, "tagged 'parameters'")):
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "headless.py"), str(book)],
                           capture_output=True, text=True)
        assert r.returncode != 0 and message in r.stderr, r.stderr


def test_set_values_are_python_literals_or_strings():
    assert headless._value("3") == 3 and headless._value("[1, 2]") == [1, 2] and headless._value("fedavg") == "fedavg"
