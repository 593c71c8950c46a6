"""Asynchronous FL: the event-driven engine, delay models, and the asynchronous methods by name."""
from __future__ import annotations

import dataclasses

from .afl_dw import AFLDW
from .async_localsgd import AsyncLocalSGD
from .ca2fl import CA2FL
from .delays import DELAY_MODELS, DelayModel
from .engine import AsyncRun, AsyncStrategy, Update, run_async
from .fedasmu import FedASMU
from .fedasync import FedAsync
from .fedbuff import FedBuff
from .fedcompass import FedCompass
from .fedfix import FedFix
from .fedstale import FedStale
from .sync_fedavg import SyncFedAvg

ASYNC_METHODS = {cls.name: cls for cls in (SyncFedAvg, FedAsync, FedBuff, AFLDW, CA2FL, FedStale, FedCompass,
                                           FedASMU, FedFix, AsyncLocalSGD)}


# FedRevive and its arms (lib.fedrevive builds on this package: registered on first use)
REVIVE_METHODS = ("fedrevive", "fedrevive_perturb", "dd_fedrevive", "dd_fedrevive_authors")


def get_async_strategy(name: str, **hyperparameters) -> AsyncStrategy:
    if name in REVIVE_METHODS and name not in ASYNC_METHODS:
        from ..fedrevive import DDFedRevive, DDFedReviveAuthors, FedRevive, FedRevivePerturb
        ASYNC_METHODS.update({c.name: c for c in (FedRevive, FedRevivePerturb, DDFedRevive, DDFedReviveAuthors)})
    if name not in ASYNC_METHODS:
        known = sorted(set(ASYNC_METHODS) | set(REVIVE_METHODS))
        raise ValueError(f"unknown asynchronous method {name!r}; known: {', '.join(known)}")
    cls = ASYNC_METHODS[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = set(hyperparameters) - set(fields)
    if unknown:
        raise ValueError(f"{name} has no hyperparameter(s) {sorted(unknown)}; it takes {fields}")
    return cls(**hyperparameters)


__all__ = ["run_async", "AsyncStrategy", "AsyncRun", "Update", "DelayModel", "DELAY_MODELS", "ASYNC_METHODS",
           "REVIVE_METHODS", "get_async_strategy"]
