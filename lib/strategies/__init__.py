"""Server strategies by name: ``get_strategy("fedavgm", server_momentum=0.9)``."""
from __future__ import annotations

from .base import Strategy, sample_weights, stack_deltas, weighted_mean
from .fedavg import FedAvg
from .fedavgm import FedAvgM
from .fedecado import FedECADO
from .fedecado_adaptive import FedECADOAdaptive
from .fedexp import FedExP
from .fednova import FedNova, normalized_steps
from .fedopt import FedAdam, FedYogi
from .fedprox import FedProx
from .scaffold import Scaffold

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (FedAvg, FedAvgM, FedProx, Scaffold, FedNova, FedAdam, FedYogi, FedExP, FedECADO,
                                  FedECADOAdaptive)
}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy class: a chapter's package registers its own on import (``lib.peft`` its three), so this
    registry never imports the chapters that build on it."""
    STRATEGIES[cls.name] = cls
    return cls


def available_strategies() -> list[str]:
    return sorted(STRATEGIES)


def get_strategy(name: str, **hyperparameters) -> Strategy:
    key = name.lower()
    if key not in STRATEGIES:        # a chapter's strategies register when it is imported; this package imports none
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(available_strategies())} (a chapter's "
                         f"own strategies register when it is imported, e.g. `import lib.peft` for FedRPCA, task "
                         f"arithmetic and Ravan)")
    cls = STRATEGIES[key]
    unknown = set(hyperparameters) - set(cls.hyperparameters())
    if unknown:
        raise ValueError(f"{key} has no hyperparameter(s) {sorted(unknown)}; it takes {cls.hyperparameters()}")
    return cls(**hyperparameters)


__all__ = ["Strategy", "STRATEGIES", "get_strategy", "available_strategies", "register", "stack_deltas",
           "sample_weights", "weighted_mean", "normalized_steps"]
