"""Every notebook follows the workbook's shape; the batch runner selects and strips as documented."""
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith(f"# {path.stem[:2]} ")
    assert cells[1].cell_type == "code" and "parameters" in cells[1].metadata.get("tags", [])
    assert re.search(r'^profile = "quick"', cells[1].source, re.M), "notebooks record the quick profile"
    assert any("nbval-check-output" in c.metadata.get("tags", []) for c in cells), "no headline cell is compared"
    last_code = [c for c in cells if c.cell_type == "code"][-1]
    assert "claims.show()" in last_code.source, "the notebook must end with its claims table"
    assert "papermill" not in nb.metadata, "strip papermill metadata (make record does)"
    text = json.dumps(nb)
    assert not re.search(r"/(root|home|tmp|work)/[A-Za-z0-9_.-]+", text), "an output shows an absolute path"
    assert "Traceback (most recent call last)" not in text
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in cells), "strip papermill's cell"
    assert sum(bool(c.get("outputs")) for c in cells if c.cell_type == "code") >= 5, "record the outputs"
    assert "image/png" in text, "no figure is embedded: record with the inline backend (not MPLBACKEND=Agg)"
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert '"smoke": dict(' in code, "every notebook defines a smoke profile (the full path, tiny)"
    assert "Unable to parse" not in text
    md = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "## Exercises" in md, "end with exercises"
    assert md.count("**What we see") >= 2, "say what was seen after the figures and tables"
    assert "../shared" not in text, "a user's clone has no ../shared: put what the reader needs in the repo"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_recorded_checks(path):
    """make record stored the checked values the test compares; every value has a tolerance."""
    exp = json.loads((path.parent / f"{path.stem}.expected.json").read_text())
    assert exp["profile"] == "quick" and exp["values"] and exp["verdicts"]
    assert all(v["tol"] >= 0 and v["n"] >= 1 for v in exp["values"].values())
    claims = json.loads((ROOT / "claims" / "quick" / f"{path.stem}.json").read_text())
    assert claims["config"] == exp["config"], "the claims of record and the checked values come from one run"
    for row in claims["claims"]:
        ev = row["evidence"]
        assert row["verdict"] == ev["verdict"], "verdicts come from the evidence"
        assert ev["verdict"] == "not measurable here" or ev["n"] >= 3, "a verdict needs at least 3 seeds"


def test_runner_selects_by_number_and_rejects_unknown():
    assert [p.name[:2] for p in reproduce.notebooks("1")] == ["01"]
    assert len(reproduce.notebooks(None)) == len(NOTEBOOKS)
    with pytest.raises(SystemExit, match="no notebook matches NB=77"):
        reproduce.notebooks("77")


def test_strip_removes_papermill_metadata(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"duration": 1.0}
    cell = nbformat.v4.new_code_cell("1")
    cell.metadata["papermill"] = {"duration": 0.1}
    cell.metadata["execution"] = {"iopub.status.busy": "x"}
    injected = nbformat.v4.new_code_cell('profile = "quick"')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [cell, injected]
    p = tmp_path / "x.ipynb"
    nbformat.write(nb, p)
    reproduce.strip(p)
    out = nbformat.read(p, as_version=4)
    assert "papermill" not in out.metadata and not out.cells[0].metadata and len(out.cells) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_parses_cleanly(path, caplog):
    """papermill reads every parameter (a trailing comment after `x = None` made it warn 'Unable to parse')."""
    papermill = pytest.importorskip("papermill")
    with caplog.at_level("WARNING"):
        params = papermill.inspect_notebook(str(path))
    assert "profile" in params and "seed" in params
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]
