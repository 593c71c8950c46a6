#!/usr/bin/env python3
"""Seed the data directory offline, from what this machine already holds.

* Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (``apt-get install
  dataset-fashion-mnist``), decompressed into ``<data>/FashionMNIST/raw/``,
  the layout torchvision reads;
* AG News (official test split) from ``../shared/datasets/ag_news/`` into
  ``<data>/ag_news/`` (sha256 checked against the shared README's value).

The data directory is ``WORKBOOK_DATA_DIR`` or ``data/``. Files already there
are verified, not copied again. Nothing is downloaded.
"""
from __future__ import annotations

import gzip
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lib import data, paths  # noqa: E402

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
SHARED = Path(os.environ.get("WORKBOOK_SHARED", ROOT.parent / "shared")) / "datasets"


def seed_fashion(dest: Path) -> str:
    raw = dest / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, size in data._IDX_SIZES.items():
        out = raw / name
        if not out.exists():
            src = DEBIAN_FASHION / f"{name}.gz"
            if not src.exists():
                return f"skipped: {src} not found (apt-get install dataset-fashion-mnist)"
            with gzip.open(src, "rb") as f, open(out, "wb") as g:
                shutil.copyfileobj(f, g)
        data.verify_file(out, size, data._FASHION_SHA256[name])
    return f"ok -> {paths.rel(raw)}"


def seed_ag_news(dest: Path) -> str:
    folder = dest / "ag_news"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "test.csv"
    if not out.exists():
        src = SHARED / "ag_news" / "test.csv"
        if not src.exists():
            return f"skipped: {src} not found"
        shutil.copyfile(src, out)
        for extra in ("classes.txt", "readme.txt"):
            if (SHARED / "ag_news" / extra).exists():
                shutil.copyfile(SHARED / "ag_news" / extra, folder / extra)
    data.verify_file(out, sha256=data._AG_TEST_SHA256)
    return f"ok -> {paths.rel(folder)}"


def main() -> int:
    dest = paths.data_dir()
    print(f"data directory: {dest}")
    failed = False
    for name, fn in (("fashion_mnist", seed_fashion), ("ag_news (test split)", seed_ag_news)):
        try:
            msg = fn(dest)
        except data.DataError as exc:
            msg, failed = f"FAILED: {exc}", True
        print(f"  {name:22s} {msg}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
