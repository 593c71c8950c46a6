"""A pool of real models of different cost to route among (notebook 10's quick table).

The paper routes among 14 LLMs whose per-query correctness on ten benchmarks was measured. Offline on
a CPU we build a pool whose correctness we can measure in a minute, and say so: each "model" is a
**classifier of a given depth** (a logistic-regression head on the mean-pooled hidden states of
MiniLM's layer ``k``; deeper = more computation) **trained on its own mix of the tasks** (a Dirichlet
draw over the tasks, at least ``min_per_task`` sentences of each). Its answer to a query is its
prediction; correct or not is measured on held-out sentences, never assigned. Cost = the parameters
that run (MiniLM's first ``k`` layers, without the embedding table, plus the head) x the query's
tokens, in millions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ModelSpec:
    name: str
    layer: int                       # which MiniLM layer the head reads (1 .. n_layers)
    per_task: dict                   # training sentences per task


@dataclass
class Pool:
    names: list
    layers: np.ndarray               # [M]
    costs: np.ndarray                # [M] mean cost per query (M parameter-tokens)
    correct: np.ndarray              # [Q, M] 1 = the model answered the query correctly
    task: np.ndarray                 # [Q] task index of each query
    tasks: list
    specs: list = field(default_factory=list)

    def accuracy_by_task(self) -> np.ndarray:
        """[tasks, M] accuracy of every model on every task's queries."""
        return np.stack([self.correct[self.task == t].mean(0) for t in range(len(self.tasks))])


def make_specs(tasks: list, layers: list, copies: int, budget: int, alpha: float, min_per_task: int,
               seed: int) -> list:
    """``copies`` models per layer, each trained on ``budget`` sentences split over the tasks by a
    Dirichlet(alpha) draw (at least ``min_per_task`` per task)."""
    if budget < min_per_task * len(tasks):
        raise ValueError(f"budget {budget} < min_per_task x tasks = {min_per_task * len(tasks)}")
    rng = np.random.default_rng(seed)
    specs = []
    for layer in layers:
        for c in range(copies):
            share = rng.dirichlet(np.full(len(tasks), alpha))
            extra = rng.multinomial(budget - min_per_task * len(tasks), share)
            specs.append(ModelSpec(f"L{layer}-{chr(97 + c)}", int(layer),
                                   {t: int(min_per_task + e) for t, e in zip(tasks, extra)}))
    return specs


def layer_params(model, layer: int) -> int:
    """Parameters of a BERT-style encoder's first ``layer`` transformer layers (no embedding table)."""
    blocks = model.encoder.layer
    if not 1 <= layer <= len(blocks):
        raise ValueError(f"layer must be in 1..{len(blocks)}, got {layer}")
    return int(sum(p.numel() for b in blocks[:layer] for p in b.parameters()))


