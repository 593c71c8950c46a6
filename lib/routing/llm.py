"""A measured correctness table of real language models on multiple-choice tasks (notebook 10's LLM pool).

The paper routes among 14 LLMs whose per-query correctness on ten benchmarks was measured. Offline
we can measure a few small models on BIG-bench multiple-choice tasks that stand in for the paper's
(social_iqa for SocialQA, elementary_math_qa for GSM8k / SVAMP, logical_deduction for LogiQA,
BIG-bench Hard's source tasks for BBH). Every entry is measured here, never assigned:

* a **causal LM** (gemma-3-270m, Qwen2.5-Coder-0.5B-Instruct), zero- or k-shot, picks the choice with the highest mean
  log-likelihood per token after the prompt (length-normalised, so long choices are not penalised)::

      prompt   = the task's instruction (BIG-bench's task_prefix) + "\\n\\n"
                 + [k solved examples "Q: ...\\nOptions: a | b | ...\\nA: <answer>\\n\\n"]
                 + "Q: <question>\\nOptions: a | b | ...\\nA:"
      score(c) = (1/|c|) * sum_t log p(c_t | prompt, c_<t)       (c = " " + choice, tokenised apart)

* a **sentence encoder** (MiniLM, mpnet) picks the choice whose embedding is closest (cosine) to
  the question's: a cheap retrieval heuristic, no reasoning.

Correct = the picked choice is one of the item's answers. Cost = the parameters that run x the
tokens processed (the prompt once per choice for the LM; the question and every choice for an
encoder), in millions. Each (scorer, task, items) result is cached as an ``.npz`` under
``cache_dir``, so a build of hours resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .pool import Pool

PROMPT_VERSION = 3          # part of every cache key: a change of the prompt format never reuses old scores


@dataclass
class Scorer:
    """One model of the pool: ``kind`` "lm" (``model`` = a causal LM name, ``shots`` solved examples in
    the prompt) or "similarity" (``model`` = a sentence-encoder name)."""

    name: str
    kind: str
    model: str
    shots: int = 0

    def __post_init__(self):
        if self.kind not in ("lm", "similarity"):
            raise ValueError(f"scorer kind must be 'lm' or 'similarity', got {self.kind!r}")
        if self.shots < 0 or (self.kind == "similarity" and self.shots):
            raise ValueError(f"{self.name}: shots must be >= 0, and 0 for a similarity scorer")


def split_items(items: list, n: int, shots_pool: int, seed: int) -> tuple[list, list]:
    """Draw ``n`` evaluation items and, apart from them, ``shots_pool`` items the few-shot prompts may use
    (seeded; never overlapping, so no prompt contains its own answer). Every drawn item's choices are put
    in a seeded random order (answers re-indexed): BIG-bench files may list the correct choice first
    (temporal_sequences always does), and a prompt that lists the options would leak that position."""
    if n < 1:
        raise ValueError(f"need at least one item per task, got n={n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    n = min(n, len(items) - shots_pool)
    if n < 1:
        raise ValueError(f"{len(items)} items cannot give {shots_pool} prompt examples and any to evaluate")
    drawn = [shuffle_choices(items[i], rng) for i in order[: n + shots_pool]]
    return drawn[:n], drawn[n:]


def shuffle_choices(item, rng):
    """The item with its choices in a random order drawn from ``rng`` and its answers re-indexed."""
    perm = rng.permutation(len(item.choices))
    where = {int(old): new for new, old in enumerate(perm)}
    return replace(item, choices=[item.choices[j] for j in perm], answers=sorted(where[a] for a in item.answers))


def prompt(item, examples: list = (), instruction: str = "") -> str:
    """The prompt for one item, after the task's ``instruction`` and ``examples`` solved items (each with
    its first correct choice as the answer); every question lists its options."""
    def q(it):
        return f"Q: {it.question}\nOptions: {' | '.join(it.choices)}\nA:"
    head = f"{instruction}\n\n" if instruction else ""
    head += "".join(f"{q(e)} {e.choices[e.answer]}\n\n" for e in examples)
    return head + q(item)


def choice_logliks(model, tok, context: str, choices: list[str]) -> tuple[np.ndarray, int]:
    """Mean log-likelihood per token of each ``" " + choice`` after ``context``, and the number of tokens
    the scorer is charged for (the prompt once per choice, plus the choice). Context and choice are
    tokenised apart, so the choice's tokens are exactly the ones scored.

    The context runs once; its key-value cache is copied to every choice, which then runs as one
    right-padded batch (the same numbers as a forward pass per choice, to float rounding: tested; 4-10x
    faster on long few-shot prompts). The prompt pass keeps only its last position's logits, where the
    model allows it (gemma's 262k-word output layer is most of its cost per token)."""
    ctx = tok(context, add_special_tokens=True).input_ids
    conts = [tok(" " + c, add_special_tokens=False).input_ids for c in choices]
    if any(len(c) == 0 for c in conts):
        raise ValueError(f"a choice tokenises to nothing: {choices}")
    dev = next(model.parameters()).device
    with torch.inference_mode():
        keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
        out = model(input_ids=torch.tensor([ctx], device=dev), use_cache=True, **keep)   # the last logits only
        first = torch.log_softmax(out.logits[0, -1].float(), -1).cpu()   # predicts every choice's first token
        sums = [float(first[c[0]]) for c in conts]
        width = max(map(len, conts)) - 1                                 # the choice tokens fed after the prompt
        if width > 0:
            cache = out.past_key_values
            cache.batch_repeat_interleave(len(conts))
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            ids = torch.tensor([c[:-1] + [pad] * (width + 1 - len(c)) for c in conts], device=dev)
            mask = torch.tensor([[1] * (len(ctx) + len(c) - 1) + [0] * (width + 1 - len(c)) for c in conts],
                                device=dev)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, past_key_values=cache)
                                     .logits.float(), -1).cpu()
            for b, c in enumerate(conts):                                # position j predicts c[j + 1]
                if len(c) > 1:
                    sums[b] += float(logp[b, torch.arange(len(c) - 1), torch.tensor(c[1:], dtype=torch.long)].sum())
    return np.array([s / len(c) for s, c in zip(sums, conts)]), sum(len(ctx) + len(c) for c in conts)


