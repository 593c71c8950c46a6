"""Federated fine-tuning of a pre-trained sentence encoder's top layers on text tasks (notebooks 05, 06).

What does not change is computed once: the frozen lower layers' output for every sentence is cached
(``results/<profile>/cache/peft/``), and clients train adapters in the top ``top_layers`` transformer
layers plus a classification head on that cache::

    sentence -> tokenizer -> embeddings -> layers 1 .. n-k (frozen; run once, cached)
             -> layers n-k+1 .. n with adapters (trained) -> mean over tokens -> head (trained) -> logits

With ``top_layers = n`` every layer is adapted and only the embeddings are cached. The head is trained
and sent by every method alike, so the communicated counts differ only by the adapters.
Cached inputs pack the hidden states and the attention mask into one tensor [N, L, d + 1] (last channel:
the mask), so the workbook's datasets, partitions and client loop take them unchanged.
BERT-family encoders (MiniLM) and MPNet, whose relative-position bias :class:`TopEncoder` recomputes
from a frozen copy of the bias table (``TopEncoder(..., relative_bias=relative_bias_of(model))``), and
Gemma-3 decoders (:class:`TopDecoder`: causal and sliding-window masks, rotary positions, the final norm).
"""
from __future__ import annotations

import copy
import hashlib

import numpy as np
import torch
from torch import nn

from .. import paths
from ..data import ArrayDataset, TextSplit


# merge units of one transformer layer (notebook 07), by encoder: substrings of its parameter names, in order
# (a parameter matching none, e.g. a LayerNorm, joins the unit before it; see lib.merging.param_blocks)
MERGE_UNITS = {
    "minilm": ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output",
               "intermediate", "output"],
    "mpnet": ["attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "intermediate",
              "output"],
}


class TopEncoder(nn.Module):
    """The encoder's top layers (copies, to be adapted), mean pooling over real tokens, a linear head.

    ``relative_bias``: for MPNet, the model's encoder (``model.encoder``), whose relative-position
    attention bias every layer adds to its scores; a frozen copy of the bias table is kept (see
    :func:`relative_bias_of`). BERT-family layers (MiniLM) need none."""

    def __init__(self, layers: list[nn.Module], hidden: int, num_classes: int, seed: int = 0, relative_bias=None):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(l) for l in layers)
        self.rel_bias, self._bucket = None, None
        if relative_bias is not None:
            self.rel_bias = copy.deepcopy(relative_bias.relative_attention_bias).requires_grad_(False)
            self._bucket = type(relative_bias).relative_position_bucket
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = nn.Linear(hidden, num_classes)

    def position_bias(self, length: int, device) -> torch.Tensor | None:
        """MPNet's bias [1, heads, L, L] from the relative position of every key to every query."""
        if self.rel_bias is None:
            return None
        pos = torch.arange(length, device=device)
        buckets = self._bucket(pos[None, :] - pos[:, None], num_buckets=self.rel_bias.num_embeddings)
        return self.rel_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def encode_top(self, packed):
        """The top layers' output [N, L, d] for packed lower-layer features (last channel: the mask)."""
        h, mask = packed[..., :-1], packed[..., -1]
        additive = ((1.0 - mask) * torch.finfo(h.dtype).min)[:, None, None, :]
        bias = self.position_bias(h.shape[1], h.device)
        for layer in self.layers:
            out = layer(h, attention_mask=additive) if bias is None else layer(h, attention_mask=additive,
                                                                                position_bias=bias)
            h = out[0] if isinstance(out, tuple) else out
        return h

    def forward(self, packed):
        h, mask = self.encode_top(packed), packed[..., -1]
        m = mask.unsqueeze(-1)
        return self.head((h * m).sum(1) / m.sum(1).clamp_min(1.0))


