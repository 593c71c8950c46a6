"""FedRevive's synthesizer in isolation (issue 38): a centrally trained teacher and the workbook's Synthesizer
must make pool inputs that the teacher labels as the requested class, before any federated run.

Fast size: Fashion-MNIST (3,000 images), the FEMNIST ConvNet with trackers at width 8 trained for 300 Adam
steps, a generator with nz 64, ngf 16, 20 synthesis calls of the 28x28 grey default (200 generator steps).
Measured on a 2-core CPU, one thread (scripts/synthesis_isolation.py has the full table): the default reaches
a requested-class probability of 0.90 on the newest 640 pool inputs (argmax = requested class for all of
them; real test images: 0.66); the configuration notebook 03 recorded before the fix (g_steps 2, w_bn 0.3, the
authors' stabilizer) 0.24 at the same 200 generator steps; chance is 0.10. The threshold 0.6 sits between.
With the old settings as the grey-28 default the first test fails (pool probability 0.2-0.3).
"""
import dataclasses

import pytest
import torch

from conftest import require_seeded_data
from lib.fedrevive import SynthesisConfig
from lib.fedrevive.isolation import IsolationSetup, central_teacher, load_fashion, run_isolation

SETUP = IsolationSetup(ngf=16, train_samples=3000, teacher_steps=300, calls=20)
OLD = dict(g_steps=2, w_bn=0.3, lr_g=1e-2, lr_z=3e-3, stabilizer="authors")   # 03's recorded configuration
THRESHOLD = 0.6                # measured: new default 0.90 (argmax 1.00), old 0.24 (argmax 0.29)


@pytest.fixture(scope="module")
def teacher():
    require_seeded_data()
    torch.set_num_threads(1)
    train, test, mean, std = load_fashion(SETUP)
    fm, teachers = central_teacher(train, SETUP)
    return fm, teachers, test, mean, std


def test_default_synthesis_makes_samples_the_teacher_labels_as_requested(teacher):
    fm, teachers, test, mean, std = teacher
    cfg = SynthesisConfig.for_input(test.input_shape, augment=False)
    r = run_isolation(fm, teachers, test, mean, std, SETUP, cfg)
    assert r["real_prob"] > 0.5                                   # the teacher itself is informative
    assert r["pool_prob"] > THRESHOLD, r["pool_prob"]
    assert r["pool_argmax"] > 0.8, r["pool_argmax"]
    oh = r["oh_steps"]
    assert oh.shape == (SETUP.calls, cfg.g_steps)
    assert (oh[-5:, -1] < oh[-5:, 0]).all()                       # the class loss falls within each call


def test_the_old_configuration_fails_at_the_same_generator_steps(teacher):
    fm, teachers, test, mean, std = teacher
    new = SynthesisConfig.for_input(test.input_shape, augment=False)
    old = SynthesisConfig.for_input(test.input_shape, augment=False, **OLD)
    setup = dataclasses.replace(SETUP, calls=SETUP.calls * new.g_steps // old.g_steps)
    r = run_isolation(fm, teachers, test, mean, std, setup, old)
    assert r["pool_prob"] < THRESHOLD, r["pool_prob"]


def test_isolated_synthesis_is_deterministic_under_a_seed(teacher):
    fm, teachers, test, mean, std = teacher
    setup = dataclasses.replace(SETUP, calls=2)
    a, b = (run_isolation(fm, teachers, test, mean, std, setup) for _ in range(2))
    assert a["pool_prob"] == b["pool_prob"]
    assert torch.equal(a["synthesizer"].pool.xs[0], b["synthesizer"].pool.xs[0])
