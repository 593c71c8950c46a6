"""Loaders: offline-first, verified, and one clear error for each failure."""
import shutil

import numpy as np
import pytest
import torch

from lib import data
from conftest import SEEDED_DIR, require_seeded_data


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    monkeypatch.setenv("WORKBOOK_DATA_DIR", str(tmp_path))
    return tmp_path


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match="known datasets: .*cifar10.*fashion_mnist"):
        data.load_dataset("imagenet21k")


@pytest.mark.parametrize("name,files", [
    ("fashion_mnist", ["FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/raw/t10k-labels-idx1-ubyte"]),
    ("cifar10", ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"]),
    ("cifar100", ["cifar-100-python/train"]),
    ("ag_news", ["ag_news/train.csv", "ag_news/test.csv"]),
])
def test_missing_offline_data_names_the_files_expected(offline, name, files):
    with pytest.raises(data.DataError) as err:
        data.load_dataset(name)
    msg = str(err.value)
    assert "WORKBOOK_OFFLINE" in msg and "seed_data.py" in msg
    for f in files:
        assert str(offline / f) in msg


def test_truncated_idx_file_is_reported(offline):
    raw = offline / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data._IDX_SIZES:
        (raw / name).write_bytes(b"\0" * 16)
    with pytest.raises(data.DataError, match=r"16 bytes, expected \d+\. The file is truncated or corrupt"):
        data.load_dataset("fashion_mnist")


def test_corrupt_content_fails_the_checksum(offline):
    require_seeded_data()
    src = SEEDED_DIR / "FashionMNIST" / "raw"
    dst = offline / "FashionMNIST" / "raw"
    shutil.copytree(src, dst)
    blob = bytearray((dst / "t10k-labels-idx1-ubyte").read_bytes())
    blob[100] ^= 0xFF  # same size, one byte flipped
    (dst / "t10k-labels-idx1-ubyte").write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match="sha256 differs"):
        data.load_dataset("fashion_mnist")


def test_corrupt_csv_is_reported(offline):
    (offline / "ag_news").mkdir()
    (offline / "ag_news" / "test.csv").write_text('"x","not","news"\n')
    with pytest.raises(data.DataError, match="sha256 differs|unexpected row"):
        data.load_dataset("ag_news_testsplit")


def test_fashion_mnist_loads_from_the_seeded_directory():
    require_seeded_data()
    train, test = data.load_dataset("fashion_mnist", download=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(train.y), torch.full((10,), 6000))
    assert abs(train.x.mean().item()) < 0.05 and abs(train.x.std().item() - 1) < 0.05  # normalised
    assert train.classes[0].startswith("T-shirt")


def test_ag_news_testsplit_is_a_seeded_80_20_cut():
    require_seeded_data()
    if not (SEEDED_DIR / "ag_news" / "test.csv").exists():
        pytest.skip("AG News is optional data (a local copy or the Hugging Face Hub), not seeded here")
    train, test = data.load_dataset("ag_news_testsplit", download=False)
    assert (len(train), len(test)) == (6080, 1520)
    assert train.classes == ["World", "Sports", "Business", "Sci/Tech"]
    assert train.x.shape[1] == data.TEXT_MAX_LEN and train.x.max() < data.TEXT_VOCAB
    again, _ = data.load_dataset("ag_news_testsplit", download=False)
    assert torch.equal(train.x, again.x)


def test_dataset_helpers():
    ds = data.ArrayDataset(torch.arange(10.0)[:, None], torch.arange(10) % 5, list("abcde"), "toy")
    sub = ds.select_classes([3, 1])
    assert sub.classes == ["d", "b"] and set(sub.y.tolist()) == {0, 1} and len(sub) == 4
    assert torch.equal(ds.sample(4, seed=1).x, ds.sample(4, seed=1).x)
    with pytest.raises(ValueError, match="classes \\[7\\] not in"):
        ds.select_classes([7])


def test_corpus_loader_names_the_missing_file_and_checks_the_copy(offline):
    with pytest.raises(data.DataError) as err:
        data.load_corpus("tinyshakespeare")
    assert str(offline / "tinyshakespeare" / "input.txt") in str(err.value)
    (offline / "tinyshakespeare").mkdir()
    (offline / "tinyshakespeare" / "input.txt").write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    with pytest.raises(data.DataError, match="sha256"):
        data.load_corpus("tinyshakespeare")
    with pytest.raises(ValueError, match="known: multiemo, tinyshakespeare"):
        data.load_corpus("openwebtext")


def test_a_subset_keeps_per_example_metadata_aligned_and_a_validation_split_keeps_groups():
    from lib.data import ArrayDataset
    y = torch.arange(40) % 4
    groups = np.array(["a", "b"] * 20)
    d = ArrayDataset(torch.arange(40.0)[:, None], y, ["0", "1", "2", "3"], "t", {"groups": groups, "source": "x"})
    sub = d.subset([3, 4, 7])
    assert sub.meta["groups"].tolist() == ["b", "a", "b"] and sub.meta["source"] == "x"
    rest, val = d.split_validation(0.25, seed=0)
    for part in (rest, val):      # each example keeps its own group
        assert [groups[int(v)] for v in part.x[:, 0]] == part.meta["groups"].tolist()