class TopDecoder(TopEncoder):
    """A causal language model's top decoder layers (Gemma 3), its final norm, mean pooling over real tokens
    and a linear head. Texts are right-padded, so a real token never attends to padding; each layer gets
    the causal mask (sliding-window layers: only the last ``sliding_window`` tokens) and the rotary
    position embeddings of its layer type, positions counted from 0 as in the full model."""

    def __init__(self, model, top_layers: int, num_classes: int, seed: int = 0):
        inner = _decoder_stack(model)
        n = len(inner.layers)
        if not 1 <= top_layers <= n:
            raise ValueError(f"top_layers must be in 1..{n}, got {top_layers}")
        cfg = inner.config
        super().__init__(list(inner.layers[-top_layers:]), cfg.hidden_size, num_classes, seed=seed)
        self.norm = copy.deepcopy(inner.norm).requires_grad_(False)
        self.rotary = copy.deepcopy(inner.rotary_emb)
        self.layer_types = list(cfg.layer_types[-top_layers:])
        self.window = getattr(cfg, "sliding_window", None)

    def encode_top(self, packed):
        h, mask = packed[..., :-1], packed[..., -1]
        L, dev = h.shape[1], h.device
        pos = torch.arange(L, device=dev)
        allowed = (pos[None, :] <= pos[:, None])[None, None] & mask.bool()[:, None, None, :]   # [N, 1, L, L]
        low = torch.finfo(h.dtype).min
        masks, rope = {}, {}
        for t in set(self.layer_types):
            a = allowed
            if t == "sliding_attention" and self.window:
                a = a & ((pos[:, None] - pos[None, :]) < self.window)[None, None]
            masks[t] = torch.zeros(a.shape, dtype=h.dtype, device=dev).masked_fill(~a, low)
            rope[t] = self.rotary(h, pos.unsqueeze(0), t)
        for layer, t in zip(self.layers, self.layer_types):
            out = layer(h, attention_mask=masks[t], position_embeddings=rope[t], position_ids=pos.unsqueeze(0))
            h = out[0] if isinstance(out, tuple) else out
        return self.norm(h)


def _decoder_stack(model):
    """The decoder stack (``.layers``, ``.norm``, ``.rotary_emb``) of a causal LM or its text model."""
    inner = getattr(model, "model", model)
    inner = getattr(inner, "language_model", inner)
    if not (hasattr(inner, "layers") and hasattr(inner, "norm") and hasattr(inner, "rotary_emb")
            and hasattr(inner.config, "layer_types")):
        raise ValueError(f"{type(model).__name__}: expected a Gemma-3-style causal LM (model.layers, norm, "
                         f"rotary_emb, config.layer_types)")
    return inner


def is_decoder(model) -> bool:
    try:
        _decoder_stack(model)
        return True
    except ValueError:
        return False


def relative_bias_of(model):
    """What :class:`TopEncoder` needs beyond the layers: MPNet's encoder (its relative-position bias),
    None for BERT-family encoders."""
    _bert_like(model)
    return model.encoder if hasattr(model.encoder, "relative_attention_bias") else None


def _bert_like(model) -> None:
    if not (hasattr(model, "encoder") and hasattr(model.encoder, "layer") and hasattr(model, "embeddings")):
        raise ValueError(f"{type(model).__name__}: expected a BERT-family or MPNet encoder (embeddings + encoder.layer)")


@torch.no_grad()
def lower_layer_features(model, tokenizer, texts: list[str], top_layers: int, max_length: int,
                         batch_size: int = 64) -> torch.Tensor:
    """[N, max_length, d + 1]: the hidden states entering the top ``top_layers`` layers, and the mask.
    Encoders (BERT family, MPNet) or Gemma-3 decoders (right-padded: real tokens come first)."""
    from ..utils import progress
    decoder = is_decoder(model)
    if decoder:
        stack = _decoder_stack(model)
        n_layers = len(stack.layers)
    else:
        _bert_like(model)
        n_layers = len(model.encoder.layer)
    if not 1 <= top_layers <= n_layers:
        raise ValueError(f"top_layers must be in 1..{n_layers}, got {top_layers}")
    model.eval()
    out = []
    side = getattr(tokenizer, "padding_side", "right")
    tokenizer.padding_side = "right"
    owner, attr = (stack, "layers") if decoder else (model.encoder, "layer")
    layers = getattr(owner, attr)
    # only the layers below the top run (and one more, so the hidden state taken is never a final one)
    setattr(owner, attr, nn.ModuleList(list(layers)[: n_layers - top_layers + 1]))
    try:
        for i in progress(range(0, len(texts), batch_size), desc="encoding the frozen lower layers"):
            b = tokenizer(list(texts[i: i + batch_size]), padding="max_length", truncation=True,
                          max_length=max_length, return_tensors="pt")
            b = {k: v for k, v in b.items() if k in ("input_ids", "attention_mask")}
            hs = (stack if decoder else model)(**b, output_hidden_states=True).hidden_states
            h = hs[n_layers - top_layers]
            out.append(torch.cat([h, b["attention_mask"].unsqueeze(-1).to(h.dtype)], -1).float())
    finally:
        setattr(owner, attr, layers)
        tokenizer.padding_side = side
    return torch.cat(out)


