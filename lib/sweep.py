"""Hyperparameter sweeps that return tidy records.

    configs = grid(method=["fedavg"], lr=[0.01, 0.1]) + grid(method=["fedadam"], server_lr=[1e-3, 1e-2])
    df = sweep(run_one, configs, seeds=[0, 1])       # one row per (config, seed, evaluated round)
    table = summarize(df, knobs=["lr", "server_lr"])  # final accuracy per config (mean over seeds)
    tuned(table)                                      # best config per method, and the spread of the grid

``run_one(config, seed)`` is any function that runs one configuration (usually
:func:`lib.fl.run_federated`) and returns an :class:`~lib.fl.FLRun` or a list of record dicts.
A run that diverges (``FloatingPointError``) is kept as a row with ``diverged = True``
and NaN accuracy rather than silently dropped: a method that needs tuning to not blow up
is part of the result. Runs go through :func:`lib.utils.parallel_map` (identical results
for any number of workers).
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def grid(**axes) -> list[dict]:
    """The Cartesian product of the given axes, as a list of config dicts."""
    for k, v in axes.items():
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise ValueError(f"grid axis {k!r} must be a list of values, got {v!r}")
        if len(list(v)) == 0:
            raise ValueError(f"grid axis {k!r} is empty")
    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(list(axes[k]) for k in keys))]


def _run(job):
    fn, config, seed = job
    try:
        out = fn(dict(config), seed)
    except FloatingPointError as e:
        return [{"seed": seed, "round": 0, "accuracy": math.nan, "diverged": True, "error": str(e)}]
    rows = out.records if hasattr(out, "records") else list(out)
    return [{**r, "seed": seed, "diverged": False} for r in rows]


def sweep(fn, configs: list[dict], seeds=(0,), workers: int | None = None, desc: str = "sweep"):
    """Run ``fn(config, seed)`` for every config and seed; a tidy DataFrame with the config's keys as columns."""
    import pandas as pd

    from .utils import parallel_map
    if not configs:
        raise ValueError("sweep needs at least one config")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("sweep needs at least one seed")
    jobs = [(fn, c, s) for c in configs for s in seeds]
    outs = parallel_map(_run, jobs, workers=workers, desc=desc)
    rows = []
    for (_, config, _), recs in zip(jobs, outs):
        for r in recs:
            rows.append({**r, **{f"{k}": v for k, v in config.items()}, "config": _label(config)})
    return pd.DataFrame(rows)


