"""Pages of the book generated from the workbook's tracked files at build time (``docs/conf.py``).

Everything here is derived, never typed: the chapters are the committed notebooks (rendered as recorded,
never executed), the runs of record are ``runs_of_record/full/*.ipynb`` or, where no executed notebook is
tracked, a page with the claims of record ``claims/full/NN.json``; the headline findings table and the
library reference are built from ``claims/`` and from ``lib``'s layout. ``generate(out)`` writes them under
``docs/_gen/`` (ignored by git); ``tests/test_book.py`` checks the result.
"""
from __future__ import annotations

import json
import pkgutil
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "docs" / "_gen"



def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def full_claims() -> list[Path]:
    return sorted((ROOT / "claims" / "full").glob("*.json"))


def run_of_record(name: str, profile: str = "full") -> Path | None:
    p = ROOT / "runs_of_record" / profile / f"{name}.ipynb"
    return p if p.exists() else None


def _claims(name: str, profile: str) -> dict | None:
    p = ROOT / "claims" / profile / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def counts(doc: dict | None) -> str:
    """Verdicts counted per outcome (``lib.report.verdict_counts``), flagged when the record is stale."""
    from lib import report
    return report.verdict_counts(doc) + (" (stale)" if doc and report.staleness(doc) else "")


def _cell(kind: str, text: str, idx: str) -> dict:
    cell = {"cell_type": kind, "id": idx, "metadata": {}, "source": text}
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def _title(nb: dict) -> str:
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            for line in "".join(c["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _esc(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def claims_table(doc: dict) -> str:
    rows = ["| paper | claim | paper's value | ours (estimate [95% interval]) | verdict |", "|---|---|---|---|---|"]
    for r in doc["claims"]:
        claim = r["claim"] + (" *(ours)*" if r.get("source") == "ours" else "")
        rows.append("| " + " | ".join(_esc(c) for c in (r.get("paper", ""), claim, r.get("paper_value", ""),
                                                          r.get("our_value", ""), f"**{r['verdict']}**")) + " |")
    return "\n".join(rows)


def _chapter(src: Path, out: Path) -> None:
    """The committed notebook as recorded, with one note cell after its introduction (source, run of record)."""
    nb = json.loads(src.read_text())
    name = src.stem
    full = _claims(name, "full")
    note = [f"```{{note}}\nThis chapter is the committed notebook `notebooks/{src.name}` as recorded at the quick "
            f"profile (the book never re-executes it). Its claims of record: {counts(_claims(name, 'quick'))} "
            f"(quick)"]
    if full:
        note.append(f"; {counts(full)} (full). The full profile's run of record, {full.get('date', '?')}, is "
                    f"beside this chapter: {{doc}}`../full/{name}`.\n```\n\n```{{toctree}}\n:hidden:\n\n../full/{name}\n```")
    else:
        note.append(". The full profile has no run of record yet.\n```")
    nb["cells"].insert(1, _cell("markdown", "".join(note), "book-note"))
    out.write_text(json.dumps(nb, indent=1))


def _full_page(name: str, doc: dict, out_dir: Path) -> None:
    """The full run of record: its executed notebook where tracked, else a page with its claims of record."""
    src = ROOT / "notebooks" / f"{name}.ipynb"
    title = _title(json.loads(src.read_text())) if src.exists() else name
    from lib import report
    why = report.staleness(doc)
    head = (f"Claims of record: `claims/full/{name}.json`, run {doc.get('date', '?')} at commit "
            f"`{doc.get('commit', '?')}`; {counts(doc)}." + (" Stale: " + "; ".join(why) + "." if why else ""))
    executed = run_of_record(name)
    if executed:
        nb = json.loads(executed.read_text())
        meta = nb.get("metadata", {}).get("workbook_run", {})
        same = meta.get("commit") == doc.get("commit") and meta.get("date") == doc.get("date")
        first = "".join(nb["cells"][0]["source"]).split("\n", 1)
        nb["cells"][0]["source"] = f"# Full run of record: {title}\n" + (first[1] if len(first) > 1 else "")
        note = (f"```{{note}}\nThe full profile's run of record, executed headless by `make reproduce PROFILE=full "
                f"NB={name[:2]}` and tracked as `runs_of_record/full/{name}.ipynb` (run {meta.get('date', '?')} at commit "
                f"`{meta.get('commit', '?')}`), shown with every output and figure as it ran. {head}"
                + (" This notebook is the run that wrote them." if same else
                   " **This notebook is older than the claims of record**: the newer run's notebook was not stored.")
                + f" The quick profile's chapter: {{doc}}`../chapters/{name}`.\n```")
        nb["cells"].insert(1, _cell("markdown", note, "book-run-note"))
        (out_dir / f"{name}.ipynb").write_text(json.dumps(nb, indent=1))
        return
    md = [f"# Full run of record: {title}\n", head + "\n",
          "No executed notebook of this run is tracked: it ran before runs of record were stored "
          "(`scripts/reproduce.py` now stores one, figures included, with every full run that becomes the claims "
          "of record), so its figures cannot be shown here. Its claims table, as recorded, follows; the quick "
          f"profile's chapter is {{doc}}`../chapters/{name}`.\n",
          "## Claims of record\n\n" + claims_table(doc) + "\n"]
    (out_dir / f"{name}.md").write_text("\n".join(md))


def findings() -> str:
    """The front page's headline table: one row per notebook, counts of verdicts per profile."""
    rows = ["| chapter | quick profile | full profile (run of record) |", "|---|---|---|"]
    for nb in notebooks():
        name = nb.stem
        full = _claims(name, "full")
        full_cell = f"{{doc}}`{counts(full)} <_gen/full/{name}>`" if full else "not run"
        title = _esc(_title(json.loads(nb.read_text())))
        rows.append(f"| {{doc}}`{title} <_gen/chapters/{name}>` | {counts(_claims(name, 'quick'))} | {full_cell} |")
    return "\n".join(rows) + "\n"


def library_modules() -> list[str]:
    """lib's public modules, in its layout (packages before their modules), private ones (``_x``) left out."""
    import lib
    names = []
    for m in pkgutil.walk_packages(lib.__path__, "lib."):
        if not any(part.startswith("_") for part in m.name.split(".")):
            names.append(m.name)
    return sorted(names)


def _library(out_dir: Path) -> None:
    mods = library_modules()
    top = [m for m in mods if m.count(".") == 1]
    for m in top:
        subs = [s for s in mods if s.startswith(m + ".")]
        page = [f"# `{m}`\n", f"```{{eval-rst}}\n.. automodule:: {m}\n```\n"]
        for s in subs:
            page.append(f"## `{s}`\n\n```{{eval-rst}}\n.. automodule:: {s}\n```\n")
        (out_dir / f"{m}.md").write_text("\n".join(page))


def models() -> str:
    """The model registry's licences (``lib.pretrained.describe``), one row per model."""
    from lib import pretrained
    rows = ["| model | hub id | PyPI packages used offline | licence |", "|---|---|---|---|"]
    for m in pretrained.describe():
        rows.append(f"| `{m['name']}` | `{m['hub_id']}` | {_esc(m['pypi'])} | {_esc(m['licence'])} |")
    return "\n".join(rows) + "\n"


def runs() -> str:
    """One row per full claims of record: its page, whether the executed notebook is tracked."""
    rows = ["| notebook | claims of record | executed notebook |", "|---|---|---|"]
    for f in full_claims():
        doc = json.loads(f.read_text())
        ex = run_of_record(f.stem)
        rows.append(f"| {{doc}}`{f.stem} <_gen/full/{f.stem}>` | {doc.get('date', '?')}, `{doc.get('commit', '?')}`: "
                    f"{counts(doc)} | " + (f"`runs_of_record/full/{ex.name}` ({ex.stat().st_size / 1e6:.1f} MB)" if ex
                                          else "not available (ran before runs of record were tracked)") + " |")
    return "\n".join(rows) + "\n"


def generate(out: Path = GEN) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    for d in ("chapters", "full", "library"):
        (out / d).mkdir(parents=True)
    for nb in notebooks():
        _chapter(nb, out / "chapters" / nb.name)
    for f in full_claims():
        _full_page(f.stem, json.loads(f.read_text()), out / "full")
    (out / "findings.md").write_text(findings())
    (out / "runs.md").write_text(runs())
    (out / "models.md").write_text(models())
    _library(out / "library")
    return out
