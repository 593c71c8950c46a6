"""Datasets by name: look in the data directory first, download when connected.

``load_dataset(name)`` returns ``(train, test)`` as in-memory :class:`ArrayDataset`
tensors. Every loader follows the same three steps:

1. look for the files in the data directory (``lib.paths.data_dir()``, moved
   with ``WORKBOOK_DATA_DIR``) and verify them (sizes, and checksums where the
   original release publishes them);
2. if files are missing and the machine may go online (``WORKBOOK_OFFLINE`` is
   not set), download them through the library's real path (torchvision for
   images, Hugging Face ``datasets`` for AG News);
3. otherwise raise :class:`DataError` naming every file expected and where.

``scripts/seed_data.py`` fills the data directory offline from Debian's
``dataset-fashion-mnist`` and from a local folder of dataset files (``WORKBOOK_SHARED``).
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import paths


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
        index = torch.as_tensor(np.asarray(index), dtype=torch.long, device=self.y.device)
        return ArrayDataset(self.x[index], self.y[index], self.classes, self.name, dict(self.meta))

    def sample(self, n: int | None, seed: int) -> "ArrayDataset":
        """A seeded random subset of ``n`` examples (all of them when n is None)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise ValueError(f"sample size must be positive, got {n}")
        g = torch.Generator().manual_seed(seed)
        return self.subset(torch.randperm(len(self), generator=g)[:n])

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


def offline() -> bool:
    flag = os.environ.get("WORKBOOK_OFFLINE", "") or os.environ.get("HF_DATASETS_OFFLINE", "")
    return flag.strip().lower() not in ("", "0", "false", "no")


def _missing_error(name: str, root: Path, files: list[str], why: str = "") -> DataError:
    listed = "\n".join(f"  {root / f}" for f in files)
    msg = (f"{name}: data files not found and {why or 'no download was attempted (WORKBOOK_OFFLINE is set)'}.\n"
           f"Expected these files:\n{listed}\n"
           f"Put them there (or set WORKBOOK_DATA_DIR to a folder that holds them), or run on a "
           f"connected machine without WORKBOOK_OFFLINE so the loader downloads them. "
           f"Offline, `python scripts/seed_data.py` seeds Fashion-MNIST and AG News (test split).")
    return DataError(msg)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, size: int | None = None, sha256: str | None = None) -> None:
    """Raise DataError if a file's size or checksum differs from the release's."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DataError(f"{path}: {actual} bytes, expected {size}. The file is truncated or corrupt: "
                        f"delete it and download or seed it again.")
    if sha256 is not None and _sha256(path) != sha256:
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


def _text_pair(name, tr_texts, tr_labels, te_texts, te_labels):
    vocab = build_vocab(tr_texts)
    meta = {"vocab_size": TEXT_VOCAB, "max_len": TEXT_MAX_LEN}
    return (ArrayDataset(encode(tr_texts, vocab), torch.tensor(tr_labels), AG_NEWS_CLASSES, name, meta),
            ArrayDataset(encode(te_texts, vocab), torch.tensor(te_labels), AG_NEWS_CLASSES, name, meta))


@_register("ag_news")
def _ag_news(root, download):
    d = _ag_csvs(root, download, ["train.csv", "test.csv"])
    return _text_pair("ag_news", *d["train.csv"], *d["test.csv"])


@_register("ag_news_testsplit")
def _ag_news_testsplit(root, download):
    """The official 7,600-row test split cut 80/20 (seed 0) into train/test: the offline stand-in."""
    texts, labels = _ag_csvs(root, download, ["test.csv"])["test.csv"]
    perm = np.random.default_rng(0).permutation(len(labels))
    cut = int(0.8 * len(labels))
    tr, te = perm[:cut], perm[cut:]
    return _text_pair("ag_news_testsplit", [texts[i] for i in tr], [labels[i] for i in tr],
                      [texts[i] for i in te], [labels[i] for i in te])
