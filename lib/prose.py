"""Numbers in prose: every decimal number a notebook's markdown states must come from somewhere checkable.

A decimal number in a markdown cell (``0.774``, ``+0.106``, ``12.5%``) passes when it matches, at the
precision it is written with, a number in

* the notebook's recorded outputs (printed tables, figures' text, displayed claims tables),
* the notebook's code (a setting quoted from the configuration is not a measurement),
* its claims of record (``claims/quick`` and ``claims/full``: per-seed values, intervals, texts), or
* the notebook's own list of numbers quoted from the paper, ``metadata["paper_numbers"]`` (each one
  is the paper's, and the prose must say so).

A percentage also matches a fraction (``12.5%`` ~ ``0.125``). LaTeX, inline code, links and arXiv
identifiers are not prose numbers. ``stray_numbers`` lists what matches none of these: a number typed
from memory, or from an older run.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

_NUM = re.compile(r"(?<![\w.])[-+−]?(\d+\.\d+(?:e[-+]?\d+)?)(%?)", re.I)
_ANY = re.compile(r"[-+−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.I)
_SKIP = [re.compile(p, re.S) for p in (r"\$\$.*?\$\$", r"\$[^$\n]+\$", r"`[^`]*`", r"\]\([^)]*\)",
                                       r"https?://\S+", r"arXiv[: ]\s*\d{4}\.\d{4,5}", r"\b\d{4}\.\d{4,5}\b")]


def prose_numbers(markdown: str) -> list[str]:
    """Decimal numbers written in a markdown text (outside LaTeX, code, links and arXiv ids)."""
    for pat in _SKIP:
        markdown = pat.sub(" ", markdown)
    return [m.group(1) + m.group(2) for m in _NUM.finditer(markdown)]


def _numbers_in(obj, out: set[float]) -> None:
    if isinstance(obj, dict):
        for v in obj.values():
            _numbers_in(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _numbers_in(v, out)
    elif isinstance(obj, bool) or obj is None:
        return
    elif isinstance(obj, (int, float)):
        if math.isfinite(obj):
            out.add(abs(float(obj)))
    elif isinstance(obj, str):
        for m in _ANY.finditer(obj):
            try:
                out.add(abs(float(m.group(0).replace("−", "-"))))
            except ValueError:
                pass


def sources(nb: dict, records: list[dict]) -> set[float]:
    """Every number a prose number may come from (absolute values)."""
    out: set[float] = set()
    for c in nb["cells"]:
        if c["cell_type"] != "code":
            continue
        _numbers_in("".join(c["source"]), out)
        for o in c.get("outputs", []):
            if "text" in o:
                _numbers_in("".join(o["text"]), out)
            for mime, val in o.get("data", {}).items():
                if mime.startswith("text/"):
                    _numbers_in("".join(val) if isinstance(val, list) else val, out)
    for r in records:
        _numbers_in(r, out)
    _numbers_in(nb.get("metadata", {}).get("paper_numbers", []), out)
    return out


def matches(token: str, found: set[float]) -> bool:
    pct = token.endswith("%")
    digits = token.rstrip("%").lower()
    mantissa, _, exp = digits.partition("e")
    k = len(mantissa.split(".")[1])
    value = float(digits)
    cands = [value / 100, value] if pct else [value]
    tol = 0.5 * 10 ** (-k) * 10 ** int(exp or 0) * (1 + 1e-9)
    for target in cands:
        step = tol / 100 if (pct and target is cands[0]) else tol
        if any(abs(x - target) <= step for x in found):
            return True
    return False


def stray_numbers(notebook: Path, record_dirs: list[Path]) -> list[tuple[int, str]]:
    """(cell index, number) for every prose decimal that matches no output, code, record or paper number."""
    nb = json.loads(Path(notebook).read_text())
    records = [json.loads(p.read_text()) for d in record_dirs for p in [Path(d) / f"{Path(notebook).stem}.json"]
               if p.exists()]
    found = sources(nb, records)
    return [(i, tok) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"
            for tok in prose_numbers("".join(c["source"])) if not matches(tok, found)]
