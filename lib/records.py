"""Per-run metrics on disk: tidy CSV under results/<profile>/."""
from __future__ import annotations

from . import paths


def save_records(df, name: str, profile: str) -> str:
    """Write a DataFrame as results/<profile>/<name>.csv; return the repo-relative path."""
    out = paths.results_dir(profile) / f"{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return paths.rel(out)


def load_records(name: str, profile: str):
    import pandas as pd
    return pd.read_csv(paths.results_dir(profile) / f"{name}.csv")


def time_to_target(df, target: float, x: str = "round", y: str = "accuracy", by=("method",)):
    """First ``x`` at which ``y`` reaches ``target`` per group (NaN if never)."""
    import numpy as np
    import pandas as pd
    rows = []
    for key, g in df.groupby(list(by)):
        g = g.sort_values(x)
        hit = g[g[y] >= target]
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     f"{x}_to_{target:g}": float(hit[x].iloc[0]) if len(hit) else np.nan})
    return pd.DataFrame(rows)


def final_metric(df, y: str = "accuracy", last: int = 3, by=("method",), order_by: str | None = None):
    """Mean of the last ``last`` evaluations per group: a less noisy 'final accuracy'.

    Evaluations are ordered by ``order_by`` (default: ``round`` if present, else ``sim_time``).
    """
    by = list(by)
    order_by = order_by or ("round" if "round" in df else "sim_time")
    return (df.sort_values(order_by, kind="stable").groupby(by + (["seed"] if "seed" in df and "seed" not in by else []))[y]
            .apply(lambda s: s.tail(last).mean()).groupby(level=list(range(len(by)))).mean())


def cached(name: str, key: str, profile: str, fn, enabled: bool = True):
    """``fn()``, or its earlier result stored under results/<profile>/cache/<name>/<key>.pkl.

    Makes a long batch of runs resumable at run granularity: an interrupted full-profile notebook
    re-executed with the cache on recomputes only the runs that never finished. Keys must name
    everything that changes a run (method, hyperparameters, seed). ``enabled=False`` always
    recomputes (the quick profile, so recorded outputs never come from a stale cache).
    """
    import pickle
    path = paths.results_dir(profile) / "cache" / name / f"{key}.pkl"
    if enabled and path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    value = fn()
    if enabled:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(value, f)
        tmp.replace(path)
    return value


def cache_exists(name: str, key: str, profile: str) -> bool:
    return (paths.results_dir(profile) / "cache" / name / f"{key}.pkl").exists()
