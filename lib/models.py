"""Models at the scales the papers use, built by name with :func:`build_model`.

========== ==================================================== ==========================
name       architecture                                         used for
========== ==================================================== ==========================
mlp        2 hidden layers (200, 200), ReLU; norm="track"       MNIST-like, quick tests
           puts a statistics tracker after each hidden Linear
cnn28      McMahan et al.'s CNN: 2 x (conv5x5, maxpool), FC 512 28x28 grey images
cnn32      same shape for 32x32 RGB (conv 64, FC 384-192)       CIFAR with a small network
convnet28  FedRevive's FEMNIST ConvNet: 3 x conv3x3 (width 64),  FedRevive on 28x28 grey
           FC 200-100; norm="track" puts a tracker after each   images
           conv
resnet18   CIFAR ResNet-18 (3x3 stem, no max-pool); norm=       CIFAR at the papers' scale
           "batch", "group" (GroupNorm, 2 groups) or "track"
text       token embeddings -> mean pool -> MLP; takes token   AG News
           ids, or (embeddings, mask) for FedRevive's generator
========== ==================================================== ==========================

``norm="track"`` (FedRevive) replaces normalization by :class:`StatTracker`: a layer that
records the mean and variance of what passes through it and does not normalize.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class StatTracker(nn.Module):
    """A normalization layer that records batch statistics and does not normalize (identity).

    In training mode it tracks the running mean and variance of its input per feature (channel
    dimension 1) from reset buffers (mean 0, variance 1), so a client's uploaded buffers describe its
    own data. ``momentum=0.1`` (the default, as BatchNorm and FedRevive's authors' trackers) is an
    exponential moving average, ``r <- (1 - m) r + m * batch``; ``momentum=None`` the plain average
    of the batches seen (BatchNorm's ``momentum=None``). With ``capture = True`` it also keeps the
    current batch's (differentiable) mean and variance in ``batch_stats``: FedRevive's generator
    matches them to a teacher's tracked statistics.
    """

    def __init__(self, num_features: int, momentum: float | None = 0.1):
        super().__init__()
        if momentum is not None and not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1] or None (plain average), got {momentum}")
        self.num_features, self.momentum = num_features, momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros(()))
        self.capture = False
        self.batch_stats = None

    def forward(self, x):
        dims = [0] + list(range(2, x.dim()))
        if self.capture:
            self.batch_stats = (x.mean(dims), x.var(dims, unbiased=False))
        if self.training and not self.capture:
            with torch.no_grad():
                n = self.num_batches_tracked
                m = 1 / (n + 1) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(x.mean(dims) * m)
                self.running_var.mul_(1 - m).add_(x.var(dims, unbiased=False) * m)
                self.num_batches_tracked.add_(1)
        return x


def trackers(model: nn.Module) -> list[tuple[str, StatTracker]]:
    """The model's statistics trackers, by module name (buffer names are ``name + '.running_mean'``)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, StatTracker)]


class MLP(nn.Module):
    def __init__(self, input_shape, num_classes: int, hidden=(200, 200), norm: str | None = None):
        super().__init__()
        hidden = (200, 200) if hidden is None else tuple(hidden)   # None = the default widths (a profile may pass None)
        d = 1
        for s in input_shape:
            d *= s
        layers, prev = [nn.Flatten()], d
        for h in hidden:
            layers += [nn.Linear(prev, h)] + ([_norm(norm, h, dim=1)] if norm else []) + [nn.ReLU()]
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class ChannelsLast(nn.Module):
    """Identity on values; stores the activation channels-last (NHWC). After a 1-channel first
    convolution, whose NCHW and NHWC layouts coincide, this is what switches the rest of the trunk
    to oneDNN's channels-last kernels: on a 2-core CPU cnn28 trains 17% and evaluates 28% faster
    (max-pooling alone 10x). A layout, not a layer: no parameters, no change to the function."""

    def forward(self, x):
        if x.is_mkldnn:
            return x
        try:
            return x.contiguous(memory_format=torch.channels_last)
        except RuntimeError:   # inside torch.func.vmap (lib.batched), where only NCHW is implemented
            return x


class CNN(nn.Module):
    """Two conv5x5 + max-pool blocks and two FC layers (McMahan et al. 2017 shape).

    ``features`` is the convolutional trunk, ``head`` the classifier, so a
    pre-trained trunk can be kept and the head re-initialised.
    """

    def __init__(self, input_shape, num_classes: int, channels=(32, 64), fc=(512,), norm: str | None = None):
        super().__init__()
        c_in, h, w = input_shape
        n = (lambda c: [_norm(norm, c)]) if norm else (lambda c: [])  # noqa: E731  (norm="track": FedRevive)
        self.features = nn.Sequential(
            nn.Conv2d(c_in, channels[0], 5, padding=2), ChannelsLast(), *n(channels[0]), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 5, padding=2), *n(channels[1]), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten())
        prev, layers = channels[1] * (h // 4) * (w // 4), []
        for f in fc:
            layers += [nn.Linear(prev, f), nn.ReLU()]
            prev = f
        self.head = nn.Sequential(*layers, nn.Linear(prev, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class ConvNet(nn.Module):
    """FedRevive's FEMNIST ConvNet (after FedDyn): 3 x conv3x3 (no padding) of ``width`` channels, each
    followed by a normalization slot (a statistics tracker with ``norm="track"``) and ReLU, max-pool after
    the 2nd and 3rd, then FC 200-100-classes. For 28x28 inputs: 26 -> 24 -> 12 -> 10 -> 5."""

    def __init__(self, input_shape, num_classes: int, width: int = 64, norm: str | None = None):
        super().__init__()
        c_in, h, w = input_shape
        if (h, w) != (28, 28):
            raise ValueError(f"convnet28 expects 28x28 inputs, got {tuple(input_shape)}")
        n = (lambda c: [_norm(norm, c)]) if norm else (lambda c: [])  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(c_in, width, 3), *n(width), nn.ReLU(),
            nn.Conv2d(width, width, 3), *n(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3), *n(width), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(width * 25, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(),
                                  nn.Linear(100, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def _norm(kind: str, channels: int, dim: int = 2) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels) if dim == 2 else nn.BatchNorm1d(channels)
    if kind == "group" and dim == 2:
        return nn.GroupNorm(2, channels)
    if kind == "track":
        return StatTracker(channels)
    raise ValueError(f"unknown norm {kind!r}; expected 'batch', 'track'" + (" or 'group'" if dim == 2 else ""))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.n1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.n2 = _norm(norm, c_out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out))

    def forward(self, x):
        out = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3x3 stem, four stages of two BasicBlocks, global average pool."""

    def __init__(self, input_shape, num_classes: int, norm: str = "group", width: int = 64):
        super().__init__()
        c_in = input_shape[0]
        # the stem lives only inside `features`: registered twice, it made parameters shared between two
        # names, and flat-vector views broke after the first forward pass
        stem = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1, bias=False), _norm(norm, width), nn.ReLU())
        blocks, c = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            for j in range(2):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c, width * mult, stride, norm))
                c = width * mult
        self.features = nn.Sequential(stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class TextClassifier(nn.Module):
    """Mean of token embeddings (padding id 0 ignored), then a one-hidden-layer MLP.

    Takes token ids [B, L], or continuous ``(embeddings [B, L, D], mask [B, L])``: the input
    FedRevive's text generator produces. ``frozen_embeddings`` keeps the embedding table fixed
    (it is then not a trainable parameter, so every client shares one embedding space);
    ``embeddings`` starts it from a pre-trained table (``lib.pretrained.word_embeddings``).
    """

    def __init__(self, input_shape, num_classes: int, vocab_size: int = 20000, embed_dim: int = 64,
                 hidden: int = 64, norm: str | None = None, frozen_embeddings: bool = False,
                 embeddings: torch.Tensor | None = None):
        super().__init__()
        if embeddings is not None:      # a pre-trained table [vocab, dim] (e.g. MiniLM's word embeddings)
            if embeddings.dim() != 2:
                raise ValueError(f"embeddings must be a [vocab, dim] table, got shape {tuple(embeddings.shape)}")
            vocab_size, embed_dim = embeddings.shape
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        if embeddings is not None:
            with torch.no_grad():
                self.embed.weight.copy_(embeddings)
        self.embed.weight.requires_grad_(not frozen_embeddings)
        self.head = nn.Sequential(nn.Linear(embed_dim, hidden), *([_norm(norm, hidden, dim=1)] if norm else []),
                                  nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x, mask=None):
        if x.dtype in (torch.long, torch.int, torch.int32):
            mask = (x != 0).float()
            x = self.embed(x)
        elif mask is None:
            mask = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        # the masked mean as one batched product: no [B, L, D] temporary (FedRevive's text pools are large)
        pooled = torch.einsum("bl,bld->bd", mask.to(x.dtype), x) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(pooled)


def _cnn32(input_shape, num_classes, **kw):
    return CNN(input_shape, num_classes, channels=kw.pop("channels", (64, 64)), fc=kw.pop("fc", (384, 192)), **kw)


MODELS = {"mlp": MLP, "cnn28": CNN, "cnn32": _cnn32, "convnet28": ConvNet, "resnet18": ResNet18,
          "text": TextClassifier}


def build_model(name: str, input_shape, num_classes: int, seed: int | None = None, **kwargs) -> nn.Module:
    """Build a model by name; with ``seed`` the initial weights are reproducible."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    if name == "cnn28" and tuple(input_shape)[1:] != (28, 28):
        raise ValueError(f"cnn28 expects 28x28 inputs, got {tuple(input_shape)}; use cnn32 or mlp")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return MODELS[name](tuple(input_shape), num_classes, **kwargs)
    return MODELS[name](tuple(input_shape), num_classes, **kwargs)


def default_model(dataset: str) -> str:
    """The model each dataset is paired with unless a notebook says otherwise."""
    return {"fashion_mnist": "cnn28", "mnist": "cnn28", "cifar10": "resnet18", "cifar10_testsplit": "resnet18",
            "cifar100": "resnet18", "ag_news": "text", "ag_news_testsplit": "text", "multiemo": "text",
            "vitaminc": "text", "movie_dialog": "text", "formal_fallacies": "text",
            "intent_recognition": "text"}.get(dataset, "mlp")


def reset_head(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise the last Linear layer (seeded): keep a pre-trained trunk, start a new classifier."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("model has no Linear layer to reset")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        last[-1].reset_parameters()
    return model


def with_new_head(model: nn.Module, num_classes: int, seed: int) -> nn.Module:
    """Replace the last Linear layer by a fresh one with ``num_classes`` outputs (seeded)."""
    parent, name, old = None, None, None
    for mod in model.modules():
        for n, child in mod.named_children():
            if isinstance(child, nn.Linear):
                parent, name, old = mod, n, child
    if old is None:
        raise ValueError("model has no Linear layer to replace")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        setattr(parent, name, nn.Linear(old.in_features, num_classes))
    return model
