"""Regret curves: tidy frames and the growth fits the theory notebooks (08, 09) compare with theorems.

A theorem of the form Regret(T) = O(T^a) predicts the log-log slope a; one of the form
O(log T / beta) predicts that Regret grows linearly in log T with a coefficient proportional to 1/beta.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def to_frame(t, regret, labels: dict, axes: tuple[str, ...], values: dict | None = None) -> pd.DataFrame:
    """regret of shape (*axes sizes, len(t)) -> long frame with one column per axis plus t and regret.

    ``values`` maps an axis name to the values along it (default: 0..n-1); ``labels`` are constant columns.
    """
    regret = np.asarray(regret)
    if regret.ndim != len(axes) + 1 or regret.shape[-1] != len(t):
        raise ValueError(f"regret has shape {regret.shape}; expected {len(axes)} axes {axes} then len(t)={len(t)}")
    values = values or {}
    grids = np.meshgrid(*[np.asarray(values.get(a, np.arange(n))) for a, n in zip(axes, regret.shape[:-1])],
                        np.asarray(t), indexing="ij")
    df = pd.DataFrame({a: g.ravel() for a, g in zip(axes, grids[:-1])})
    df["t"], df["regret"] = grids[-1].ravel(), regret.ravel()
    for k, v in labels.items():
        df[k] = v
    return df


def loglog_slope(t, R, t_from: float = 0.0) -> float:
    """Least-squares slope of log R against log t over t >= t_from (R > 0 only)."""
    t, R = np.asarray(t, float), np.asarray(R, float)
    keep = (t >= t_from) & (R > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(t[keep]), np.log(R[keep]), 1)[0])


def log_growth(t, R, t_from: float = 0.0) -> float:
    """Least-squares slope of R against ln t over t >= t_from: the coefficient c of R ~ c log T."""
    t, R = np.asarray(t, float), np.asarray(R, float)
    keep = t >= t_from
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(t[keep]), R[keep], 1)[0])


def growth_table(df: pd.DataFrame, by: list[str], t_from: float, t_col: str = "t", y_col: str = "regret") -> pd.DataFrame:
    """Per group: final regret, log-log slope and log-T coefficient of the mean curve over t >= t_from."""
    rows = []
    for key, g in df.groupby(by, sort=True):
        m = g.groupby(t_col)[y_col].mean()
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "final_regret": m.iloc[-1],
                     "loglog_slope": loglog_slope(m.index, m.values, t_from),
                     "log_T_coefficient": log_growth(m.index, m.values, t_from)})
    return pd.DataFrame(rows)
