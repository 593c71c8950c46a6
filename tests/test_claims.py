"""Claims rows, checked measurements (record, then check under another 'processor'), the claims of
record and REPORT.md."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lib import evidence as ev
from lib import claims as claims_mod
from lib import report
from lib.claims import CheckError, Claims
from lib.profiles import configure, resolve_profile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dirs(monkeypatch, tmp_path):
    for var in ("WORKBOOK_RESULTS", "WORKBOOK_CLAIMS", "WORKBOOK_EXPECTED"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.delenv("WORKBOOK_CHECKS", raising=False)
    return tmp_path


def demo(cfg, shift=0.0, verdict_shift=0.0):
    """A notebook in miniature: two measured arms over three seeds, one claim, one impossible claim."""
    c = Claims("99_demo", "quick", config=cfg)
    base = np.array([0.70, 0.72, 0.74]) + shift
    c.measure("final accuracy/fedavg", base)
    c.measure("clients", [20], exact=True)
    c.add("Paper A", "x beats y", "+5 points", ev.compare(base + 0.05 + [0.001, -0.001, 0] + verdict_shift, base))
    c.add("Paper B", "a | b on CIFAR", "81.9%", ev.not_measurable("no GPU here"))
    return c


def test_rows_take_their_verdict_from_evidence_only(dirs):
    c = Claims("99_demo", "quick")
    with pytest.raises(TypeError, match="Evidence"):
        c.add("P", "c", "1", "reproduced")
    row = c.add("P", "c", "1", ev.compare([0.8, 0.81, 0.82], [0.7, 0.7, 0.71]), source="ours")
    assert row.verdict == "reproduced" and "paired t, n=3" in row.our_value and row.evidence["ours"] == [0.8, 0.81, 0.82]
    with pytest.raises(ValueError, match="already"):
        c.add("P", "c", "1", ev.not_measurable("x"))


def test_record_then_check_passes_within_tolerance_and_fails_outside(dirs, monkeypatch):
    cfg = {"rounds": 20}
    monkeypatch.setenv("WORKBOOK_CHECKS", "record")
    demo(cfg).save()
    exp = json.loads((dirs / "WORKBOOK_EXPECTED" / "99_demo.expected.json").read_text())
    rec = exp["values"]["final accuracy/fedavg"]
    assert rec["tol"] == pytest.approx(3 * 0.02 / np.sqrt(3)) and exp["values"]["clients"]["tol"] == 0
    monkeypatch.setenv("WORKBOOK_CHECKS", "check")
    demo(cfg, shift=0.0001)                 # another processor: last digits move
    with pytest.raises(CheckError, match="final accuracy/fedavg"):
        demo(cfg, shift=0.05)               # a regression: the mean moves by 4 standard errors
    with pytest.raises(CheckError, match="differs from the recorded run in \\['rounds'\\]"):
        demo({"rounds": 99})                # other parameters than the recording: re-record, never skip


def _near(shift):
    """A claim whose interval's upper end lies 0.2 standard errors below δ = 0.01 (smaller than claimed);
    ``shift`` = 0.0001 carries it across (reproduced) while every value stays inside its tolerance."""
    c = Claims("94_near", "quick")
    base = np.array([0.70, 0.72, 0.74])
    c.add("P", "near a boundary", "-", ev.compare(base + shift + np.array([0.0087, 0.0092, 0.0082]), base))
    c.add("P", "far from a boundary", "-", ev.compare(base + 0.05 + np.array([0.001, -0.001, 0]), base))
    return c


def test_verdicts_are_compared_with_a_stability_margin(dirs, monkeypatch):
    monkeypatch.setenv("WORKBOOK_CHECKS", "record")
    _near(0.0).save()
    exp = json.loads((dirs / "WORKBOOK_EXPECTED" / "94_near.expected.json").read_text())
    rec = exp["verdicts"]["near a boundary"]
    assert rec["verdict"] == "smaller than claimed" and rec["distance_se"] < ev.STABILITY_SE
    assert exp["verdicts"]["far from a boundary"]["distance_se"] > 10 and exp["machine"] == claims_mod.machine()
    monkeypatch.setenv("WORKBOOK_CHECKS", "check")
    with pytest.raises(CheckError, match="on this machine"):
        _near(0.0001)                       # the recording machine: any change of verdict fails
    monkeypatch.setattr(claims_mod, "machine", lambda: "another processor")
    assert _near(0.0001).rows[0].verdict == "reproduced"     # another processor, within the margin: a note
    # far from its boundary, a changed verdict fails on any machine (values still inside tolerance)
    exp["verdicts"]["near a boundary"]["distance_se"] = 3.0
    (dirs / "WORKBOOK_EXPECTED" / "94_near.expected.json").write_text(json.dumps(exp))
    with pytest.raises(CheckError, match="outside the stability margin"):
        _near(0.0001)


def test_a_moved_arm_is_caught_through_its_values(dirs, monkeypatch):
    monkeypatch.setenv("WORKBOOK_CHECKS", "record")
    demo({}).save()
    monkeypatch.setenv("WORKBOOK_CHECKS", "check")
    with pytest.raises(CheckError, match="claim 1: ours"):
        demo({}, verdict_shift=-0.1)        # the arm behind the verdict moved: caught through its values


def test_wall_time_rows_are_reported_but_never_compared(dirs, monkeypatch):
    def nb(seconds):
        c = Claims("95_timing", "quick")
        c.add("P", "lightweight", "-", ev.compare(seconds, [0.5, 0.5, 0.5], higher_is_better=False), checked=False)
        return c
    monkeypatch.setenv("WORKBOOK_CHECKS", "record")
    nb([0.1, 0.11, 0.12]).save()
    monkeypatch.setenv("WORKBOOK_CHECKS", "check")
    assert nb([0.3, 0.31, 0.32]).rows[0].verdict == "reproduced"     # a slower machine: no failure


def test_check_mode_without_a_recording_says_what_to_do(dirs, monkeypatch):
    monkeypatch.setenv("WORKBOOK_CHECKS", "check")
    with pytest.raises(CheckError, match="make record"):
        Claims("98_unrecorded", "quick")


def test_claims_of_record_feed_the_report_and_a_failed_run_keeps_its_rows(dirs):
    demo({}).save()
    report.promote("99_demo", "quick", date="2026-01-01", commit="abc")
    c = Claims("97_other", "quick")
    c.add("P", "other claim", "-", ev.not_measurable("no data"))
    c.save()
    report.promote("97_other", "quick", date="2026-01-01", commit="abc")
    before = report.build_report(("quick",))
    assert "### 99_demo" in before and "**reproduced**" in before and "a \\| b" in before
    assert "not measurable here: 2" in before and report.RULE in before
    # a later run of 97 fails: 99's rows unchanged, 97's kept and flagged
    assert report.mark_stale("97_other", "quick", "DataError: missing", date="2026-02-02")
    after = report.build_report(("quick",))
    assert after.split("### 99_demo")[1] == before.split("### 99_demo")[1]
    assert "**Stale**" in after and "other claim" in after
    assert not report.mark_stale("96_never_ran", "quick", "x")


def test_readme_block_is_replaced(dirs, tmp_path):
    demo({}).save()
    report.promote("99_demo", "quick", date="2026-01-01", commit="abc")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\nrest\n")
    assert report.update_readme(readme, "quick")
    text = readme.read_text()
    assert "old" not in text and "| 99_demo | x beats y |" in text and text.endswith("rest\n")


def test_committed_report_regenerates_from_the_claims_of_record():
    """A fresh clone rebuilds REPORT.md from claims/ alone, byte for byte."""
    assert report.build_report() == (ROOT / "REPORT.md").read_text()


def test_configure_fills_none_from_the_profile_and_smoke_shrinks_full():
    d = {"quick": {"rounds": 5, "lr": 0.1}, "full": {"rounds": 500, "lr": 0.1}, "smoke": {"rounds": 2}}
    cfg = configure("quick", d, rounds=None, lr=0.3)
    assert (cfg.rounds, cfg.lr, cfg.profile) == (5, 0.3, "quick")
    assert configure("full", d).rounds == 500
    assert vars(configure("smoke", d)) == {"profile": "smoke", "rounds": 2, "lr": 0.1}
    with pytest.raises(ValueError, match="no default in profile"):
        configure("quick", d, epochs=3)
    with pytest.raises(ValueError, match="unknown profile 'medium'"):
        resolve_profile("medium")
    with pytest.raises(ValueError, match="only shrink"):
        configure("smoke", dict(d, smoke={"width": 3}))
