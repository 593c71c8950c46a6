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


def time_to_target(df, target: float, x: str = "round", y: str = "accuracy", by=("method",),
                   interpolate: bool = True):
    """The ``x`` at which ``y`` first reaches ``target``, per group (NaN if never: a censored run).

    With ``interpolate`` (the default) the crossing is interpolated linearly between the two
    evaluations around it, so the answer does not snap to the evaluation grid.
    """
    import numpy as np
    import pandas as pd
    rows = []
    for key, g in df.groupby(list(by)):
        g = g.sort_values(x)
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        hit = np.flatnonzero(ys >= target)
        if not len(hit):
            t = np.nan
        elif hit[0] == 0 or not interpolate:
            t = xs[hit[0]]
        else:
            i = hit[0]
            t = xs[i - 1] + (target - ys[i - 1]) / (ys[i] - ys[i - 1]) * (xs[i] - xs[i - 1])
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), f"{x}_to_{target:g}": float(t)})
    return pd.DataFrame(rows)


def value_at(df, at: float, x: str, y: str = "accuracy", by=("method", "seed")):
    """``y`` interpolated linearly at ``x = at`` per group (NaN where a group's ``x`` never reaches ``at``)."""
    import numpy as np
    import pandas as pd
    out = {}
    for key, g in df.groupby(list(by)):
        g = g.sort_values(x)
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        out[key] = float(np.interp(at, xs, ys)) if xs.min() <= at <= xs.max() else np.nan
    keys = [k if isinstance(k, tuple) else (k,) for k in out]
    idx = pd.MultiIndex.from_tuples(keys, names=list(by)) if len(by) > 1 else pd.Index([k[0] for k in keys], name=by[0])
    return pd.Series(list(out.values()), index=idx, name=y)


def final_per_seed(df, y: str = "accuracy", last: int = 3, by=("method",), order_by: str | None = None):
    """Mean of the last ``last`` evaluations per group and seed (a Series indexed by ``by`` + seed)."""
    by = list(by)
    order_by = order_by or ("round" if "round" in df else "sim_time")
    keys = by + (["seed"] if "seed" in df and "seed" not in by else [])
    return df.sort_values(order_by, kind="stable").groupby(keys)[y].apply(lambda s: s.tail(last).mean())


def final_metric(df, y: str = "accuracy", last: int = 3, by=("method",), order_by: str | None = None):
    """Mean over seeds of :func:`final_per_seed`: a less noisy 'final accuracy'.

    Evaluations are ordered by ``order_by`` (default: ``round`` if present, else ``sim_time``).
    """
    by = list(by)
    return final_per_seed(df, y, last, by, order_by).groupby(level=list(range(len(by)))).mean()


def seed_values(series, **where):
    """The per-seed values of a Series indexed by (..., seed) at the given index levels, ordered by seed.

    ``seed_values(fin, method="fedavg", partition="Dir(0.1)")`` -> numpy array, one entry per seed;
    two arms picked this way share the seed order, so they can be compared paired.
    """
    import numpy as np
    s = series
    for level, value in where.items():
        s = s.xs(value, level=level)
    if s.index.nlevels != 1 or s.index.name != "seed":
        raise ValueError(f"selecting {where} leaves index levels {list(s.index.names)}; name every level but 'seed'")
    return s.sort_index().to_numpy(dtype=float) if len(s) else np.array([])


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


def outcomes(df, target: float, x: str = "sim_time", last: int = 3, by=("method",)):
    """Per group and seed: time to ``target`` (interpolated; NaN = never reached, a censored run) and
    final accuracy (mean of the last ``last`` evaluations). Index: ``by`` + seed."""
    import pandas as pd
    keys = list(by) + ["seed"]
    t = time_to_target(df, target, x=x, by=keys).set_index(keys).iloc[:, 0].rename("time_to_target")
    f = final_per_seed(df, last=last, by=by).rename("final_accuracy")
    return pd.concat([t, f], axis=1)


def outcome_summary(per_seed, horizon: float, by=("method",)):
    """Means over seeds of :func:`outcomes`: time to target with censored runs counted at ``horizon``
    (and how many were censored), final accuracy and its standard deviation over seeds."""
    import pandas as pd
    g = per_seed.groupby(level=list(by))
    return pd.DataFrame({"time_to_target": g.time_to_target.apply(lambda s: s.fillna(horizon).mean()),
                         "censored": g.time_to_target.apply(lambda s: int(s.isna().sum())),
                         "final_accuracy": g.final_accuracy.mean(), "final_sd": g.final_accuracy.std()})


def config_key(*parts) -> str:
    """A short hash of everything that changes a run (configuration, hyperparameters, seed): a cache key
    that never lets a run with other sizes reuse a stored result."""
    import hashlib

    def canon(x):
        if isinstance(x, dict):
            return tuple(sorted((str(k), canon(v)) for k, v in x.items()))
        if isinstance(x, (list, tuple)):
            return tuple(canon(v) for v in x)
        return repr(x)
    return hashlib.sha256(repr(canon(parts)).encode()).hexdigest()[:12]


def _cached_call(args):
    name, key, profile, fn, job, enabled = args
    return cached(name, key, profile, lambda: fn(job), enabled=enabled)


def cached_map(fn, jobs, name: str, profile: str, keys, enabled: bool = True, desc: str | None = None) -> dict:
    """``{key: fn(job)}`` over CPU processes, each result stored under results/<profile>/cache/<name>/ when
    ``enabled``: an interrupted run re-executed recomputes only the jobs whose results are missing.
    ``fn`` must be picklable by reference (a module-level function, or one defined in the notebook)."""
    from .utils import parallel_map
    jobs, keys = list(jobs), list(keys)
    if len(jobs) != len(keys) or len(set(keys)) != len(keys):
        raise ValueError("cached_map needs one distinct key per job")
    if enabled:
        print(f"{len(jobs)} runs, {sum(cache_exists(name, k, profile) for k in keys)} from the cache")
    out = parallel_map(_cached_call, [(name, k, profile, fn, j, enabled) for k, j in zip(keys, jobs)], desc=desc)
    return dict(zip(keys, out))
