"""A fresh clone that reaches only the package registries: seeding, the AG News stand-in, the offline check,
the profile message. Fast and without network: the reachability check is replaced, data lives in tmp_path."""
import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib import data, pretrained, sources

ROOT = Path(__file__).resolve().parent.parent
INTENTS = data.BIGBENCH_TEXT["intent_recognition"][1]


def _seed_data_module():
    spec = importlib.util.spec_from_file_location("seed_data", ROOT / "scripts" / "seed_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """No shared folder, an empty data directory, downloads allowed, and no host answering."""
    monkeypatch.delenv("WORKBOOK_SHARED", raising=False)
    for var in ("WORKBOOK_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "0")        # recorded, so that what hub_offline sets is undone after the test
    monkeypatch.setenv("WORKBOOK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(sources, "_hf_flags_ours", False)
    asked = []
    monkeypatch.setattr(sources, "reachable", lambda host, port=443, timeout=3.0: asked.append(host) or False)
    return asked


@pytest.fixture
def seeded_required(monkeypatch):
    """seed_data with its required items present (what the registries give), the optional ones real."""
    mod = _seed_data_module()
    monkeypatch.setattr(mod, "seed_fashion", lambda dest, install: "ok (test)")
    monkeypatch.setattr(mod, "seed_bigbench", lambda dest: "ok (test)")
    monkeypatch.setattr(mod, "seed_minilm", lambda dest: "ok (test)")
    return mod


def test_missing_optional_data_never_fails_seeding(no_hub, seeded_required, capsys):
    t0 = time.perf_counter()
    assert seeded_required.main(["--no-install"]) == 0
    out = capsys.readouterr().out
    assert time.perf_counter() - t0 < 10                      # no half minute of Hub retries
    lines = out.splitlines()
    ag = [i for i, ln in enumerate(lines) if ln.strip().startswith("ag_news (test split)")]
    ts = [i for i, ln in enumerate(lines) if ln.strip().startswith("tinyshakespeare")]
    assert len(ag) == 1 and len(ts) == 1
    assert "not seeded (optional)" in lines[ag[0]] and "huggingface.co is not reachable" in lines[ag[0]]
    assert "notebooks 03, 05, 06, 07 and 10" in lines[ag[0] + 1] and "intent_recognition" in lines[ag[0] + 1]
    assert "not seeded (optional)" in lines[ts[0]] and "notebook 11" in lines[ts[0] + 1]
    assert "MISSING" not in out and "Traceback" not in out
    assert "huggingface.co" in no_hub                          # asked, not assumed


def test_missing_required_data_names_the_notebooks_that_need_it(no_hub, seeded_required, monkeypatch, capsys):
    def no_model(dest):
        raise pretrained.ModelError("minilm: not in the cache and the package index is not reachable")
    monkeypatch.setattr(seeded_required, "seed_minilm", no_model)
    assert seeded_required.main(["--no-install"]) == 1
    out = capsys.readouterr().out
    assert "minilm (model)         MISSING: minilm: not in the cache" in out
    assert "needed by notebooks 05, 06, 07 and 10" in out
    assert "not seeded (required): minilm (model)" in out


def test_the_shared_folder_is_opt_in(monkeypatch, tmp_path):
    mod = _seed_data_module()
    monkeypatch.delenv("WORKBOOK_SHARED", raising=False)
    assert mod.shared_datasets() is None                        # never ../shared by default
    monkeypatch.setenv("WORKBOOK_SHARED", str(tmp_path))
    assert mod.shared_datasets() == tmp_path / "datasets"


def test_an_unreachable_hub_is_noticed_at_once_and_set_for_the_hf_libraries(no_hub, monkeypatch):
    import os
    t0 = time.perf_counter()
    with pytest.raises(data.DataError, match="huggingface.co is not reachable"):
        data.load_dataset("ag_news_testsplit")
    assert time.perf_counter() - t0 < 5
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert not data.offline()                                   # other hosts (torchvision, PyPI) still allowed
    assert sources.hub_offline()


def test_workbook_offline_still_forces_offline_without_asking(no_hub, monkeypatch):
    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    assert sources.hub_offline() and data.offline()
    assert no_hub == []


def test_reachability_is_bounded_and_remembered(monkeypatch):
    monkeypatch.setattr(sources, "_reached", {})
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert sources.reachable("127.0.0.1", port, timeout=2)
    finally:
        server.close()
    assert sources.reachable("127.0.0.1", port, timeout=2)      # remembered: not asked again
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    free = closed.getsockname()[1]
    closed.close()
    t0 = time.perf_counter()
    assert not sources.reachable("127.0.0.1", free, timeout=1)
    assert time.perf_counter() - t0 < 2


def _fake_intents(root: Path, n: int = 70):
    task = {"examples": [{"input": f"Utterance: please {INTENTS[i % 7]} number {i}",
                          "target_scores": {c: int(c == INTENTS[i % 7]) for c in INTENTS}} for i in range(n)]}
    f = root / "bigbench" / "intent_recognition" / "task.json"
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps(task))


def _fake_ag_news_test_split(root: Path):
    folder = root / "ag_news"
    folder.mkdir(parents=True)
    (folder / "SOURCE").write_text("huggingface\n")
    rows = [f'"{i % 4 + 1}","title {i}","about topic {i % 4}"' for i in range(7600)]
    (folder / "test.csv").write_text("\n".join(rows) + "\n")


def test_quick_and_smoke_take_the_registry_stand_in_always(no_hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    _fake_intents(tmp_path / "data")
    # AG News absent: the full profile falls back along the chain, saying so
    assert data.resolve("ag_news") == "intent_recognition"
    assert "using intent_recognition instead" in capsys.readouterr().out
    assert data.resolve("ag_news_testsplit", profile="full") == "intent_recognition"
    # AG News's test split here: the full profile takes it, quick and smoke still take the stand-in
    _fake_ag_news_test_split(tmp_path / "data")
    capsys.readouterr()
    assert data.resolve("ag_news_testsplit", profile="full") == "ag_news_testsplit"
    assert data.resolve("ag_news", profile="full") == "ag_news_testsplit"
    for profile in ("quick", "smoke"):
        assert data.resolve("ag_news", profile=profile) == "intent_recognition"
        assert f"the {profile} profile uses intent_recognition in place of ag_news" in capsys.readouterr().out
    assert data.resolve_all(["ag_news_testsplit", "multiemo_domain", "vitaminc"], "smoke") == \
        ["intent_recognition", "multiemo_domain", "vitaminc"]
    tr, te = data.load_dataset("intent_recognition")
    assert tr.classes == INTENTS and tr.num_classes == 7 and len(tr) + len(te) == 70
    assert data.info("intent_recognition")["num_classes"] == 7


def test_the_stand_in_is_seeded_from_the_archive_with_the_other_task_files():
    files = {f for f, _, _ in data.BIGBENCH_TEXT.values() for f in f.values()}
    assert "intent_recognition/task.json" in files


def test_an_unknown_profile_is_one_line_naming_the_profiles():
    r = subprocess.run([sys.executable, "scripts/reproduce.py", "--profile", "foo"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
    assert len(lines) == 1 and all(p in lines[0] for p in ("quick", "full", "smoke", "auto"))
