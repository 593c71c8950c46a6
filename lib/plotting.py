"""Figures read the tidy records; every figure is saved under figures/."""
from __future__ import annotations

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from . import paths

sns.set_theme(style="whitegrid", context="notebook")


def savefig(fig, name: str) -> str:
    """Save ``fig`` as figures/<name>.png (150 dpi) and return the path relative to the repo."""
    out = paths.figures_dir() / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight", metadata={"Software": None})
    return paths.rel(out)


# One colour per method across every figure of a notebook (and of the workbook): known methods get a
# fixed slot of a 20-colour palette; any other name, and a known name whose slot another name already
# holds, gets the first colour no name of this process holds yet. So no two names share a colour until
# 20 are in use (ask for a figure's names together, known ones first: ``palette(names)``).
_KNOWN = ["fedavg", "fedprox", "scaffold", "fedavgm", "fednova", "fedadam", "fedyogi", "fedexp", "fedecado",
          "adaptive", "fedavg_sync", "fedasync", "fedbuff", "afl_dw", "ca2fl", "fedstale", "fedcompass",
          "fedasmu", "fedfix", "async_localsgd", "fedrevive", "fedasync_const"]
_COLORS: dict[str, tuple] = {}


def _order() -> list:
    pal = sns.color_palette("tab20", 20)
    return [pal[i] for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]   # saturated first


def palette(names) -> dict:
    """The colour of each name (see above): the same in every figure of the process, no two alike."""
    names = list(dict.fromkeys(str(n) for n in names))
    order = _order()
    for n in sorted(names, key=lambda n: n not in _KNOWN):          # known names claim their slots first
        if n in _COLORS:
            continue
        taken = set(_COLORS.values())
        want = order[_KNOWN.index(n) % len(order)] if n in _KNOWN else None
        if want is None or want in taken:
            free = [c for c in order if c not in taken]
            want = free[0] if free else order[len(_COLORS) % len(order)]
        _COLORS[n] = want
    return {n: _COLORS[n] for n in names}


def color(name: str):
    """The colour of a method (or any label): the same in every figure."""
    return palette([name])[str(name)]


def mean_band(ax, df, x: str, y: str, hue: str, order, seed_col: str = "seed", step: str = "round", **kw):
    """Per ``hue`` and ``step``: the mean over seeds of ``x`` and of ``y``, with the 95% t-interval of
    ``y``'s mean as a band (for an x that differs between seeds, e.g. gradient evaluations)."""
    from scipy import stats
    pal = palette(order)
    for m in order:
        d = df[df[hue] == m]
        if d.empty:
            continue
        a = d.groupby(step).agg(x=(x, "mean"), y=(y, "mean"), sd=(y, "std"), n=(seed_col, "nunique"))
        half = a.sd.fillna(0) * stats.t.ppf(0.975, (a.n - 1).clip(lower=1)) / np.sqrt(a.n)
        ax.plot(a.x, a.y, color=pal[m], label=m, **kw)
        ax.fill_between(a.x, a.y - half, a.y + half, color=pal[m], alpha=0.15, lw=0)
    return ax


def plot_curves(df, x: str = "round", y: str = "accuracy", hue: str = "method", col: str | None = None,
                style: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
                title: str | None = None, col_wrap: int | None = None, height: float = 3.2):
    """Mean curve of ``y`` against ``x``; the band is the 95% interval of the mean over seeds."""
    labels = {"round": "communication round", "accuracy": "test accuracy", "loss": "test loss",
              "sim_time": "simulated time (time units)", "bytes_up": "bytes uploaded", "wall_time": "wall time (s)"}
    g = sns.relplot(data=df, x=x, y=y, hue=hue, col=col, style=style or hue, kind="line", errorbar=("ci", 95),
                    palette=palette(df[hue].unique()), height=height, aspect=1.3, col_wrap=col_wrap,
                    facet_kws={"sharey": True}, n_boot=200, seed=0)
    g.set_axis_labels(xlabel or labels.get(x, x), ylabel or labels.get(y, y))
    if title:
        g.figure.suptitle(title, y=1.03)
    return g.figure


def plot_partition(part, ax=None, title: str | None = None, max_clients: int = 30):
    """Stacked bars: each client's samples by class (the heterogeneity plot)."""
    counts = part.counts()[:max_clients]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    bottom = np.zeros(len(counts))
    colors = sns.color_palette("tab10", part.num_classes)
    for c in range(part.num_classes):
        ax.bar(np.arange(len(counts)), counts[:, c], bottom=bottom, color=colors[c], width=0.85, label=str(c))
        bottom += counts[:, c]
    ax.set_xlabel("client")
    ax.set_ylabel("samples")
    ax.set_title(title or f"{part.scheme} {part.params}")
    return ax


def partition_legend(fig, classes, ncol: int = 10):
    colors = sns.color_palette("tab10", len(classes))
    handles = [matplotlib.patches.Patch(color=colors[i], label=c) for i, c in enumerate(classes)]
    fig.legend(handles=handles, loc="center left", ncol=max(1, len(classes) // ncol), bbox_to_anchor=(1.0, 0.5),
               title="class", frameon=False)
