#!/usr/bin/env python3
"""Re-derive the verdicts of the claims of record under the current verdict rule, from stored values.

A full run takes an hour or more, so a new version of the rule (lib/evidence.py) is applied to the full
profile's claims of record from the per-seed values each row stored, instead of re-running it. A row is
re-derived when it is a comparison with its values stored; how to test it (unit, non-inferiority) comes
from the row's own stored ``spec`` or, for rows recorded under version 1 (which stored none), from the
same claim in the quick profile's claims of record, which the current notebook wrote. A row whose claim
rests on a premise, or a rate (version 1 stored no curves), keeps its old verdict and makes the record
*stale* in REPORT.md until the next run.

    python scripts/rederive.py [--profile full] [NB ...]
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lib import evidence, paths  # noqa: E402
from lib.report import code_hash  # noqa: E402

SPEC_KEYS = ("unit", "noninferiority", "margin", "higher_is_better", "paired", "fmt", "magnitude")


# rows the quick profile does not measure, so no quick record carries their spec: the keyword arguments the
# notebook's claims cell passes to evidence.compare for them (read from the cell; the magnitude is the run's own)
NOT_IN_QUICK = {
    "05_ravan": {"Larger gains under stronger label skew": {"unit": "accuracy"},
                 "Robust to compute heterogeneity": {"unit": "accuracy"}},
    "11_planning_vq": {"MTP solves PF-Long more often than NTP": {"unit": "accuracy"},
                       "Natural text: the prediction draws most on the most recent block": {"unit": "relative"},
                       "Natural text: block 2 carries information block 1 does not (conditional share above 0, our "
                       "normalisation)": {"unit": "accuracy"}},
    "10_proxrouter": {"Prox improves outlier AUC_n over Base on a pool of real LLMs (K-means, Leave-Task-Out)":
                      {"unit": "points", "fmt": "+.2f"},
                      "Prox improves outlier AUC_n over Base on a pool of real LLMs (kNN, Few-Shot-Outlier)":
                      {"unit": "points", "fmt": "+.2f"}},
}


def _quick_specs(notebook: str) -> dict[str, dict]:
    path = paths.claims_dir("quick") / f"{notebook}.json"
    if not path.exists():
        return {}
    rows = json.loads(path.read_text())["claims"]
    return {r["claim"]: r["evidence"] for r in rows if r.get("evidence", {}).get("rule", 1) >= evidence.VERSION}


def _spec_for(row: dict, quick: dict[str, dict], notebook: str = "") -> tuple[dict | None, str]:
    """How to test a stored row: its own spec, else the quick record's for the same claim (or claim family)."""
    ev = row["evidence"]
    if ev.get("rule", 1) >= evidence.VERSION:
        return dict(ev.get("spec") or {}), "its own"
    fixed = NOT_IN_QUICK.get(notebook, {}).get(row["claim"])
    q = {"kind": "difference", "spec": fixed} if fixed is not None else quick.get(row["claim"])
    if q is not None and q.get("kind") not in ("difference", "time ratio"):
        q = None          # not measured at the quick profile: take the claim family's spec
    if q is None:   # a full-only row of a family the quick profile has (e.g. another track of the same claim)
        head = row["claim"].split(":")[0].split(" (")[0]
        q = next((v for k, v in quick.items() if k.startswith(head) and v.get("kind") in ("difference", "time ratio")),
                 None)
    if q is None:
        return None, "no matching quick row"
    if (q.get("premise") or {}).get("premises"):
        return None, "the claim rests on a premise the record did not store"
    spec = {k: v for k, v in (q.get("spec") or {}).items() if k in SPEC_KEYS}
    if ev.get("kind") == "difference" and ev.get("n", 0) >= evidence.MIN_SEEDS:
        # the stored estimate's sign fixes the direction the row was measured in
        import numpy as np
        d = float(np.mean(ev["ours"]) - np.mean(ev["base"]))
        if abs(d) > 0 and ev.get("estimate") is not None:
            spec["higher_is_better"] = bool(np.sign(ev["estimate"]) == np.sign(d))
        spec["paired"] = ev.get("interval") != "Welch t"
    # the run's own magnitude where it stored one (it may depend on the run, e.g. a share of the baseline's mean);
    # else the claim's, from the current notebook (a constant the paper states)
    if ev.get("magnitude") is not None or "magnitude" not in spec:
        spec["magnitude"] = ev.get("magnitude")
    return spec, "the quick record's"


def rederive_record(path: Path, today: str) -> list[str]:
    doc = json.loads(path.read_text())
    quick = _quick_specs(doc["notebook"])
    changes = []
    for row in doc["claims"]:
        ev = row["evidence"]
        if ev.get("kind") not in ("difference", "time ratio") or ev.get("n", 0) < evidence.MIN_SEEDS:
            continue
        spec, how = _spec_for(row, quick, doc["notebook"])
        if spec is None:
            changes.append(f"{doc['notebook']}: {row['claim']!r} kept at {row['verdict']!r} ({how}): stale")
            continue
        if ev["kind"] == "time ratio":
            spec = {k: spec[k] for k in ("paired", "magnitude", "noninferiority") if k in spec}
            spec["horizon"] = float("inf")        # stored times are already censored at the horizon
        new = evidence.rederive(ev, **spec)
        prefix = row["our_value"][: row["our_value"].find(ev["text"])] if ev["text"] in row["our_value"] else ""
        old = row["verdict"]
        text = new.text
        if ev["kind"] == "time ratio" and "censored" in ev["text"]:
            text += "; " + ev["text"].split("; ", 2)[-1] if ev["text"].count("; ") >= 2 else ""
        row["our_value"] = (prefix + text).strip() if prefix else text
        row["verdict"] = new.verdict
        note = [x for x in str(row.get("note", "")).split("; ") if x and x != ev.get("reason")]
        row["note"] = "; ".join(note + ([new.reason] if new.reason else []))
        d = new.asdict()
        d["rederived_from"] = {"rule": ev.get("rule", 1), "verdict": old, "spec_from": how}
        row["evidence"] = d
        changes.append(f"{doc['notebook']}: {row['claim']!r}: {old} -> {new.verdict}")
    if "code_hash" not in doc and doc.get("commit"):
        try:
            text = subprocess.run(["git", "show", f"{doc['commit']}:notebooks/{doc['notebook']}.ipynb"], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout
            doc["code_hash"] = code_hash(doc["notebook"], text)
        except (subprocess.CalledProcessError, OSError):
            pass
    doc["rederived"] = today
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return changes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="full")
    ap.add_argument("nb", nargs="*")
    args = ap.parse_args(argv)
    today = datetime.date.today().isoformat()
    for path in sorted(paths.claims_dir(args.profile).glob("*.json")):
        if args.nb and not any(path.stem.startswith(n.zfill(2)) for n in args.nb):
            continue
        for line in rederive_record(path, today):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
