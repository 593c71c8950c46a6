"""The book (make book): every notebook has a chapter with its figures and claims table, every full claims of
record has a run-of-record page, the toctrees point at pages that exist, the built site has no broken internal
link and serves MathJax itself, the tracked runs of record are stripped and small, the README stays a front door."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT / "scripts"))
import bookgen  # noqa: E402
import reproduce  # noqa: E402

NOTEBOOKS = bookgen.notebooks()
FULL = bookgen.full_claims()
README_LIMIT = 120


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return bookgen.generate(tmp_path_factory.mktemp("gen"))


def _images(nb: dict) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_a_chapter_with_its_figures(gen, path):
    chapter = gen / "chapters" / path.name
    assert chapter.exists(), f"no chapter generated for {path.name}"
    src, page = json.loads(path.read_text()), json.loads(chapter.read_text())
    assert _images(page) == _images(src), "the chapter must carry every recorded figure"
    assert f"notebooks/{path.name}" in "".join(page["cells"][1]["source"])
    last_code = [c for c in page["cells"] if c["cell_type"] == "code"][-1]
    assert "claims.show()" in "".join(last_code["source"]), "the chapter ends with the claims table"
    if (ROOT / "claims" / "full" / f"{path.stem}.json").exists():
        assert f"../full/{path.stem}" in "".join(page["cells"][1]["source"]), "link to the full run of record"


@pytest.mark.parametrize("path", FULL, ids=lambda p: p.stem)
def test_every_full_claims_of_record_has_a_run_of_record_page(gen, path):
    doc = json.loads(path.read_text())
    executed = bookgen.run_of_record(path.stem)
    if executed:
        page = gen / "full" / f"{path.stem}.ipynb"
        assert page.exists() and _images(json.loads(page.read_text())) == _images(json.loads(executed.read_text()))
    else:
        page = gen / "full" / f"{path.stem}.md"
        text = page.read_text()
        assert "No executed notebook" in text
        for row in doc["claims"]:
            assert row["claim"].replace("|", "\\|") in text


@pytest.mark.parametrize("path", sorted((ROOT / "runs_of_record").glob("*/*.ipynb")), ids=lambda p: p.stem)
def test_tracked_runs_of_record_are_stripped_small_and_dated(path):
    assert path.stat().st_size <= reproduce.RUN_OF_RECORD_LIMIT
    nb = nbformat.read(path, as_version=4)
    assert "papermill" not in nb.metadata
    assert not any("papermill" in c.metadata or "execution" in c.metadata for c in nb.cells)
    run = nb.metadata["workbook_run"]
    assert run["commit"] and run["date"] and run["profile"] == path.parent.name
    assert (ROOT / "claims" / run["profile"] / f"{path.stem}.json").exists(), "a run of record has claims of record"


def test_store_run_of_record_strips_dates_and_refuses_large_notebooks(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(metadata={"papermill": {"duration": 1.0}})
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 demo"), nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_markdown_cell("**What we see.** At quick, x is 0.731."),
                nbformat.v4.new_markdown_cell("## The full profile on this CPU\n\nIn an older record x was 0.529.")]
    nb.cells[1].metadata["papermill"] = {"duration": 0.1}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0}})]
    src = tmp_path / "run.ipynb"
    nbformat.write(nb, src)
    claims = tmp_path / "99_demo.json"
    claims.write_text(json.dumps({"date": "2026-01-01", "commit": "abc", "code_hash": "h", "claims": []}))
    out = reproduce.store_run_of_record(src, "99_demo", "full", claims_file=claims, out_dir=tmp_path / "ror")
    stored = nbformat.read(out, as_version=4)
    assert "papermill" not in stored.metadata and "papermill" not in stored.cells[1].metadata
    assert "widgets" not in stored.metadata and not stored.cells[1].outputs    # no widget: the book stays offline
    # the quick profile's prose is not set beside a full run's outputs; the quick record keeps it
    assert "0.731" not in stored.cells[2].source and "full run of record" in stored.cells[2].source
    assert "0.529" not in stored.cells[3].source and "claims table" in stored.cells[3].source
    quick = reproduce.store_run_of_record(src, "99_demo", "quick", claims_file=claims, out_dir=tmp_path / "q")
    assert "0.731" in nbformat.read(quick, as_version=4).cells[2].source
    assert stored.metadata["workbook_run"] == {"notebook": "99_demo", "profile": "full", "commit": "abc",
                                               "date": "2026-01-01", "code_hash": "h"}
    assert reproduce.store_run_of_record(src, "99_demo", "full", claims_file=claims, out_dir=tmp_path / "big",
                                         limit=10) is None
    assert "exceeds" in capsys.readouterr().out and not (tmp_path / "big").exists()


def _toctree_entries(md: Path):
    for block in re.findall(r"```\{toctree\}\n(.*?)```", md.read_text(), re.S):
        glob = ":glob:" in block
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith(":"):
                yield line, glob


def test_toctree_entries_exist():
    gen = DOCS / "_gen"
    if not gen.exists():
        bookgen.generate()
    for md in [*DOCS.glob("*.md"), *DOCS.glob("papers/*.md")]:
        for entry, glob in _toctree_entries(md):
            base = md.parent / entry
            if glob and "*" in entry:
                assert list(base.parent.glob(base.name + ".*")) or list(base.parent.glob(base.name)), (md, entry)
            else:
                assert any(base.with_name(base.name + ext).exists() for ext in (".md", ".ipynb")), (md, entry)
    papers = {p.stem for p in (DOCS / "papers").glob("*.md")} - {"README"}
    listed = {e for e, _ in _toctree_entries(DOCS / "papers" / "README.md")}
    assert papers == listed, "every paper note is in the papers' toctree"


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_LIMIT, f"README.md over {README_LIMIT} lines: move the detail to docs/"
    assert "<!-- claims:start -->" in text and "<!-- claims:end -->" in text
    assert "make reproduce" in text and "make test" in text and "make book" in text
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.name}" in text, f"README's notebook table lacks {nb.name}"


def test_book_builds_without_warnings_and_has_no_broken_internal_link(tmp_path):
    """The build of `make book` (warnings as errors, nothing executed), then every local href/src resolves."""
    out = tmp_path / "book"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", str(DOCS),
                           str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"book built in {time.perf_counter() - t0:.0f} s")
    ids: dict[Path, set] = {}
    broken = []
    pages = sorted(p for p in out.rglob("*.html") if "_static" not in p.relative_to(out).parts)  # theme macros
    for page in pages:
        html = page.read_text(errors="replace")
        for url in re.findall(r'(?:href|src)="([^"]+)"', html):
            if re.match(r"^(https?:|mailto:|javascript:|data:|//)", url):
                continue
            path, _, frag = url.partition("#")
            target = page if not path else (page.parent / path.split("?")[0]).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(out)} -> {url}")
            elif frag and target.suffix == ".html":
                if target not in ids:
                    ids[target] = set(re.findall(r'\bid="([^"]+)"', target.read_text(errors="replace")))
                if frag not in ids[target]:
                    broken.append(f"{page.relative_to(out)} -> {url} (no such anchor)")
    assert not broken, "\n".join(broken[:40])
    texts = {page: page.read_text(errors="replace") for page in pages}
    with_math = [p for p, t in texts.items() if "mathjax/tex-mml-chtml.js" in t]
    assert with_math and (out / "_gen" / "chapters" / "05_ravan.html") in with_math, "MathJax is served by the site"
    assert not [p for p, t in texts.items() if re.search(r"cdn\.jsdelivr|cdnjs|mathjax\.org", t)], "no CDN"
    assert (out / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    for nb in NOTEBOOKS:
        chapter = out / "_gen" / "chapters" / f"{nb.stem}.html"
        assert chapter.exists()
        assert chapter.read_text().count("<img") >= _images(json.loads(nb.read_text()))
