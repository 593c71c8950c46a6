"""Profiles: one notebook, two scales, chosen by a papermill parameter.

A notebook's ``parameters`` cell sets ``profile`` and leaves every knob at
``None``; :func:`configure` fills each ``None`` from the profile's defaults,
so ``papermill -p rounds 50`` overrides one knob and keeps the rest.

``quick``: a 2-core CPU, a couple of minutes, still shows the paper's effect.
``full``:  the paper's scale, one GPU. ``auto``: full if CUDA is visible, else quick.
``smoke``: exactly the full profile's code path (models, arms, ablations, device handling,
           caching) at tiny sizes, under a minute on 2 CPU cores; its numbers mean nothing.
           ``make test`` runs it for every notebook so that a full run never dies of a bug.
"""
from __future__ import annotations

from types import SimpleNamespace

PROFILES = ("quick", "full", "smoke")


def resolve_profile(profile: str = "auto", verbose: bool = True) -> str:
    if profile == "auto":
        import torch
        chosen = "full" if torch.cuda.is_available() else "quick"
        if verbose:
            print(f"profile=auto -> {chosen} ({'a CUDA GPU is visible' if chosen == 'full' else 'no CUDA GPU'})")
        return chosen
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: the profiles are {', '.join(PROFILES)} and auto")
    return profile


def configure(profile: str, defaults: dict[str, dict], **given) -> SimpleNamespace:
    """Merge a profile's defaults with the parameters given (``None`` = use the default).

    ``defaults["smoke"]`` lists only what the smoke profile shrinks; everything else is the full
    profile's, so a smoke run takes the full run's code path.
    """
    profile = resolve_profile(profile, verbose=False)
    missing = [p for p in PROFILES if p not in defaults]
    if missing:
        raise ValueError(f"defaults lack profile(s) {missing}")
    extra = set(defaults["smoke"]) - set(defaults["full"])
    if extra:
        raise ValueError(f"the smoke profile may only shrink the full profile's knobs; unknown: {sorted(extra)}")
    base = dict(defaults["full"], **defaults["smoke"]) if profile == "smoke" else dict(defaults[profile])
    unknown = set(given) - set(base)
    if unknown:
        raise ValueError(f"parameters {sorted(unknown)} have no default in profile {profile!r}; "
                         f"known: {sorted(base)}")
    base.update({k: v for k, v in given.items() if v is not None})
    from .executors import check
    check()     # an executor that cannot run here (WORKBOOK_EXECUTOR=slurm without sbatch) stops the notebook now
    return SimpleNamespace(profile=profile, **base)


def device() -> str:
    """The device runs use (``utils.default_device``: WORKBOOK_DEVICE, else the GPU when present)."""
    from .utils import default_device
    return str(default_device())
