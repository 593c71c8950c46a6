"""Teachers: recent client models, their class proportions, and per-class teacher weights.

FedRevive distils the current global model from the c most recent uploaded client models.
Teacher m's weight for class j is its share of that class among the teachers::

    w_m(j) = q_m(j) / sum_t q_t(j)

where q_m are the client's class proportions. In the paper's main setting the server
*estimates* q_m itself (no label histograms leave the client): the mean of
softmax(logits / 0.8) over Gaussian-noise probes, from the client's first two uploads, then
frozen. The true histogram is an explicit option (``class_proportions="true"``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Teacher:
    client_id: int
    w: torch.Tensor                 # the client's uploaded model (flat)
    buffers: dict | None            # its tracked batch statistics
    q: torch.Tensor                 # class proportions [num_classes]


@torch.no_grad()
def estimate_class_proportions(fm, w, probes, temperature: float = 0.8) -> torch.Tensor:
    """Mean softmax(logits / T) of the model ``w`` over noise probes: the server's guess of q."""
    fm.module.eval()
    p = F.softmax(fm(w, probes) / temperature, dim=1).mean(0)
    fm.module.train()
    return p


def teacher_weights(qs: torch.Tensor) -> torch.Tensor:
    """[teachers x classes] weights w_m(j) = q_m(j) / sum_t q_t(j); each column sums to 1."""
    if qs.dim() != 2 or (qs < 0).any():
        raise ValueError("class proportions must be a non-negative [teachers x classes] matrix")
    return qs / qs.sum(0, keepdim=True).clamp_min(1e-12)
