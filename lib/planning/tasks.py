"""The synthetic tasks of the planning paper (arXiv 2509.25260), built as it describes them.

* **A context-free grammar** (CFG): a layered grammar in the style of the synthetic CFGs that
  language-model studies use. The root expands to symbols of level 1, each symbol of level ``l`` has
  a few rules, each a sequence of 2 or 3 symbols of level ``l + 1``, and the symbols below the last
  level are terminals. Sampling derives a string top-down; :meth:`Grammar.parses` checks a string
  bottom-up (memoised span recursion), so a test can assert that every sample parses.
* **Path-finding** (PF-Short: paths of 4 nodes, PF-Long: 6 nodes). Each instance is a graph given
  as a shuffled edge list, a source and a target. Exactly two node-disjoint paths lead from the
  source to the target, and a third branch from the source (the *decoy*) has the same length but
  ends in a dead end. The answer is either valid path, node by node. Branch awareness compares the
  unused valid path with the decoy branch redirected to the target (:meth:`PFData.decoy_to_target`).

Token layout of a PF sequence (node ids are ``0 .. n_nodes-1``; specials follow)::

    BOS  u1 v1  u2 v2 ...  QUERY s t  ANSWER  s a b t  EOS
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


# ----------------------------------------------------------------------------------------------
# the grammar
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grammar:
    """``rules[level][symbol]`` = list of right-hand sides (tuples of symbols of ``level + 1``);
    symbols below the last level are terminals ``0 .. n_terminals-1``."""
    rules: tuple
    n_terminals: int

    @property
    def levels(self) -> int:
        return len(self.rules)

    def sample(self, rng: np.random.Generator) -> list[int]:
        """One string derived from the root (symbol 0 of level 0), rules chosen uniformly."""
        seq = [0]
        for level in self.rules:
            out = []
            for sym in seq:
                rhs = level[sym]
                out.extend(rhs[rng.integers(len(rhs))])
            seq = out
        return seq

    def parses(self, s) -> bool:
        """True iff the terminal string ``s`` derives from the root."""
        s = tuple(int(x) for x in s)
        if any(not 0 <= x < self.n_terminals for x in s):
            return False

        @lru_cache(maxsize=None)
        def derives(level: int, sym: int, i: int, j: int) -> bool:
            if level == self.levels:              # a terminal covers exactly one position
                return j == i + 1 and s[i] == sym
            return any(covers(level + 1, rhs, i, j) for rhs in self.rules[level][sym])

        @lru_cache(maxsize=None)
        def covers(level: int, rhs: tuple, i: int, j: int) -> bool:
            if len(rhs) == 1:
                return derives(level, rhs[0], i, j)
            return any(derives(level, rhs[0], i, k) and covers(level, rhs[1:], k, j)
                       for k in range(i + 1, j - len(rhs) + 2))

        return len(s) > 0 and derives(0, 0, 0, len(s))


def make_grammar(levels: int = 4, symbols: int = 3, rules_per_symbol: int = 2, n_terminals: int = 3,
                 seed: int = 0) -> Grammar:
    """A random layered grammar: ``levels`` expansions, ``symbols`` non-terminals per level (1 at the
    root), ``rules_per_symbol`` right-hand sides of length 2 or 3 each, distinct within a symbol."""
    if levels < 1 or symbols < 1 or rules_per_symbol < 1 or n_terminals < 2:
        raise ValueError(f"need levels >= 1, symbols >= 1, rules_per_symbol >= 1, n_terminals >= 2; got "
                         f"{levels}, {symbols}, {rules_per_symbol}, {n_terminals}")
    rng = np.random.default_rng(seed)
    rules = []
    for lv in range(levels):
        n_here = 1 if lv == 0 else symbols
        n_below = n_terminals if lv == levels - 1 else symbols
        level = []
        for _ in range(n_here):
            rhss: set = set()
            while len(rhss) < rules_per_symbol:
                rhss.add(tuple(int(x) for x in rng.integers(0, n_below, rng.integers(2, 4))))
            level.append(tuple(sorted(rhss)))
        rules.append(tuple(level))
    return Grammar(tuple(rules), n_terminals)


@dataclass
class CFGData:
    """Grammar strings as padded token sequences: ``BOS x_1 .. x_n EOS PAD ..``."""
    tokens: torch.Tensor       # [N, L] long
    lengths: torch.Tensor      # [N] string lengths (without BOS/EOS)
    vocab: int
    bos: int
    eos: int
    pad: int
    grammar: Grammar


def cfg_dataset(grammar: Grammar, n: int, min_len: int, max_len: int, seed: int) -> CFGData:
    """``n`` strings with ``min_len <= length <= max_len`` (rejection sampling from the grammar)."""
    if n < 1 or min_len > max_len:
        raise ValueError(f"need n >= 1 and min_len <= max_len, got n={n}, {min_len}..{max_len}")
    rng = np.random.default_rng(seed)
    bos, eos, pad = grammar.n_terminals, grammar.n_terminals + 1, grammar.n_terminals + 2
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise ValueError(f"the grammar rarely yields strings of length {min_len}..{max_len}; widen the range")
        s = grammar.sample(rng)
        if min_len <= len(s) <= max_len:
            out.append(s)
    L = max_len + 2
    tok = torch.full((n, L), pad, dtype=torch.long)
    for i, s in enumerate(out):
        tok[i, :len(s) + 2] = torch.tensor([bos, *s, eos])
    return CFGData(tok, torch.tensor([len(s) for s in out]), grammar.n_terminals + 3, bos, eos, pad, grammar)


# ----------------------------------------------------------------------------------------------
# path-finding
# ----------------------------------------------------------------------------------------------
@dataclass
class PFData:
    """Path-finding instances. ``paths[i, 0]`` is the training target (chosen at random between the
    two valid paths), ``paths[i, 1]`` the other valid path, ``paths[i, 2]`` the decoy; each row is
    ``path_len`` node ids starting at the source (the decoy's last node is a dead end, not the target)."""
    tokens: torch.Tensor       # [N, L] the full sequence with the target path as the answer
    paths: torch.Tensor        # [N, 3, path_len]
    answer_start: int          # index of the first answer node (the source) in ``tokens``
    path_len: int
    n_nodes: int
    vocab: int
    bos: int
    query: int
    answer: int
    eos: int

    @property
    def prompt_len(self) -> int:
        return self.answer_start

    def with_answer(self, which: int) -> torch.Tensor:
        """The sequences with path ``which`` (0 target, 1 other valid path, 2 decoy) as the answer."""
        tok = self.tokens.clone()
        tok[:, self.answer_start:self.answer_start + self.path_len] = self.paths[:, which]
        return tok

    def decoy_to_target(self) -> torch.Tensor:
        """The decoy answer that branch awareness feeds: the decoy branch's first ``path_len - 1`` nodes, then the
        target [N, path_len]. It is invalid (its last hop is no edge of the graph) but ends, like both valid paths,
        at the target the prompt also holds (``QUERY s t``), so the target token alone cannot tell it from a valid
        path; the dead-end branch ``paths[:, 2]`` ends elsewhere and lets it."""
        d = self.paths[:, 2].clone()
        d[:, -1] = self.paths[:, 0, -1]
        return d

    def edges(self, i: int) -> set:
        body = self.tokens[i, 1:self.answer_start - 4].view(-1, 2).tolist()
        return {(u, v) for u, v in body}


def pf_dataset(n: int, path_len: int, n_nodes: int, seed: int) -> PFData:
    """``n`` instances: two node-disjoint source-target paths of ``path_len`` nodes and a decoy branch
    of ``path_len`` nodes from the source that never reaches the target; node labels drawn at random."""
    if path_len < 3:
        raise ValueError(f"path_len must be >= 3 (source, at least one inner node, target), got {path_len}")
    inner = path_len - 2
    need = 2 + 2 * inner + (path_len - 1)
    if n_nodes < need:
        raise ValueError(f"path_len={path_len} needs at least {need} node labels, got n_nodes={n_nodes}")
    rng = np.random.default_rng(seed)
    bos, query, answer, eos = n_nodes, n_nodes + 1, n_nodes + 2, n_nodes + 3
    n_edges = 3 * (path_len - 1)
    L = 1 + 2 * n_edges + 3 + 1 + path_len + 1
    answer_start = 1 + 2 * n_edges + 3 + 1
    tok = torch.empty((n, L), dtype=torch.long)
    paths = torch.empty((n, 3, path_len), dtype=torch.long)
    for i in range(n):
        lab = rng.permutation(n_nodes)[:need]
        s, t = int(lab[0]), int(lab[1])
        a = [s, *lab[2:2 + inner].tolist(), t]
        b = [s, *lab[2 + inner:2 + 2 * inner].tolist(), t]
        d = [s, *lab[2 + 2 * inner:].tolist()]
        edges = [(p[k], p[k + 1]) for p in (a, b, d) for k in range(path_len - 1)]
        edges = [edges[j] for j in rng.permutation(len(edges))]
        target, other = (a, b) if rng.random() < 0.5 else (b, a)
        tok[i] = torch.tensor([bos, *[x for e in edges for x in e], query, s, t, answer, *target, eos])
        paths[i] = torch.tensor([target, other, d])
    return PFData(tok, paths, answer_start, path_len, n_nodes, n_nodes + 4, bos, query, answer, eos)


def pf_valid(data: PFData, i: int, path) -> bool:
    """True iff ``path`` (node ids) goes from instance ``i``'s source to its target along its edges."""
    path = [int(x) for x in path]
    s, t = int(data.paths[i, 0, 0]), int(data.paths[i, 0, -1])
    if len(path) < 2 or path[0] != s or path[-1] != t:
        return False
    e = data.edges(i)
    return all((u, v) in e for u, v in zip(path[:-1], path[1:]))