def build_pool(specs: list, feats: dict, labels: dict, train_idx: dict, query_idx: dict, tokens: dict,
               params_per_layer: dict, seed: int) -> Pool:
    """Fit every model and record its correctness on every query.

    ``feats[t]`` [n, layers + 1, d] per-layer embeddings of task t's sentences, ``labels[t]`` [n],
    ``train_idx[t]`` / ``query_idx[t]`` disjoint index arrays (models train on the first, are scored
    on the second), ``tokens[t]`` [n] token counts, ``params_per_layer[k]`` from :func:`layer_params`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    tasks = list(feats)
    for t in tasks:
        if np.intersect1d(train_idx[t], query_idx[t]).size:
            raise ValueError(f"task {t}: training and query sentences overlap")
    rng = np.random.default_rng(seed)
    task_of = np.concatenate([np.full(len(query_idx[t]), i) for i, t in enumerate(tasks)])
    q_tokens = np.concatenate([np.asarray(tokens[t])[query_idx[t]] for t in tasks])
    correct = np.zeros((len(task_of), len(specs)), dtype=np.int8)
    costs = np.zeros(len(specs))
    for m, spec in enumerate(specs):
        col = []
        for t in tasks:
            n = spec.per_task[t]
            if n > len(train_idx[t]):
                raise ValueError(f"{spec.name} wants {n} sentences of {t}, which has {len(train_idx[t])}")
            pick = rng.choice(train_idx[t], n, replace=False)
            X = feats[t][pick, spec.layer].numpy()
            y = np.asarray(labels[t])[pick]
            Xq = feats[t][query_idx[t], spec.layer].numpy()
            if len(np.unique(y)) < 2:                    # one class seen: the model always answers it
                pred = np.full(len(Xq), y[0])
            else:
                sc = StandardScaler().fit(X)
                clf = LogisticRegression(C=0.5, max_iter=300).fit(sc.transform(X), y)
                pred = clf.predict(sc.transform(Xq))
            col.append(pred == np.asarray(labels[t])[query_idx[t]])
        correct[:, m] = np.concatenate(col)
        costs[m] = params_per_layer[spec.layer] * q_tokens.mean() / 1e6
    return Pool([s.name for s in specs], np.array([s.layer for s in specs]), costs, correct, task_of, tasks, specs)


def split_queries(task: np.ndarray, frac_train: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (router-train, router-test) over the queries, stratified by task."""
    rng = np.random.default_rng(seed)
    train = np.zeros(len(task), bool)
    for t in np.unique(task):
        ix = np.flatnonzero(task == t)
        train[rng.choice(ix, int(round(frac_train * len(ix))), replace=False)] = True
    return train, ~train


def as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


# what a query to a general model would say: the routers embed instruction + input, so that two tasks on
# the same sentences (MultiEmo sentiment and domain) are different queries, as they would be for an LLM
INSTRUCTIONS = {
    "ag_news": "What is the topic of this news article?",
    "ag_news_testsplit": "What is the topic of this news article?",
    "multiemo": "Is the sentiment of this review sentence negative, neutral, positive or ambivalent?",
    "multiemo_domain": "Which kind of review is this sentence from: hotels, medicine, products or reviews?",
    "vitaminc": "Given the passage, is the claim true, false, or is there not enough information?",
    "movie_dialog": "Are these two lines of movie dialogue spoken by the same speaker or by different ones?",
    "formal_fallacies": "Is this argument deductively valid or invalid?",
    "intent_recognition": "What does this request to a voice assistant ask for: add to a playlist, book a restaurant, "
                          "the weather, play music, a screening, a creative work, or rate a book?",
}


def query_text(task: str, text: str) -> str:
    """The query as a user would send it: the task's instruction, then the input."""
    if task not in INSTRUCTIONS:
        raise ValueError(f"no instruction for task {task!r}; known: {sorted(INSTRUCTIONS)}")
    return f"{INSTRUCTIONS[task]} {text}"


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def shared_inputs(texts: dict) -> "pd.DataFrame":
    """Share of each task's distinct inputs (rows; whitespace and case ignored) that are also an input of
    another task (columns). Two tasks on the same sentences (MultiEmo's sentiment and review domain) share
    all of them: leaving one out leaves its inputs among the inliers."""
    import pandas as pd
    sets = {t: {_norm(x) for x in xs} for t, xs in texts.items()}
    return pd.DataFrame({b: {a: (len(sets[a] & sets[b]) / max(len(sets[a]), 1) if a != b else float("nan"))
                             for a in sets} for b in sets}).loc[list(sets), list(sets)]


def outlier_groups(texts: dict, tol: float = 0.0) -> list[tuple]:
    """The tasks to leave out together so that no outlier input is also an inlier input: the connected
    components of "shares more than ``tol`` of its inputs with" (in the order of ``texts``). A task whose
    inputs no other task has is a group of its own."""
    share = shared_inputs(texts)
    names, seen, groups = list(texts), set(), []
    for t in names:
        if t in seen:
            continue
        comp, todo = [], [t]
        while todo:
            a = todo.pop()
            if a in seen:
                continue
            seen.add(a)
            comp.append(a)
            todo += [b for b in names if b != a and b not in seen and (share.loc[a, b] > tol or share.loc[b, a] > tol)]
        groups.append(tuple(sorted(comp, key=names.index)))
    return groups
