"""FedRevive's synthesizer in isolation (issue 38): the one-change-at-a-time table.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/synthesis_isolation.py [--rows central,ensemble] [--quick]

Each row runs ``lib.fedrevive.isolation.run_isolation``: a teacher trained centrally on Fashion-MNIST (the
FEMNIST ConvNet with trackers, width 8, as notebook 03's CPU full profile) or 8 stale non-IID client teachers,
and the workbook's Synthesizer for a number of calls; it prints the teachers' mean probability of the requested
class on the newest 640 pool inputs (chance 0.10), on real test images, the class loss L_oh at the first and
last step of a call (mean of the last 10 calls), and the seconds the synthesis took on this machine.
"before" is the configuration notebook 03 recorded (the authors' FEMNIST settings, their stabilizer); each
following row changes one thing from it, the last rows are the new default.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from lib.fedrevive import SynthesisConfig  # noqa: E402
from lib.fedrevive.isolation import (IsolationSetup, central_teacher, client_teachers, load_fashion,  # noqa: E402
                                     run_isolation)

BEFORE = dict(g_steps=2, w_bn=0.3, lr_g=1e-2, lr_z=3e-3, stabilizer="authors")      # 03 as recorded
# (label, setup overrides, synthesis overrides relative to BEFORE); every row takes 300 generator steps
ROWS = [
    ("before: 03 as recorded (authors' FEMNIST config, their stabilizer)", {"calls": 150}, {}),
    ("stabilizer per step", {"calls": 150}, {"stabilizer": "per_step"}),
    ("g_steps 10", {"calls": 30}, {"g_steps": 10}),
    ("g_steps 10 + stabilizer per step", {"calls": 30}, {"g_steps": 10, "stabilizer": "per_step"}),
    ("w_bn 0.003 (the authors' CIFAR weight)", {"calls": 150}, {"w_bn": 0.003}),
    ("w_bn 0 (no tracker term)", {"calls": 150}, {"w_bn": 0.0}),
    ("lr_g 1e-3", {"calls": 150}, {"lr_g": 1e-3}),
    ("lr_z 0.1", {"calls": 150}, {"lr_z": 0.1}),
    ("no meta-update (Reptile off)", {"calls": 150}, {"_no_meta": True}),
    ("augment (crop + flip) before the teacher", {"calls": 150}, {"augment": True}),
    ("ConvNet width 64 (the authors')", {"calls": 150, "width": 64}, {}),
    ("after: new default (g_steps 10, w_bn 0.003, stabilizer per step)", {"calls": 30}, {"_after": True}),
    ("after, ConvNet width 64", {"calls": 30, "width": 64}, {"_after": True}),
    ("after + L_adv from call 0 (w_adv 0.1; student: a 50-step model)", {"calls": 30}, {"_after": True, "_adv": True}),
]


def run_row(label, su, co, data, teachers, kind, base):
    train, test, mean, std = data
    setup = dataclasses.replace(base, **su)
    key = (kind, setup.width)
    if key not in teachers:
        teachers[key] = (central_teacher if kind == "central" else client_teachers)(train, setup)
    fm, T = teachers[key]
    co = dict(co)
    no_meta = co.pop("_no_meta", False)
    student = None
    if co.pop("_adv", False):
        _, (weak,) = central_teacher(train, dataclasses.replace(setup, teacher_steps=50))
        student = weak.w
    if co.pop("_after", False):
        cfg = SynthesisConfig.for_input(test.input_shape, augment=False, adv_start=0 if student is not None else 100)
    else:
        cfg = SynthesisConfig.for_input(test.input_shape, **{"augment": False, **BEFORE, **co})
    if no_meta:                      # the persistent generator stays at its initialisation
        import lib.fedrevive.synthesis as S
        orig = S.Synthesizer.__init__

        def init(self, *a, **k):
            orig(self, *a, **k)
            self.meta_opt.param_groups[0]["lr"] = 0.0
        S.Synthesizer.__init__ = init
        try:
            r = run_isolation(fm, T, test, mean, std, setup, cfg)
        finally:
            S.Synthesizer.__init__ = orig
    else:
        r = run_isolation(fm, T, test, mean, std, setup, cfg, student=student)
    oh = r["oh_steps"][-10:].mean(0)
    return (f"| {kind} | {label} | {cfg.g_steps} x {setup.calls} | {r['pool_prob']:.3f} | {r['pool_argmax']:.2f} | "
            f"{r['real_prob']:.3f} | {oh[0]:.2f} -> {oh[-1]:.2f} | {r['seconds']:.0f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="central,ensemble", help="teacher settings: central, ensemble")
    ap.add_argument("--only", default=None, help="comma-separated row numbers (0-based) to run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    base = IsolationSetup()
    data = load_fashion(base)
    teachers = {}
    print("| teachers | change (one at a time from 'before') | g_steps x calls | pool p(y) | pool argmax = y "
          "| real p(y) | L_oh first -> last step | s |")
    print("|---|---|---|---|---|---|---|---|")
    only = None if args.only is None else {int(i) for i in args.only.split(",")}
    for kind in args.rows.split(","):
        for i, (label, su, co) in enumerate(ROWS):
            if only is not None and i not in only:
                continue
            if kind == "ensemble" and i not in (0, 3, len(ROWS) - 3):
                continue                          # the ensemble: before, the stabilizer fix, after
            print(run_row(label, su, co, data, teachers, kind, base), flush=True)


if __name__ == "__main__":
    main()
