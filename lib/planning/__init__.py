"""Planning in decoder-only language models through VQ-VAE summary codes (arXiv 2509.25260).

``tasks`` (the grammar and path-finding generators), ``gpt`` (a small RoPE GPT with next- or
multi-token prediction), ``vq`` (a VQ-VAE over sets of hidden states), ``mi`` (mutual information
between codes with Miller-Madow correction and a shuffled baseline), ``analysis`` (the paper's
horizon and branch-awareness measurements, built from the four), ``natural`` (history reliance from a
pre-trained causal LM's hidden states over running text).
"""
from . import analysis, gpt, mi, natural, tasks, vq  # noqa: F401
