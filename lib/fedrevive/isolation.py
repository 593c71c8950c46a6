"""FedRevive's synthesizer in isolation (issue 38, ask 1): before any federated run, does it make
inputs that its teachers label as the requested class?

Two teacher settings, on Fashion-MNIST with the FEMNIST ConvNet with statistics trackers (``convnet28``,
``norm="track"``; notebook 03's CPU full profile narrows it to width 8)::

    central    one teacher trained centrally (Adam 1e-3, batch 32, a few hundred steps), q = its label histogram
    ensemble   c "stale non-IID client teachers": a global model trained centrally for fewer steps, then each
               client trains ``local_steps`` from it on its own Dirichlet(alpha) label-skewed shard (trackers
               from reset buffers, as a client task); weighted per class by ``teacher_weights`` (q_m = the
               client's label histogram, ``class_proportions="true"``)

Then the workbook's :class:`Synthesizer` runs ``calls`` synthesis calls against them (no student: the
adversarial term stays off unless ``student`` is given) and we report

    pool_prob    the weighted ensemble's mean probability of the requested class on the newest pool inputs
    pool_argmax  how often that class is the ensemble's argmax
    real_prob    the same on real test images with their labels (what an informative input looks like)
    oh_steps     [calls x g_steps] the class loss L_oh at each step of each call (does it fall within a call?)

``scripts/synthesis_isolation.py`` prints the one-change-at-a-time table built on :func:`run_isolation`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..client import LocalConfig, local_train
from ..models import build_model
from ..params import FlatModel
from ..partition import dirichlet
from .diagnostics import informativeness
from .generator import make_generator
from .synthesis import SynthesisConfig, Synthesizer
from .teachers import Teacher


@dataclass
class IsolationSetup:
    width: int = 8                  # ConvNet width (notebook 03's CPU full profile: 8; the authors': 64)
    nz: int = 64                    # generator sizes of 03's CPU full profile (the authors': 256 / 128)
    ngf: int = 32
    train_samples: int = 6000
    teacher_steps: int = 300        # central teacher: Adam steps of batch 32
    calls: int = 200                # synthesis calls
    num_teachers: int = 8           # ensemble: c client teachers
    alpha: float = 0.5              # ensemble: Dirichlet label skew of the client shards
    global_steps: int = 150         # ensemble: the (stale) global model the clients start from
    local_steps: int = 25           # ensemble: each client's task (the authors' local_iters)
    newest: int = 640               # pool_prob over the newest this-many pool inputs (10 calls of 64)
    seed: int = 0


def load_fashion(setup: IsolationSetup):
    """(train, test, mean, std): a seeded Fashion-MNIST sample, and the loader's standardisation."""
    from ..data import load_dataset, normalization
    train, test = load_dataset("fashion_mnist")
    mean, std = normalization("fashion_mnist")
    return train.sample(setup.train_samples, setup.seed), test.sample(1000, setup.seed + 1), mean, std


def _model(train, setup: IsolationSetup):
    return build_model("convnet28", train.input_shape, train.num_classes, seed=setup.seed, norm="track",
                       width=setup.width)


def _histogram(y, num_classes: int) -> torch.Tensor:
    c = torch.bincount(torch.as_tensor(y), minlength=num_classes).float()
    return c / c.sum()


def central_teacher(train, setup: IsolationSetup) -> tuple[FlatModel, list[Teacher]]:
    """One teacher trained centrally on ``train`` (its trackers' statistics from the same steps)."""
    fm = FlatModel(_model(train, setup))
    r = local_train(fm, fm.flat(), train, LocalConfig(lr=1e-3, optimizer="adam", batch_size=32,
                                                     steps=setup.teacher_steps), seed=setup.seed)
    return fm, [Teacher(0, fm.flat() + r.delta, r.buffers, _histogram(train.y, train.num_classes))]


def client_teachers(train, setup: IsolationSetup) -> tuple[FlatModel, list[Teacher]]:
    """``num_teachers`` stale non-IID client teachers: local training from one centrally pre-trained global
    model on Dirichlet(alpha) label-skewed shards."""
    fm = FlatModel(_model(train, setup))
    g = local_train(fm, fm.flat(), train, LocalConfig(lr=1e-3, optimizer="adam", steps=setup.global_steps),
                    seed=setup.seed)
    x_global = fm.flat() + g.delta
    part = dirichlet(train.y.numpy(), setup.num_teachers, setup.alpha, seed=setup.seed)
    teachers = []
    for k, idx in enumerate(part.indices):
        shard = train.subset(idx)
        r = local_train(fm, x_global, shard, LocalConfig(lr=1e-3, optimizer="adam", steps=setup.local_steps),
                        seed=setup.seed + 1 + k)
        teachers.append(Teacher(k, x_global + r.delta, r.buffers, _histogram(shard.y, train.num_classes)))
    return fm, teachers


def run_isolation(fm: FlatModel, teachers: list[Teacher], test, mean, std, setup: IsolationSetup,
                  cfg: SynthesisConfig | None = None, student: torch.Tensor | None = None) -> dict:
    """``setup.calls`` synthesis calls against ``teachers``; the pool's and real images' informativeness."""
    cfg = cfg or SynthesisConfig.for_input(test.input_shape, augment=False)
    G = make_generator(test.input_shape, test.num_classes, setup.nz, setup.ngf, setup.seed, mean, std)
    synth = Synthesizer(fm, G, test.num_classes, cfg, seed=setup.seed + 1)
    oh_steps, t0 = [], time.perf_counter()
    for _ in range(setup.calls):
        synth.step(teachers, student_w=student)
        oh_steps.append(list(synth.trace))
    seconds = time.perf_counter() - t0
    xs, ys = synth.pool.newest(setup.newest)
    pool = informativeness(fm, teachers, xs[0], ys)
    real = informativeness(fm, teachers, test.x, test.y)
    return {"pool_prob": pool["target_prob"], "pool_argmax": pool["target_argmax"],
            "real_prob": real["target_prob"], "real_argmax": real["target_argmax"],
            "oh_steps": np.array(oh_steps), "seconds": seconds, "synthesizer": synth}
