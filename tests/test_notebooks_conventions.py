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
