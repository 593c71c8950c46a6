"""FedAvg (McMahan et al. 2017).

    x <- sum_i p_i x_i  =  x + sum_i p_i D_i,     p_i = n_i / sum_j n_j

The rule is the interface's default; this module only names it.
"""
from dataclasses import dataclass

from .base import Strategy


@dataclass
class FedAvg(Strategy):
    name = "fedavg"
