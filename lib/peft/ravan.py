"""Ravan's federated round (arXiv 2506.05568): clients train the heads' cores H_i and scalings s_i of
:class:`lib.peft.adapters.AdapterLinear` (method "ravan"), then upload s_i H_i::

    client k:  (H_i^k, s_i^k) <- local training from (H_i, 1)
               upload  s_i^k H_i^k          (fold_flat: the scaling folded into the core, s reset to 1)
    server:    H_i <- sum_k p_k s_i^k H_i^k,  s_i = 1      (FedAvg of the folded uploads: exact)

The strategy is FedAvg with that fold in the client's update; nothing else changes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..client import local_train
from ..strategies import register
from ..strategies.fedavg import FedAvg
from .adapters import fold_flat


@register
@dataclass
class Ravan(FedAvg):
    name = "ravan"

    def local_update(self, fm, x, data, local, hooks, seed, client_id, buffers=None):
        r = local_train(fm, x, data, local, hooks, seed=seed, client_id=client_id, buffers=buffers)
        r.delta = fold_flat(fm, x + r.delta) - x
        return r
