"""Profiles: one notebook, two scales, chosen by a papermill parameter.

A notebook's ``parameters`` cell sets ``profile`` and leaves every knob at
``None``; :func:`configure` fills each ``None`` from the profile's defaults,
so ``papermill -p rounds 50`` overrides one knob and keeps the rest.

``quick``: a 2-core CPU, a couple of minutes, still shows the paper's effect.
``full``:  the paper's scale, one GPU. ``auto``: full if CUDA is visible, else quick.
"""
from __future__ import annotations

from types import SimpleNamespace

PROFILES = ("quick", "full")


def resolve_profile(profile: str = "auto", verbose: bool = True) -> str:
    if profile == "auto":
        import torch
        chosen = "full" if torch.cuda.is_available() else "quick"
        if verbose:
            print(f"profile=auto -> {chosen} ({'a CUDA GPU is visible' if chosen == 'full' else 'no CUDA GPU'})")
        return chosen
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES} or 'auto'")
    return profile


def configure(profile: str, defaults: dict[str, dict], **given) -> SimpleNamespace:
    """Merge a profile's defaults with the parameters given (``None`` = use the default)."""
    profile = resolve_profile(profile, verbose=False)
    missing = [p for p in PROFILES if p not in defaults]
    if missing:
        raise ValueError(f"defaults lack profile(s) {missing}")
    base = dict(defaults[profile])
    unknown = set(given) - set(base)
    if unknown:
        raise ValueError(f"parameters {sorted(unknown)} have no default in profile {profile!r}; "
                         f"known: {sorted(base)}")
    base.update({k: v for k, v in given.items() if v is not None})
    return SimpleNamespace(profile=profile, **base)


def device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"
