import json

import pytest

from lib import report
from lib.claims import Claims
from lib.profiles import configure, resolve_profile


@pytest.fixture
def results(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path))
    return tmp_path


def test_claims_roundtrip_into_report(results):
    c = Claims("99_demo", "quick")
    c.add("Paper A", "x beats y", "12%", "3%", "partly", "one seed")
    c.add("Paper B", "a | b", "-", "-", "not measurable here", "no GPU")
    saved = c.save()
    doc = json.loads((results / "quick" / "99_demo.claims.json").read_text())
    assert saved.endswith("99_demo.claims.json") and len(doc["claims"]) == 2
    text = report.build_report(("quick",))
    assert "### 99_demo" in text and "**partly**" in text and "a \\| b" in text
    assert "not measurable here: 1" in text and "partly: 1" in text


def test_readme_block_is_replaced(results, tmp_path):
    Claims("99_demo", "quick").add("P", "claim one", "1", "2", "reproduced")
    c = Claims("99_demo", "quick")
    c.add("P", "claim one", "1", "2", "reproduced")
    c.save()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\nrest\n")
    assert report.update_readme(readme, "quick")
    text = readme.read_text()
    assert "old" not in text and "| 99_demo | claim one | 2 | **reproduced** |" in text and text.endswith("rest\n")


def test_bad_verdict_is_rejected():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claims("x", "quick").add("P", "c", "1", "2", "sort of")


def test_configure_fills_none_from_the_profile():
    d = {"quick": {"rounds": 5, "lr": 0.1}, "full": {"rounds": 500, "lr": 0.1}}
    cfg = configure("quick", d, rounds=None, lr=0.3)
    assert (cfg.rounds, cfg.lr, cfg.profile) == (5, 0.3, "quick")
    assert configure("full", d).rounds == 500
    with pytest.raises(ValueError, match="no default in profile"):
        configure("quick", d, epochs=3)
    with pytest.raises(ValueError, match="unknown profile 'medium'"):
        resolve_profile("medium")
