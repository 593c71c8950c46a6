import os

import numpy as np
import pytest
import torch

from lib.client import ClientResult
from lib.data import ArrayDataset

os.environ.setdefault("WORKBOOK_PROGRESS", "0")


def result(cid, delta, n=1, steps=1, lr=1.0, momentum=0.0):
    return ClientResult(cid, torch.tensor(delta, dtype=torch.float64), n, steps, 0.0, lr, momentum)


@pytest.fixture
def blobs():
    """An easy 3-class problem: well separated Gaussian blobs in 5-D."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 5, generator=g) * 4
    y = torch.arange(900) % 3
    x = centers[y] + torch.randn(900, 5, generator=g)
    train = ArrayDataset(x[:600], y[:600], ["a", "b", "c"], "blobs")
    test = ArrayDataset(x[600:], y[600:], ["a", "b", "c"], "blobs")
    return train, test


from lib import paths  # noqa: E402

SEEDED_DIR = paths.data_dir()  # read before any test moves WORKBOOK_DATA_DIR


def data_seeded() -> bool:
    return (SEEDED_DIR / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()


def require_seeded_data():
    if not data_seeded():
        if os.environ.get("CI"):
            pytest.fail("CI must seed the data directory first: python scripts/seed_data.py")
        pytest.skip("data directory not seeded: run python scripts/seed_data.py")


np.set_printoptions(precision=6)
