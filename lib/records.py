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


def on_grid(df, grid, x: str, y: str = "accuracy", by=("method", "seed")):
    """Every group's curve (one run: ``by`` ends with the seed) interpolated linearly at the common ``grid`` of
    ``x`` values, as tidy rows (``by``, ``x``, ``y``); a grid point outside a run's range of ``x`` is left out.
    Runs whose ``x`` differ (uploads, simulated time) can then be averaged point by point with a band over seeds."""
    import numpy as np
    import pandas as pd
    grid = np.asarray(grid, float)
    rows = []
    for key, g in df.groupby(list(by)):
        g = g.sort_values(x)
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        keep = (grid >= xs.min()) & (grid <= xs.max())
        key = key if isinstance(key, tuple) else (key,)
        rows += [{**dict(zip(by, key)), x: float(gx), y: float(v)}
                 for gx, v in zip(grid[keep], np.interp(grid[keep], xs, ys))]
    return pd.DataFrame(rows, columns=[*by, x, y])


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


def cache_path(name: str, key: str, profile: str, code: str | None = None):
    """Where a run's result is stored: ``results/<profile>/cache/<name>/code-<code>/<key>.pkl``.

    ``code`` defaults to :func:`lib.executors.code_fingerprint` (a hash of lib's sources), so a run stored by other
    code (or by a version of the workbook that did not key on the code: files directly under ``<name>/``) is
    simply not found: a resumed profile never reuses a run that lib has changed under.
    """
    from .executors import code_fingerprint
    return paths.results_dir(profile) / "cache" / name / f"code-{code or code_fingerprint()}" / f"{key}.pkl"


def cached(name: str, key: str, profile: str, fn, enabled: bool = True):
    """``fn()``, or its earlier result stored under :func:`cache_path` (results/<profile>/cache/<name>/...).

    Makes a long batch of runs resumable at run granularity: an interrupted full-profile notebook
    re-executed with the cache on recomputes only the runs that never finished. Keys must name
    everything that changes a run (method, hyperparameters, seed); the path adds lib's code fingerprint.
    ``enabled=False`` always recomputes (the quick profile, so recorded outputs never come from a stale cache).
    """
    from .executors import load, store
    path = cache_path(name, key, profile)
    if enabled and path.exists():
        return load(path)
    value = fn()
    if enabled:
        store(path, value)
    return value


def cache_exists(name: str, key: str, profile: str) -> bool:
    return cache_path(name, key, profile).exists()


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


def cached_map(fn, jobs, name: str, profile: str, keys, enabled: bool = True, desc: str | None = None,
               executor: str | None = None) -> dict:
    """``{key: fn(job)}`` through the chosen executor (:mod:`lib.executors`: ``local`` processes, ``ray`` or
    ``slurm``); with ``enabled`` each run is stored under results/<profile>/cache/<name>/ (:func:`cache_path`).

    With ``enabled``, only the runs missing from the cache are computed, and each is stored by the worker that
    computed it (on storage the workers share); the results are then collected by key. One line says how many
    runs came from the cache, of which code (:func:`lib.executors.code_fingerprint`), and how many are computed.
    A run that raises or whose worker dies is retried (``WORKBOOK_RETRIES``, default 2); if some still fail,
    :class:`lib.executors.RunsFailed` names each with its error, raised after every other run is stored, so
    running the cell again computes only the failed ones. ``executor`` overrides ``WORKBOOK_EXECUTOR``.
    ``fn`` may be a function defined in the notebook.
    """
    from .executors import get_executor, load, raise_failures
    jobs, keys = list(jobs), list(keys)
    if len(jobs) != len(keys) or len(set(keys)) != len(keys):
        raise ValueError("cached_map needs one distinct key per job")
    ex = get_executor(executor)
    if not enabled:
        return dict(zip(keys, ex.map(fn, jobs, desc=desc, labels=keys)))
    from .executors import code_fingerprint
    code = code_fingerprint()
    where = [cache_path(name, k, profile, code) for k in keys]
    todo = [i for i, p in enumerate(where) if not p.exists()]
    folder = where[0].parent if where else None
    other = sum(1 for i in todo if (folder.parent / f"{keys[i]}.pkl").exists()
                or next(folder.parent.glob(f"code-*/{keys[i]}.pkl"), None))
    print(f"{len(jobs)} runs: {len(jobs) - len(todo)} from the cache of lib code {code}, {len(todo)} to compute "
          f"({ex.describe()})" + (f"; {other} stored by other code not reused" if other else ""))
    if todo:
        outs = ex.run(fn, [jobs[i] for i in todo], targets=[where[i] for i in todo], desc=desc)
        shown = paths.rel(folder) if folder.resolve().is_relative_to(paths.REPO_ROOT) else str(folder)
        raise_failures(outs, [keys[i] for i in todo], ex, stored=shown, total=len(jobs))
    return {k: load(p) for k, p in zip(keys, where)}
