"""FedRevive's conditional generators: pseudo-images, or continuous token embeddings + masks.

Image generator (the Fast-DFKD shape FedRevive uses), for s x s images with C channels::

    Linear(nz -> 2 ngf (s/4)^2) -> BN -> Upsample x2 -> Conv3x3(2ngf -> 2ngf) -> BN -> LeakyReLU(0.2)
      -> Upsample x2 -> Conv3x3(2ngf -> ngf) -> BN -> LeakyReLU(0.2) -> Conv3x3(ngf -> C) -> Sigmoid

Class conditioning is in the input: z + 0.2 E[y] (z and the class embedding E are drawn fresh
and optimised for each synthesis call, see ``synthesis.py``). The sigmoid output in [0, 1] is
normalised with the dataset's mean and std, so teachers see inputs like their training data.

Text generator (FedRevive's text variant): the classifier's embedding table is frozen and
shared, so the generator writes directly in embedding space: z -> MLP -> embeddings [L, D]
and an attention mask [L] in (0, 1).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class ImageGenerator(nn.Module):
    kind = "image"

    def __init__(self, nz: int, ngf: int, img_size: int, channels: int, mean=(0.0,), std=(1.0,)):
        super().__init__()
        if img_size % 4:
            raise ValueError(f"image size must be a multiple of 4, got {img_size}")
        self.nz, self.init_size, self.out_shape = nz, img_size // 4, (channels, img_size, img_size)
        self.l1 = nn.Linear(nz, 2 * ngf * self.init_size ** 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(2 * ngf), nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, 2 * ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * ngf), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2),
            nn.Conv2d(ngf, channels, 3, 1, 1), nn.Sigmoid())
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, z):
        h = self.l1(z).view(z.shape[0], -1, self.init_size, self.init_size)
        return (self.body(h) - self.mean) / self.std

    def augment(self, x, gen: torch.Generator):
        """Random crop (pad 4) and horizontal flip, differentiable in x."""
        n, pad = x.shape[0], 4
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect" if x.shape[-1] > pad else "constant")
        dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
        x = xp[..., dy: dy + x.shape[-2], dx: dx + x.shape[-1]]
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def probe(self, n: int, gen: torch.Generator):
        """Gaussian-noise inputs for estimating a model's class proportions."""
        return torch.randn((n, *self.out_shape), generator=gen).to(self.mean.device)


class TextGenerator(nn.Module):
    kind = "text"

    def __init__(self, nz: int, hidden: int, seq_len: int, embed_dim: int, embed_std: float = 1.0):
        super().__init__()
        self.nz, self.seq_len, self.embed_dim, self.embed_std = nz, seq_len, embed_dim, embed_std
        self.net = nn.Sequential(nn.Linear(nz, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, seq_len * (embed_dim + 1)))

    def forward(self, z):
        out = self.net(z).view(z.shape[0], self.seq_len, self.embed_dim + 1)
        return self.embed_std * torch.tanh(out[..., :-1] / 3) * 3, torch.sigmoid(out[..., -1])

    def augment(self, x, gen: torch.Generator):
        return x

    def probe(self, n: int, gen: torch.Generator):
        dev = next(self.parameters()).device
        emb = self.embed_std * torch.randn((n, self.seq_len, self.embed_dim), generator=gen).to(dev)
        return emb, torch.ones(n, self.seq_len, device=dev)


def make_generator(model_input, num_classes: int, nz: int, ngf: int, seed: int, mean=(0.0,), std=(1.0,),
                   embed_std: float = 1.0) -> nn.Module:
    """A generator for the classifier's input: ``model_input`` is an image shape (C, H, W) or
    ``("text", seq_len, embed_dim)``. Seeded initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model_input[0] == "text":
            _, seq_len, dim = model_input
            return TextGenerator(nz, ngf, seq_len, dim, embed_std)
        c, h, w = model_input
        if h != w:
            raise ValueError(f"square images expected, got {h}x{w}")
        return ImageGenerator(nz, ngf, h, c, mean, std)