def cached_features(encoder_name: str, split: TextSplit, top_layers: int, max_length: int, profile: str,
                    encoder=None) -> ArrayDataset:
    """The packed lower-layer features of ``split`` as an :class:`ArrayDataset` (with ``meta["groups"]``),
    computed once and stored under ``results/<profile>/cache/peft/`` (keyed on the texts and settings)."""
    key = hashlib.sha256(repr((encoder_name, top_layers, max_length, split.name, list(split.texts),
                               split.labels.tolist())).encode()).hexdigest()[:16]
    folder = paths.results_dir(profile) / "cache" / "peft"
    path = folder / f"{split.name}-{encoder_name}-{key}.pt"
    if path.exists():
        x = torch.load(path)
    else:
        if encoder is None:
            from ..pretrained import sentence_encoder
            encoder = sentence_encoder(encoder_name, device="cpu", max_length=max_length)
        x = lower_layer_features(encoder.model, encoder.tokenizer, split.texts, top_layers, max_length)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(x, path)
    return ArrayDataset(x, torch.as_tensor(split.labels), list(split.classes), split.name,
                        {"groups": np.asarray(split.groups)})


def subsample(split: TextSplit, per_group: int | None, seed: int) -> TextSplit:
    """Up to ``per_group`` examples of each group (seeded), or all of them."""
    if per_group is None:
        return split
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(split.groups == g))[:per_group]
                                  for g in np.unique(split.groups)]))
    return TextSplit([split.texts[i] for i in idx], split.labels[idx], split.classes, split.groups[idx], split.name)


def sample(split: TextSplit, n: int | None, seed: int) -> TextSplit:
    """``n`` examples drawn at random without replacement (seeded, kept in their original order), or all."""
    if n is None or n >= len(split):
        return split
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return TextSplit([split.texts[i] for i in idx], split.labels[idx], split.classes, split.groups[idx], split.name)


def group_partition(groups) -> list[np.ndarray]:
    """Natural clients: one client per group (e.g. multiemo's review domains), in sorted group order."""
    groups = np.asarray(groups)
    return [np.flatnonzero(groups == g) for g in np.unique(groups)]


def effective_rank(m: torch.Tensor) -> float:
    """exp of the entropy of the normalized singular values (Roy & Vetterli): 1 for rank one, r for r equal
    singular values; 0 for a zero matrix."""
    s = torch.linalg.svdvals(m.double())
    if float(s.sum()) == 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def adapter_metrics(fm, strategy=None):
    """``metrics(x)`` for ``run_federated``: the mean effective rank of the adapted layers' dW, and for Ravan
    the norm of each head's core (which heads carry the update), averaged over layers, and (given its
    ``strategy``) how far the clients' scalings moved in the last round (``scaling_spread``, mean |s_i - 1|)."""
    from .adapters import adapters

    def metrics(x):
        fm.load_into_module(x)
        layers = adapters(fm.module)
        out = {"effective_rank": float(np.mean([effective_rank(l.delta_weight().detach()) for _, l in layers]))}
        if layers and layers[0][1].method == "ravan":
            norms = torch.stack([l.core.detach().flatten(1).norm(dim=1) for _, l in layers]).mean(0)
            out.update({f"head{i}_norm": float(v) for i, v in enumerate(norms)})
        if strategy is not None and hasattr(strategy, "last_scaling_spread"):
            out["scaling_spread"] = float(strategy.last_scaling_spread)
        return out
    return metrics
