"""History reliance on natural text (the paper's question iii), from a pre-trained causal LM's hidden states.

For a window of text ending at position t, the *prediction code* Z_t summarises the hidden state at t
(the state that predicts token t + 1) and the *block codes* Z_{B_j} summarise the b positions of block
j before it (B_1 = t-b .. t-1, the most recent; B_2 the b before, ...). We report, per block, the
excess MI I(Z_t; Z_{B_j}) and, for the older blocks, what they add beyond the most recent one,

.. math:: \\text{cnMI}_j = \\frac{I(Z_t; Z_{B_j} \\mid Z_{B_1})}{I(Z_t; Z_{B_j})},

the share of block j's information about the prediction that block 1 does not already carry (our
normalisation: the paper reports conditional nMI without, in our sources, its denominator).
The paper uses OpenWebText; this workbook uses Tiny Shakespeare and MultiEmo review sentences, and
gemma-3-270m (the paper: GPT-2-sized models trained by the authors).
"""
from __future__ import annotations

import numpy as np
import torch

from . import mi
from .analysis import fit_codes


def token_windows(ids, length: int, n: int, seed: int) -> torch.Tensor:
    """``n`` windows of ``length`` consecutive tokens from the token stream ``ids``, at distinct
    seeded random offsets."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    starts = len(ids) - length + 1
    if starts < n:
        raise ValueError(f"a stream of {len(ids)} tokens has {max(starts, 0)} windows of {length}; {n} were asked for")
    off = np.sort(np.random.default_rng(seed).choice(starts, n, replace=False))
    return torch.stack([ids[o:o + length] for o in off])


class LM:
    """A causal LM as notebook 11 uses it: ``encode(text)`` -> token ids, ``hidden(windows)`` -> [n, L, d]
    hidden states of one layer. ``stand_in`` is True for the smoke profile's random byte-level GPT."""

    def __init__(self, encode, hidden, name: str, stand_in: bool = False):
        self.encode, self.hidden, self.name, self.stand_in = encode, hidden, name, stand_in


def load_lm(name: str = "gemma-3-270m", layer: int | None = None, allow_stand_in: bool = False,
            device: str = "cpu", batch_size: int = 16) -> LM:
    """``name`` from the model registry (``lib.pretrained``), reading ``layer`` (default: the middle one).
    With ``allow_stand_in`` (the smoke profile), a model that cannot be obtained is replaced by a
    randomly initialised byte-level GPT of the same interface, and the message says so."""
    from .. import pretrained
    try:
        model, tok = pretrained.causal_lm(name, device=device)
    except pretrained.ModelError as exc:
        if not allow_stand_in:
            raise
        from .gpt import GPT, GPTConfig, hidden_states
        print(f"{name} is not available here ({str(exc).splitlines()[0]}); the smoke profile uses a random "
              f"2-layer byte-level GPT in its place: its numbers mean nothing")
        torch.manual_seed(0)
        g = GPT(GPTConfig(vocab=256, d_model=32, n_layers=2, n_heads=2, max_len=512))
        return LM(lambda text: list(text.encode("utf-8")), lambda w: hidden_states(g, w, layer or 1), "random byte GPT",
                  stand_in=True)
    n_layers = model.config.num_hidden_layers
    at = n_layers // 2 if layer is None else layer
    if not 0 <= at <= n_layers:
        raise ValueError(f"layer must be in 0..{n_layers} for {name}, got {layer}")

    body = getattr(model, "model", model)      # the transformer without the LM head: no logits over the vocabulary

    @torch.no_grad()
    def hidden(windows):
        out = []
        for i in range(0, len(windows), batch_size):
            hs = body(input_ids=windows[i:i + batch_size].to(device), output_hidden_states=True).hidden_states
            out.append(hs[at].float().cpu())
        return torch.cat(out)

    return LM(lambda text: tok(text, add_special_tokens=False)["input_ids"], hidden, f"{name} (layer {at} of {n_layers})")


def history_reliance(H: torch.Tensor, block: int, n_blocks: int, K: int, vq_steps: int, seed: int = 0) -> dict:
    """MI between the prediction code at the last position of ``H`` [n, L, d] and the codes of the
    ``n_blocks`` blocks of ``block`` positions before it; conditional shares for the older blocks."""
    n, L, d = H.shape
    t = L - 1
    if n_blocks * block > t:
        raise ValueError(f"{n_blocks} blocks of {block} need windows of at least {n_blocks * block + 1} tokens, got {L}")
    zt = fit_codes(H[:, t:t + 1], K, vq_steps, seed)
    sets = torch.cat([H[:, t - j * block:t - (j - 1) * block] for j in range(1, n_blocks + 1)])
    zb = fit_codes(sets, K, vq_steps, seed + 1).reshape(n_blocks, n)
    mis = [mi.excess_mi(zt, zb[j], seed) for j in range(n_blocks)]
    cmis = [float("nan")] + [mi.excess_conditional_mi(zt, zb[j], zb[0], seed) for j in range(1, n_blocks)]
    return {"block": list(range(1, n_blocks + 1)), "mi": mis, "cmi": cmis,
            "cnmi": [c / m if m > 0 else float("nan") for c, m in zip(cmis, mis)]}
