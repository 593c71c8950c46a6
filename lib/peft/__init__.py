"""Federated fine-tuning of pre-trained models with low-rank adapters (issue: PEFT chapter).

=============== ==================================================================
module          what it holds
=============== ==================================================================
adapters.py     LoRA, FFA-LoRA, LoRA-XS / Fed-SB and Ravan parameterizations of dW on
                frozen linear layers and 1x1 convolutions; injection, budgets, Ravan's fold
ravan.py        Ravan's round: FedAvg of the folded uploads s_i H_i
rpca.py         Robust PCA (principal component pursuit, inexact ALM); FedRPCA and
                task-arithmetic scaled averaging as strategies
text.py         text tasks, frozen lower-layer features (cached), the top layers to adapt
                (BERT-family and MPNet encoders, Gemma-3 decoders)
vision.py       image tasks (datasets and class subsets), EfficientNet-Lite0 with BatchNorm
                frozen, its 16 MBConv blocks as merge units (notebook 07's vision track); its
                top stages on cached lower-stage features (``TopCNN``)
tracks.py       one model on one task, ready for federated PEFT (notebooks 05, 06): cached
                inputs, the top to adapt, its target matrices
=============== ==================================================================

FedIT is LoRA with FedAvg (``get_strategy("fedavg")`` on a LoRA-injected model).
"""
from .adapters import (METHODS, AdapterLinear, adapters, blocks, budget_rank, communicated_count, fold_flat,
                       fold_scalings, inject, rank_for_budget, ravan_slices)
from .ravan import Ravan
from .rpca import FedRPCA, TaskArithmetic, fedrpca_combine, mean_pairwise_cosine, robust_pca

__all__ = ["METHODS", "AdapterLinear", "adapters", "blocks", "budget_rank", "communicated_count", "fold_flat", "fold_scalings",
           "inject", "rank_for_budget", "ravan_slices", "Ravan", "FedRPCA", "TaskArithmetic", "fedrpca_combine",
           "mean_pairwise_cosine", "robust_pca"]
