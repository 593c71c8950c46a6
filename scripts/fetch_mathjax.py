#!/usr/bin/env python3
"""MathJax for the book, served from the built site (no CDN): npm's ``mathjax`` 3.2.2 package.

    python scripts/fetch_mathjax.py DEST

The tarball is fetched once from the npm registry into the workbook's cache (``WORKBOOK_CACHE``, else
``~/.cache/fl-workbook``; the same cache as the PyPI archives of ``lib.sources``), checked against the
registry's published sha512 (pinned below), and its ``es5/`` folder (the combined ``tex-mml-chtml.js``,
the TeX extensions it autoloads and the CHTML woff fonts; Apache-2.0) is copied to ``DEST/mathjax/``.
``make book`` puts DEST on Sphinx's static path, so the pages load ``_static/mathjax/tex-mml-chtml.js``.
MathJax 3 is used rather than 4 because 4's npm package loads its fonts from a CDN by default.
``WORKBOOK_NO_REGISTRY=1`` forbids the fetch (a cached tarball is still used).
"""
from __future__ import annotations

import base64
import hashlib
import io
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lib.sources import cache_dir, registry_allowed  # noqa: E402

VERSION = "3.2.2"
URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz"
# the npm registry's "integrity" for mathjax@3.2.2
SHA512 = "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="


def _check(blob: bytes) -> bool:
    return base64.b64encode(hashlib.sha512(blob).digest()).decode() == SHA512


def tarball() -> bytes:
    path = cache_dir() / "npm" / f"mathjax-{VERSION}.tgz"
    if path.exists():
        blob = path.read_bytes()
        if _check(blob):
            return blob
        path.unlink()
    if not registry_allowed():
        raise SystemExit(f"MathJax {VERSION} is not cached ({path}) and WORKBOOK_NO_REGISTRY forbids fetching {URL}")
    try:
        with urllib.request.urlopen(URL, timeout=60) as r:
            blob = r.read()
    except OSError as exc:
        raise SystemExit(f"could not fetch MathJax from the npm registry ({URL}): {exc}") from None
    if not _check(blob):
        raise SystemExit(f"{URL}: sha512 does not match the registry's published integrity")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return blob


def install(dest: Path) -> Path:
    """Copy MathJax's es5 folder to ``dest/mathjax`` (skipped when that version is already there)."""
    out = dest / "mathjax"
    stamp = out / ".version"
    if stamp.exists() and stamp.read_text() == VERSION and (out / "tex-mml-chtml.js").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(tarball()), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.isfile() and (m.name.startswith("package/es5/") or m.name == "package/LICENSE"):
                rel = m.name.removeprefix("package/es5/").removeprefix("package/")
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
    stamp.write_text(VERSION)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print(f"MathJax {VERSION} (npm) -> {install(Path(sys.argv[1]))}")