def similarity_picks(encoder, items: list) -> tuple[np.ndarray, np.ndarray]:
    """Each item's choice closest (cosine) to its question, and the tokens processed per item."""
    picks, tokens = [], []
    for it in items:
        e = encoder.encode([it.question] + list(it.choices), batch_size=64)
        picks.append(int(torch.argmax(e[1:] @ e[0])))
        tokens.append(sum(len(encoder.tokenizer(t, truncation=True, max_length=encoder.max_length).input_ids)
                          for t in [it.question] + list(it.choices)))
    return np.array(picks), np.array(tokens)


def _key(scorer: Scorer, task: str, items: list) -> str:
    """Cache key: the scorer, the task, the prompt format and the exact items (a hash of their text)."""
    h = hashlib.sha256(json.dumps([scorer.kind, scorer.model, scorer.shots, task, PROMPT_VERSION,
                                   [(i.question, i.choices) for i in items]]).encode()).hexdigest()[:16]
    return f"{scorer.name}-{task}-{len(items)}-{h}"


def score_task(scorer: Scorer, task: str, items: list, shot_items: list, load, cache_dir=None,
               instruction: str = "") -> dict:
    """``{"correct": [n], "tokens": [n], "params": P}`` of one scorer on one task's items (cached).
    ``load(scorer)`` returns what the scorer needs: ``(model, tokenizer)`` or a sentence encoder."""
    path = Path(cache_dir) / f"{_key(scorer, task, items)}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        z = np.load(path)
        return {"correct": z["correct"], "tokens": z["tokens"], "params": int(z["params"])}
    if scorer.kind == "lm" and scorer.shots > len(shot_items):
        raise ValueError(f"{scorer.name}: {scorer.shots} shots but only {len(shot_items)} prompt examples")
    obj = load(scorer)
    if scorer.kind == "lm":
        model, tok = obj
        params = sum(p.numel() for p in model.parameters())
        correct, tokens = [], []
        for it in items:
            ll, n = choice_logliks(model, tok, prompt(it, shot_items[: scorer.shots], instruction), it.choices)
            correct.append(int(np.argmax(ll)) in it.answers)
            tokens.append(n)
    else:
        params = sum(p.numel() for p in obj.model.parameters())
        picks, tokens = similarity_picks(obj, items)
        correct = [int(p) in it.answers for p, it in zip(picks, items)]
    out = {"correct": np.array(correct, dtype=np.int8), "tokens": np.array(tokens), "params": int(params)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)
    return out


def correctness_table(tasks: list[str], scorers: list[Scorer], n_per_task: int, shots_pool: int = 5,
                      seed: int = 0, cache_dir=None, load=None, items_of=None, instruction_of=None
                      ) -> tuple[Pool, dict]:
    """Measure every scorer on ``n_per_task`` items of each task; returns a :class:`Pool` (correct
    [Q, M], cost per model = mean parameter-tokens per query in millions, task [Q]) and the evaluated
    items per task. ``load``, ``items_of`` and ``instruction_of`` default to the workbook's models and
    BIG-bench tasks (items and their instructions)."""
    from ..utils import progress
    if len({s.name for s in scorers}) != len(scorers):
        raise ValueError("scorer names must be unique")
    if load is None:
        load = _default_loader()
    if items_of is None:
        from ..data import load_multiple_choice as items_of
    if instruction_of is None:
        from ..data import multiple_choice_instruction as instruction_of
    evaluated, shots = {}, {}
    for t_i, task in enumerate(tasks):
        evaluated[task], shots[task] = split_items(items_of(task), n_per_task, shots_pool, seed + t_i)
    correct, costs = [], []
    for sc in progress(scorers, desc="scorers"):
        col, cost = [], []
        for task in tasks:
            r = score_task(sc, task, evaluated[task], shots[task], load, cache_dir, instruction_of(task))
            col.append(r["correct"])
            cost.append(r["params"] * r["tokens"] / 1e6)
        correct.append(np.concatenate(col))
        costs.append(float(np.concatenate(cost).mean()))
    task_ix = np.concatenate([np.full(len(evaluated[t]), i) for i, t in enumerate(tasks)])
    pool = Pool([s.name for s in scorers], np.arange(len(scorers)), np.array(costs), np.stack(correct, 1),
                task_ix, list(tasks))
    return pool, evaluated


def _default_loader():
    """Load each model once (a GGUF LM takes about a minute to de-quantise)."""
    from .. import pretrained
    cache = {}

    def load(sc: Scorer):
        if sc.model not in cache:
            cache[sc.model] = (pretrained.causal_lm(sc.model) if sc.kind == "lm"       # the GPU when present
                               else pretrained.sentence_encoder(sc.model))
        return cache[sc.model]
    return load
