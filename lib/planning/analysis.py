"""The paper's measurements, from a trained model's hidden states (one function per question).

* :func:`cfg_horizon` - **planning horizon on the grammar**: Z_H is the code of the hidden states of
  a prefix block (positions t-b+1..t), Z_{t+tau} the code of the hidden state tau positions ahead;
  the curve is the excess MI I(Z_H; Z_{t+tau}) over tau.
* :func:`pf_analysis` - on path-finding: the model's greedy answer and its accuracy; the
  **horizon** curve (Z_H = code of the pre-output block QUERY s t ANSWER, Z_tau = code of the hidden
  state at the tau-th answer position of the model's own path); and **branch awareness**: the
  answer block's code when the model is fed the other valid path (Z_alt) or the decoy (Z_decoy),
  with I(Z_H; Z_alt) / I(Z_H; Z_decoy) > 1 meaning the pre-output computation carries more about the
  unused valid continuation than about an invalid one. The decoy fed is the decoy branch redirected to
  the target (:meth:`~lib.planning.tasks.PFData.decoy_to_target`): a valid path ends at the target t,
  which Z_H's block also holds, so a decoy ending elsewhere would give I(alt) > I(decoy) with no planning
  at all. The dead-end decoy's MI is kept as ``mi_decoy_deadend``, to show the size of that confound.

Every code comes from a VQ-VAE fitted to the sets it summarises (:mod:`lib.planning.vq`); every MI
is Miller-Madow corrected minus its shuffled-pair baseline (:func:`lib.planning.mi.excess_mi`).
"""
from __future__ import annotations

import numpy as np
import torch

from . import mi
from .gpt import GPT, greedy, hidden_states
from .tasks import CFGData, PFData, pf_valid
from .vq import train_vq


def fit_codes(sets, K: int, steps: int, seed: int):
    """Fit a VQ-VAE on ``sets`` [n, positions, d] and return each set's code (numpy)."""
    return train_vq(sets, K, steps, seed=seed).codes(sets).numpy()


def cfg_horizon(model: GPT, data: CFGData, t: int, block: int, taus, K: int, vq_steps: int, seed: int = 0,
                layer: int | None = None) -> dict:
    """Excess MI between the prefix block's code and the code tau positions ahead, for each tau."""
    taus = list(taus)
    shortest = int(data.lengths.min()) + 1          # last string position (BOS is 0)
    if t - block + 1 < 1 or t + max(taus) > shortest:
        raise ValueError(f"positions {t - block + 1}..{t + max(taus)} must lie inside every string "
                         f"(1..{shortest}); lower t or the largest tau")
    H = hidden_states(model, data.tokens, layer)
    N, d = H.shape[0], H.shape[2]
    zH = fit_codes(H[:, t - block + 1:t + 1], K, vq_steps, seed)
    fut = H[:, [t + tau for tau in taus]]                       # one VQ for every future position
    zF = fit_codes(fut.reshape(-1, 1, d), K, vq_steps, seed + 1).reshape(N, len(taus))
    return {"tau": taus, "mi": [mi.excess_mi(zH, zF[:, j], seed) for j in range(len(taus))],
            "codes_used": int(len(np.unique(zH)))}


def pf_analysis(model: GPT, data: PFData, K: int, vq_steps: int, seed: int = 0, layer: int | None = None) -> dict:
    """Accuracy, the horizon curve and branch awareness on path-finding instances (see the module)."""
    A, P = data.answer_start, data.path_len
    out = greedy(model, data.tokens[:, :A], P)
    valid = np.array([pf_valid(data, i, out[i]) for i in range(len(out))])
    first = out[:, 1]
    chosen = np.full(len(out), -1)
    for w in (0, 1):
        chosen[(first == data.paths[:, w, 1]).numpy() & valid] = w
    keep = np.flatnonzero(chosen >= 0)
    res = {"accuracy": float(valid.mean()), "first_valid": float((first[:, None] == data.paths[:, :2, 1]).any(1).float().mean()),
           "n_analysed": int(len(keep))}
    if len(keep) < 4 * K:
        res.update(mi_chosen=float("nan"), mi_alt=float("nan"), mi_decoy=float("nan"), mi_decoy_deadend=float("nan"),
                   horizon=[float("nan")] * P)
        return res
    idx = torch.as_tensor(keep)
    ch = torch.as_tensor(chosen[keep])

    def fed(path_rows):                                      # prompt + the given answer path
        tok = data.tokens[idx].clone()
        tok[:, A:A + P] = path_rows
        return hidden_states(model, tok, layer)

    paths = data.paths[idx]
    H_c = fed(paths[torch.arange(len(idx)), ch])
    H_a = fed(paths[torch.arange(len(idx)), 1 - ch])
    H_d = fed(data.decoy_to_target()[idx])                  # invalid, but ends at the target like a valid path
    H_e = fed(paths[:, 2])                                   # the dead-end branch: ends elsewhere (the confound)
    d = H_c.shape[2]
    zH = fit_codes(H_c[:, A - 4:A], K, vq_steps, seed)                       # QUERY s t ANSWER
    ans = torch.cat([H_c[:, A:A + P], H_a[:, A:A + P], H_d[:, A:A + P], H_e[:, A:A + P]])  # one VQ for the four
    z = fit_codes(ans, K, vq_steps, seed + 1).reshape(4, -1)
    pos = H_c[:, A:A + P].reshape(-1, 1, d)                                # one VQ for every answer position
    zP = fit_codes(pos, K, vq_steps, seed + 2).reshape(-1, P)
    res.update(mi_chosen=mi.excess_mi(zH, z[0], seed), mi_alt=mi.excess_mi(zH, z[1], seed),
               mi_decoy=mi.excess_mi(zH, z[2], seed), mi_decoy_deadend=mi.excess_mi(zH, z[3], seed),
               horizon=[mi.excess_mi(zH, zP[:, j], seed) for j in range(P)])
    return res
