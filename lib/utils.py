"""Seeding and progress bars."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch. Library code also takes explicit seeds; this covers notebook code."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (e.g. run seed, round, client id)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def progress_enabled() -> bool:
    """Progress bars show in interactive use; ``WORKBOOK_PROGRESS=0`` (batch runs, tests) hides them."""
    return os.environ.get("WORKBOOK_PROGRESS", "1").strip().lower() not in ("0", "false", "no")


def progress(iterable=None, **kwargs):
    """tqdm over ``iterable``: a widget in JupyterLab, text in a terminal, nothing in batch runs."""
    if progress_enabled():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
        kwargs["disable"] = True
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
