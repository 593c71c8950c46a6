"""Where the workbook reads and writes: one place for every directory.

Each directory can be moved with an environment variable, so a batch run or a
test can point the workbook elsewhere without touching code:

=====================  ==========================  ===========================
variable               default                     holds
=====================  ==========================  ===========================
``WORKBOOK_DATA_DIR``  ``<repo>/data``             datasets (never committed)
``WORKBOOK_RESULTS``   ``<repo>/results``          per-run metrics, claims
``WORKBOOK_FIGURES``   ``<repo>/figures``          saved figures
``WORKBOOK_CLAIMS``    ``<repo>/claims``           claims of record (tracked)
``WORKBOOK_EXPECTED``  ``<repo>/notebooks``        checked values (tracked)
=====================  ==========================  ===========================
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _dir(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    return _dir("WORKBOOK_DATA_DIR", REPO_ROOT / "data")


def results_dir(profile: str | None = None) -> Path:
    root = _dir("WORKBOOK_RESULTS", REPO_ROOT / "results")
    return root / profile if profile else root


def figures_dir() -> Path:
    return _dir("WORKBOOK_FIGURES", REPO_ROOT / "figures")


def claims_dir(profile: str | None = None) -> Path:
    root = _dir("WORKBOOK_CLAIMS", REPO_ROOT / "claims")
    return root / profile if profile else root


def expected_dir() -> Path:
    return _dir("WORKBOOK_EXPECTED", REPO_ROOT / "notebooks")


def rel(path: Path | str) -> str:
    """A path as the notebooks print it: relative to the repository root."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return p.name