def _label(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def summarize(df, knobs: list[str], y: str = "accuracy", by: str = "method", last: int = 1):
    """Final ``y`` of every (method, config): mean and spread over seeds; diverged runs count as NaN.

    ``last`` > 1 averages each run's last ``last`` evaluated rounds first (less round-to-round noise).
    """
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    tail = df.sort_values("round").groupby(["config", "seed"], as_index=False).tail(last)
    last = tail.groupby(["config", "seed"], as_index=False).agg(
        **{y: (y, "mean"), "diverged": ("diverged", "any"), by: (by, "first"),
           **{k: (k, "first") for k in knobs if k in df.columns}})
    cols = [by] + [k for k in knobs if k in df.columns]
    g = last.groupby([by, "config"], dropna=False)
    out = g.agg(**{f"final_{y}": (y, "mean"), f"{y}_std": (y, "std"), "diverged": ("diverged", "any")}).reset_index()
    keys = last.drop_duplicates("config").set_index("config")[[c for c in cols if c != by]]
    return out.join(keys, on="config")


def tuned(table, y: str = "final_accuracy", by: str = "method"):
    """Per method: the best config, its value, and the worst / median over the grid (the cost of not tuning)."""
    import pandas as pd
    rows = []
    for m, t in table.groupby(by, sort=False):
        vals = t[y].to_numpy(dtype=float)
        best = t.loc[t[y].fillna(-np.inf).idxmax()]
        rows.append({by: m, "best_config": best["config"], "best": best[y],
                     "median_over_grid": float(np.nanmedian(vals)) if np.isfinite(vals).any() else math.nan,
                     "worst": float(np.nanmin(vals)) if np.isfinite(vals).any() else math.nan,
                     "grid_size": len(t), "diverged": int(t["diverged"].sum())})
    return pd.DataFrame(rows)


def final_per_seed(df, y: str = "accuracy", last: int = 1):
    """Final ``y`` of every run (mean of its last ``last`` evaluated rounds), indexed by (config, seed).

    Diverged runs are NaN. Two configurations picked from it share the seed order, so they compare paired.
    """
    from .records import final_per_seed as per_seed
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    return per_seed(df, y=y, last=last, by=("config",), order_by="round")


def run_fl_config(config: dict, seed: int, setting: dict, model: str, rounds: int, clients_per_round: int,
                  batch_size: int, device=None, model_kwargs: dict | None = None) -> list[dict]:
    """One sweep configuration as one synchronous run, its records with the strategy's adapted quantities.

    ``config``: ``method`` (a strategy name), ``arm`` (its label), ``lr`` (client learning rate), optional
    ``dataset`` (ignored here) and the strategy's hyperparameters (None/NaN entries are dropped: a tidy
    sweep table fills keys other configs use). ``setting``: ``clients``, ``test``, ``steps`` (local steps
    per client) and ``train`` (for the input shape); optional ``validation``, a held-out split evaluated
    beside the test set (``val_accuracy``). Each client takes exactly its number of steps.
    Records gain ``adapt_<k>`` columns from ``state["history"]`` (what adaptive methods adapted per round).
    """
    from . import fl, models
    from .client import LocalConfig
    config = dict(config)
    config.pop("dataset", None)
    config.pop("method_family", None)
    arm, lr = config.pop("arm"), config.pop("lr")
    kw = {k: v for k, v in config.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    name = kw.pop("method")
    net = models.build_model(model, setting["train"].input_shape, setting["train"].num_classes, seed=seed,
                             **(model_kwargs or {}))
    r = fl.run_federated(net, name, setting["clients"], setting["test"], rounds=rounds,
                         clients_per_round=clients_per_round, local=LocalConfig(lr=lr, batch_size=batch_size, steps=1),
                         steps_per_client=setting["steps"], seed=seed, label=arm, strategy_kwargs=kw,
                         eval_every=1 if rounds <= 50 else 5, device=device, validation=setting.get("validation"))
    hist = r.state.get("history", [])
    return [{**rec, **{f"adapt_{k}": v for k, v in (hist[rec["round"] - 1].items() if 0 < rec["round"] <= len(hist) else [])}}
            for rec in r.records]


def select_on_validation(df, arm: str = "arm", label: str = "method", y: str = "val_accuracy", last: int = 3,
                         order_by: str = "round"):
    """Per ``arm`` (a method), the configuration (``label``) whose final ``y`` on the validation split,
    averaged over seeds, is highest: hyperparameters chosen without looking at the test set.

    ``df``: tidy records with ``arm``, ``label``, ``seed`` and ``y`` (``run_federated(validation=...)``).
    Final = the mean of each run's last ``last`` evaluations. Returns a frame (arm, label, the validation
    mean, ``selected``), one row per configuration; ties go to the first configuration in ``df``.
    """
    import pandas as pd
    missing = [c for c in (arm, label, "seed", y, order_by) if c not in df]
    if missing:
        raise ValueError(f"select_on_validation needs columns {missing} in the records (run with validation=...)")
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    order = list(dict.fromkeys(df[label]))
    seeds = df.groupby([arm, label], sort=False).seed.agg(lambda v: tuple(sorted(set(v))))
    for a, s in seeds.groupby(level=0, sort=False):
        if s.nunique() > 1:
            raise ValueError(f"select_on_validation: the configurations of {a!r} ran on different seeds "
                             f"({dict(zip(s.index.get_level_values(1), s))}); compare them on the same seeds")
    # the last `last` evaluations that have a value (a diverged run's NaNs count as its final value: NaN)
    per_seed = (df.dropna(subset=[y]).sort_values(order_by, kind="stable").groupby([arm, label, "seed"], sort=False)[y]
                .apply(lambda v: v.tail(last).mean()))
    per_seed = per_seed.reindex(df.groupby([arm, label, "seed"], sort=False).size().index)
    table = (per_seed.groupby(level=[0, 1], sort=False).mean().rename(f"final_{y}").reset_index())
    table["_order"] = table[label].map(order.index)
    table = table.sort_values([arm, "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)
    valid = table.dropna(subset=[f"final_{y}"])                               # a config with no value is never chosen
    chosen = valid.groupby(arm, sort=False)[f"final_{y}"].idxmax()          # the first of equal maxima
    table["selected"] = table.index.isin(chosen.to_numpy())
    return pd.DataFrame(table)

