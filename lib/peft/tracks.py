"""A *track*: one pre-trained model on one task, ready for federated fine-tuning of its top (notebooks 05, 06).

What differs between models lives here, once: the cached inputs of the trained top (train and test), a
factory for that top with a fresh seeded head, and the matrices the adapters go on. The notebooks then
run every track through the same client loop, methods and verdicts.

=================== ================= ============================================== ==========================
model               family            trained top (on cached lower-layer outputs)    adapted matrices
=================== ================= ============================================== ==========================
minilm              BERT encoder      last ``top_layers`` layers, mean pool, head    query, value
mpnet               MPNet encoder     last ``top_layers`` layers (relative bias)     q, v (attention)
gemma-3-270m        Gemma 3 decoder   last ``top_layers`` layers, final norm, mean   q_proj, v_proj
                                      pool, head
efficientnet-lite0  CNN (ImageNet)    last ``top_layers`` of its 7 stages, head      1x1 convolutions (head
                                      conv, pool, head                               conv too) with
                                                                                     min(d_in, d_out) >= 112
=================== ================= ============================================== ==========================

Every adapted matrix communicates what LoRA at rank ``lora_rank`` would on it, ``lora_rank (d_in + d_out)``
(:func:`lib.peft.adapters.budget_rank`). EfficientNet's smaller 1x1 convolutions (80 channels or fewer)
cannot hold Ravan's four heads at that budget, hence the 112-channel floor, the same for every method.
Text tasks are :func:`lib.data.load_text` names (``n_train`` / ``n_test`` examples per group, e.g. per
MultiEmo domain; tasks without groups have one), image tasks :data:`lib.peft.vision.IMAGE_TASKS`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import torch
from torch import nn

from .. import paths
from ..data import ArrayDataset
from .adapters import budget_rank, inject, matrix_shape

# What notebooks 05 and 06 change in their full profile when no GPU is present (``FULL_CPU = dict(FULL_GPU,
# **FULL_CPU_CHANGES)``): the quick encoder's top layer in every client setting of the GPU variant, and two more
# tracks at sizes that finish in about an hour on 2 CPU cores. Each notebook's setting cell says what this cuts.
# AG News's track takes its stand-in (lib.data.resolve: the test split, else intent_recognition) when it is not here.
FULL_CPU_CHANGES = dict(encoder="minilm", top_layers=1, max_length=48, train_per_domain=1000, test_per_domain=125,
                        rounds=20, local_steps=5, target=0.45,
                        more_tracks=[["minilm", "ag_news_testsplit", 1, 2000, 500, ["dir0.1", "dir1"]],
                                     ["efficientnet-lite0", "cifar10", 1, 3000, 1000, ["dir0.1", "dir1"]]])
TEXT_TARGETS = {"minilm": ["query", "value"], "mpnet": ["q", "v"], "gemma-3-270m": ["q_proj", "v_proj"]}
IMAGE_MODELS = ("efficientnet-lite0",)
MIN_CONV = 112          # EfficientNet: adapt 1x1 convolutions with at least this many channels in and out


@dataclass
class Track:
    """What a federated PEFT run of one model on one task needs (see the module's table)."""
    model: str
    task: str
    top_layers: int
    train: ArrayDataset
    test: ArrayDataset
    make_top: Callable[[int], nn.Module]
    targets: object                      # name suffixes, or a predicate on module names (for ``inject``)

    @property
    def name(self) -> str:
        return f"{self.model} · {self.task}"

    def adapted(self, method: str, lora_rank: int, heads: int = 1, seed: int = 0) -> nn.Module:
        """The top with ``method``'s adapters (seeded bases) at LoRA-rank-``lora_rank`` budgets per matrix,
        and a trained head."""
        net = self.make_top(seed)
        inject(net, self.targets, method, rank=budget_rank(method, lora_rank, heads), heads=heads, seed=seed)
        net.head.requires_grad_(True)
        return net


def load_track(model: str, task: str, profile: str, top_layers: int, n_train: int | None, n_test: int | None,
               seed: int = 0, max_length: int = 64, image_size: int = 128, encoder=None) -> Track:
    """Load ``model``, cache its frozen lower layers' outputs on ``task`` (``results/<profile>/cache/peft/``)
    and return the :class:`Track`. ``encoder``: an already loaded sentence encoder to reuse."""
    if model in IMAGE_MODELS:
        return _image_track(model, task, profile, top_layers, n_train, n_test, seed, image_size)
    if model not in TEXT_TARGETS:
        raise ValueError(f"unknown model {model!r} for a PEFT track; known: "
                         f"{', '.join([*TEXT_TARGETS, *IMAGE_MODELS])}")
    from .. import data, pretrained
    from .text import TopDecoder, TopEncoder, cached_features, relative_bias_of, subsample
    task = data.resolve_all([task], profile)[0]   # AG News: its stand-in in quick and smoke, and offline
    tr, te = data.load_text(task)
    tr, te = subsample(tr, n_train, seed), subsample(te, n_test, seed + 1)
    if model == "gemma-3-270m":
        lm, tok = pretrained.causal_lm(model, device="cpu")
        enc = SimpleNamespace(model=lm, tokenizer=tok)
        make = lambda s: TopDecoder(lm, top_layers, len(tr.classes), seed=s)  # noqa: E731
    else:
        enc = encoder or pretrained.sentence_encoder(model, device="cpu", max_length=max_length)
        hidden = enc.model.config.hidden_size
        layers, bias = list(enc.model.encoder.layer[-top_layers:]), relative_bias_of(enc.model)
        make = lambda s: TopEncoder(layers, hidden, len(tr.classes), seed=s, relative_bias=bias)  # noqa: E731
    train = cached_features(model, tr, top_layers, max_length, profile, encoder=enc)
    test = cached_features(model, te, top_layers, max_length, profile, encoder=enc)
    return Track(model, task, top_layers, train, test, make, TEXT_TARGETS[model])


def _image_track(model, task, profile, top_layers, n_train, n_test, seed, size) -> Track:
    from .vision import TopCNN, load_image_task, lite0_for_task, lower_stage_features
    tr, te = load_image_task(task, n_train, n_test, seed=seed)
    dataset = tr.meta["dataset"]
    net = lite0_for_task(tr.num_classes, dataset, size=size, seed=seed)
    stages = len(net[1].blocks)
    if not 1 <= top_layers <= stages:
        raise ValueError(f"top_layers must be in 1..{stages} (EfficientNet-Lite0's stages), got {top_layers}")
    start = stages - top_layers
    folder = paths.results_dir(profile) / "cache" / "peft"

    def features(split: ArrayDataset) -> ArrayDataset:
        digest = hashlib.sha256(split.x.numpy().tobytes()).hexdigest()
        key = hashlib.sha256(repr((model, size, start, digest)).encode()).hexdigest()[:16]
        path = folder / f"{split.name}-{model}-{key}.pt"
        if path.exists():
            x = torch.load(path)
        else:
            x = lower_stage_features(net, split.x, start)
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(x, path)
        return ArrayDataset(x, split.y, list(split.classes), split.name, dict(split.meta))

    make_top = lambda s: TopCNN(net, start, tr.num_classes, seed=s)  # noqa: E731
    wide = {n for n, m in make_top(0).named_modules() if _wide_pointwise(m)}   # every method's rank fits
    if not wide:
        raise ValueError(f"no 1x1 convolution with >= {MIN_CONV} channels in the top {top_layers} stage(s); "
                         f"use more stages")
    return Track(model, task, top_layers, features(tr), features(te), make_top, lambda n: n in wide)


def _wide_pointwise(m: nn.Module) -> bool:
    from .adapters import is_pointwise_conv
    return is_pointwise_conv(m) and min(matrix_shape(m)) >= MIN_CONV


def load_tracks(main: list, more: list, profile: str, seed: int = 0, max_length: int = 64,
                image_size: int = 128) -> list[tuple[Track, list[str]]]:
    """The main track and the others, each ``[model, task, top_layers, n_train, n_test, settings]``
    (a notebook's ``more_tracks`` entries), loaded and cached: ``[(track, settings), ...]``, main first."""
    out = []
    for spec in [main, *more]:
        if len(spec) != 6:
            raise ValueError(f"a track is [model, task, top_layers, n_train, n_test, settings], got {spec!r}")
        model, task, top, n_train, n_test, settings = spec
        out.append((load_track(model, task, profile, top, n_train, n_test, seed, max_length, image_size),
                    list(settings)))
    return out


def setting_label(tracks: list, i: int, setting: str) -> str:
    """A setting's label in records and figures: the main track's (``i = 0``) by name, the others with
    their model and task."""
    return setting if i == 0 else f"{tracks[i][0].name}: {setting}"


def clients_for(track: Track, setting: str, seed: int, clients: int = 8) -> tuple[list, int]:
    """``(client datasets, clients per round)``: ``domains...`` = one client per group of the training set
    (e.g. MultiEmo's review domains), all training every round; ``dirα`` = Dirichlet(α) label skew over
    ``clients`` clients (at least 2 examples each), half of them per round."""
    from .. import fl, partition
    from .text import group_partition
    train = track.train
    if setting.startswith("domains"):
        groups = group_partition(train.meta["groups"])
        return [train.subset(ix) for ix in groups], len(groups)
    if not setting.startswith("dir"):
        raise ValueError(f"unknown client setting {setting!r}; expected 'domains...' or 'dir<alpha>'")
    part = partition.dirichlet(train.y.numpy(), clients, alpha=float(setting[3:]), seed=seed, min_size=2)
    return fl.client_datasets(train, part), clients // 2
