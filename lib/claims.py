"""Claims tables and checked measurements: each paper's claim beside what the notebook measured.

A notebook builds one :class:`Claims` with its configuration, records the numbers it reports with
:meth:`Claims.measure`, adds one row per claim with :meth:`Claims.add` (the verdict comes from an
:class:`lib.evidence.Evidence`, never by hand), and ends with :meth:`Claims.show`, which writes
results/<profile>/<notebook>.claims.json (gathered by ``make report`` through the claims of record
under ``claims/``).

**Checked outputs** (how ``make test`` compares a notebook with its recorded run). Measured numbers
differ in their last digits between processors (vector kernels, summation order, amplified by
hundreds of SGD steps), so they are not compared as text. Instead every measured value is stored
with a tolerance in ``notebooks/<notebook>.expected.json`` when the notebook is recorded
(``WORKBOOK_CHECKS=record``, set by ``make record``) and compared when it runs under test
(``WORKBOOK_CHECKS=check``, set by ``make test``); a value outside its tolerance fails the cell.
The tolerance of a mean over n seeds is ``TOL_SE`` standard errors of that mean (the seed spread
the notebook itself measures): a change of processor perturbs every run like a new rounding of the
same seed, far less than a new seed, while a real regression moves the mean by more than the
noise the notebook already reports. Exact quantities (counts, shapes) are checked exactly.
Verdicts are compared with a stability margin (``evidence.STABILITY_SE``): the expected file keeps
each verdict, how close (in standard errors) its interval ended to a boundary of the rule, and the
machine that recorded it. On that machine a changed verdict fails; on another processor it fails
unless the recorded interval end lay within the margin of the boundary it crossed (a value inside its
tolerance can then cross the boundary: seen across CPU kernels), which is reported, not hidden.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from . import paths
from .evidence import STABILITY_SE, VERDICTS, Evidence
TOL_SE = 3.0          # tolerance of a checked mean, in standard errors of the seed mean
TOL_FLOOR = 1e-9      # relative floor, so that a value identical over seeds is compared to rounding only


class CheckError(AssertionError):
    """A measured value left its recorded tolerance: a regression, or outputs recorded with other code."""


@dataclass
class Claim:
    paper: str
    claim: str
    paper_value: str
    our_value: str
    verdict: str
    note: str = ""
    source: str = "paper"          # "paper": the paper's claim; "ours": our own control experiment
    evidence: dict = field(default_factory=dict)


def machine() -> str:
    """The processor and numeric stack a recording was made on (a verdict may not change on the same one)."""
    import platform

    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}; {platform.machine()}; torch {torch.__version__}; {torch.get_num_threads()} threads"


def checks_mode() -> str:
    mode = os.environ.get("WORKBOOK_CHECKS", "off").strip().lower() or "off"
    if mode not in ("off", "record", "check"):
        raise ValueError(f"WORKBOOK_CHECKS must be 'off', 'record' or 'check', got {mode!r}")
    return mode


def expected_path(notebook: str):
    return paths.expected_dir() / f"{notebook}.expected.json"


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


class Claims:
    def __init__(self, notebook: str, profile: str, config: dict | None = None):
        self.notebook, self.profile, self.rows = notebook, profile, []
        self.config = _jsonable(dict(config or {}))
        self.mode = checks_mode()
        self._values: dict[str, dict] = {}
        self._verdicts: dict[str, dict] = {}
        self._expected = None
        if self.mode == "check":
            path = expected_path(notebook)
            if not path.exists():
                raise CheckError(f"{paths.rel(path)} is missing: record the notebook first (make record NB=...)")
            exp = json.loads(path.read_text())
            if exp.get("config") != self.config:
                changed = sorted(k for k in set(exp.get("config", {})) | set(self.config)
                                 if exp.get("config", {}).get(k) != self.config.get(k))
                raise CheckError(f"{notebook}: the configuration differs from the recorded run in {changed}; "
                                 f"re-record the notebook (make record NB=...) or run it without WORKBOOK_CHECKS=check")
            self._expected = exp

    # ---- checked measurements -------------------------------------------------------------------
    def measure(self, name: str, values, tol: float | None = None, exact: bool = False) -> float:
        """Record a reported number (the mean of per-seed ``values``) and, under test, compare it.

        With several values the tolerance is ``TOL_SE`` standard errors of their mean; a single value
        needs ``tol`` (or ``exact=True`` for counts). Returns the mean.
        """
        v = np.asarray(values, float).ravel()
        if v.size == 0 or not np.all(np.isfinite(v)):
            raise ValueError(f"measure({name!r}) needs finite values, got {v.tolist()}")
        mean = float(v.mean())
        sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
        if exact:
            tol = 0.0
        elif tol is None:
            if v.size < 2:
                if self.mode != "off":   # a recorded value needs a tolerance; a one-seed smoke run has none
                    raise ValueError(f"measure({name!r}): one value needs an explicit tol (or exact=True)")
                tol = math.inf
            else:
                tol = TOL_SE * sd / math.sqrt(v.size)
        tol = 0.0 if exact else max(float(tol), TOL_FLOOR * abs(mean))
        self._values[name] = {"value": mean, "tol": tol, "n": int(v.size), "sd": sd}
        if self._expected is not None:
            rec = self._expected["values"].get(name)
            if rec is None:
                raise CheckError(f"check {name!r}: not in the recorded run; re-record the notebook")
            if abs(mean - rec["value"]) > rec["tol"]:
                raise CheckError(f"check {name!r}: measured {mean:.6g}, recorded {rec['value']:.6g} "
                                 f"± {rec['tol']:.3g} (n={rec['n']}, seed sd {rec['sd']:.3g}; tolerance "
                                 f"{TOL_SE:g} standard errors of the mean): a regression, or outputs recorded "
                                 f"with other code")
        return mean

    def _record_verdict(self, claim: str, ev: Evidence):
        """Keep the verdict beside the checked values; under test, compare it (see the module docstring)."""
        dist = ev.distance_se()
        self._verdicts[claim] = {"verdict": ev.verdict, "distance_se": None if dist is None else round(dist, 3)}
        if self._expected is None:
            return
        rec = self._expected.get("verdicts", {}).get(claim)
        if rec is None:
            raise CheckError(f"claim {claim!r}: not in the recorded run; re-record the notebook")
        rec = rec if isinstance(rec, dict) else {"verdict": rec, "distance_se": None}
        if rec["verdict"] == ev.verdict:
            return
        same_machine = self._expected.get("machine") == machine()
        near = rec.get("distance_se") is not None and rec["distance_se"] < STABILITY_SE
        if same_machine or not near:
            raise CheckError(f"claim {claim!r}: verdict {ev.verdict!r}, recorded {rec['verdict']!r} "
                             f"({'on this machine' if same_machine else 'its interval end lay ' + str(rec.get('distance_se')) + ' standard errors from a boundary, outside the stability margin ' + str(STABILITY_SE)}): "
                             f"a regression, or outputs recorded with other code")
        print(f"note: claim {claim!r} reads {ev.verdict!r} on this processor, recorded {rec['verdict']!r} on "
              f"{self._expected.get('machine')}: its interval end lay {rec['distance_se']} standard errors from a "
              f"boundary of the rule (within the stability margin of {STABILITY_SE})")

    # ---- rows -----------------------------------------------------------------------------------
    def add(self, paper: str, claim: str, paper_value, evidence: Evidence, note: str = "",
            source: str = "paper", what: str = "", checked: bool = True) -> Claim:
        """One claims row; the verdict is the evidence's. ``what`` prefixes the measured text
        (e.g. "accuracy gained vs FedAvg:"); ``source="ours"`` marks our own control experiment.
        ``checked=False`` for a row measured in wall time: it depends on the machine and its load,
        so its values are reported but never compared under test."""
        if not isinstance(evidence, Evidence):
            raise TypeError("a claims row needs an Evidence from lib.evidence (no verdicts by hand)")
        if source not in ("paper", "ours"):
            raise ValueError(f"source must be 'paper' or 'ours', got {source!r}")
        if evidence.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {evidence.verdict!r}")
        if any(r.claim == claim for r in self.rows):
            raise ValueError(f"claim {claim!r} is already in the table")
        key = f"claim {len(self.rows) + 1}"
        if checked and evidence.ours:
            self.measure(f"{key}: ours", evidence.ours)
        if checked and evidence.base:
            self.measure(f"{key}: comparison", evidence.base)
        if checked and evidence.kind == "rate" and math.isfinite(evidence.estimate):
            half = max(evidence.high - evidence.estimate, evidence.estimate - evidence.low)
            self.measure(f"{key}: exponent", [evidence.estimate], tol=half / 2)
        self._record_verdict(claim, evidence)
        text = f"{what} {evidence.text}".strip()
        note = "; ".join(x for x in (note, evidence.reason) if x)
        row = Claim(paper, claim, str(paper_value), text, evidence.verdict, note, source, evidence.asdict())
        self.rows.append(row)
        return row

    def frame(self):
        import pandas as pd
        return pd.DataFrame([asdict(r) for r in self.rows],
                            columns=["paper", "claim", "paper_value", "our_value", "verdict", "note", "source"])

    def markdown(self) -> str:
        return rows_markdown(self.rows)

    def save(self) -> str:
        out = paths.results_dir(self.profile) / f"{self.notebook}.claims.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        # every measured number goes with the claims, so that prose about this run can be checked against it
        out.write_text(json.dumps({"notebook": self.notebook, "profile": self.profile, "config": self.config,
                                   "claims": [asdict(r) for r in self.rows],
                                   "values": {k: v["value"] for k, v in self._values.items()}}, indent=1))
        if self.mode == "record":
            exp = expected_path(self.notebook)
            exp.write_text(json.dumps({"notebook": self.notebook, "profile": self.profile, "config": self.config,
                                       "tolerance": f"{TOL_SE:g} standard errors of the seed mean",
                                       "machine": machine(), "values": self._values,
                                       "verdicts": self._verdicts}, indent=1) + "\n")
        return paths.rel(out)

    def show(self):
        """Save, then display the table as Markdown (plain text outside Jupyter)."""
        self.save()
        try:
            from IPython.display import Markdown, display
            display(Markdown(self.markdown()))
        except ImportError:  # pragma: no cover
            print(self.markdown())


def rows_markdown(rows) -> str:
    head = "| paper | claim | paper's value | ours (estimate [95% interval]) | verdict | note |\n|---|---|---|---|---|---|\n"
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    get = lambda r, k: r[k] if isinstance(r, dict) else getattr(r, k)  # noqa: E731
    out = []
    for r in rows:
        claim = get(r, "claim") + (" *(ours)*" if get(r, "source") == "ours" else "")
        ev = get(r, "evidence") or {}
        old = " (rule 1)" if ev and ev.get("rule", 1) < 2 and get(r, "verdict") != "not measurable here" else ""
        out.append(f"| {esc(get(r, 'paper'))} | {esc(claim)} | {esc(get(r, 'paper_value'))} | {esc(get(r, 'our_value'))} "
                   f"| **{get(r, 'verdict')}**{old} | {esc(get(r, 'note'))} |\n")
    return head + "".join(out)
