"""Sphinx configuration of the workbook's book: ``make book`` -> ``_build/book/``.

The book renders what is tracked and never runs anything: the notebooks as recorded (MyST-NB,
``nb_execution_mode = "off"``), the MyST pages of docs/, lib's docstrings (autodoc), REPORT.md and
benchmarks/results.md. Pages derived from tracked files (chapters, runs of record, the findings table, the
library reference) are generated into docs/_gen/ by ``_ext/bookgen.py`` before Sphinx reads the sources.
MathJax is served from the built site: npm's ``mathjax`` 3.2.2, copied by ``scripts/fetch_mathjax.py``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT / "scripts"))

import bookgen  # noqa: E402
import fetch_mathjax  # noqa: E402

bookgen.generate()
STATIC_GEN = ROOT / "_build" / "static"
fetch_mathjax.install(STATIC_GEN)

project = "Federated learning replication workbook"
author = "The workbook's authors"
copyright = "2026, the workbook's authors (MIT licence)"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_gen/*.md", "**/.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}

# notebooks are rendered from their recorded outputs, never executed
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = []

# MathJax from the built site, not a CDN
mathjax_path = "mathjax/tex-mml-chtml.js"
html_static_path = [str(STATIC_GEN)]

autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True,
                           "ignore-module-all": True}  # each object once, in the module that defines it
autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "sphinx_book_theme"
html_title = "FL replication workbook"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "use_download_button": True,
}
html_last_updated_fmt = None


# -- lib's docstrings ----------------------------------------------------------------------------------------
# Most are reST; some module docstrings are plain text with |S|-style notation or indented formulas. A docstring
# that docutils cannot parse cleanly is shown verbatim (a literal block) instead of failing the build.
import re  # noqa: E402

_ROLE = re.compile(r":(?:py:)?[a-z]+:`")


def _parses_cleanly(text: str) -> bool:
    import docutils.core
    import docutils.utils
    probe = _ROLE.sub("`", text)
    try:
        tree = docutils.core.publish_doctree(probe, settings_overrides={
            "report_level": 2, "halt_level": 5, "warning_stream": False, "file_insertion_enabled": False})
    except Exception:  # noqa: BLE001 -- any failure means: show it verbatim
        return False
    import docutils.nodes
    return not any(m["level"] >= 2 for m in tree.findall(docutils.nodes.system_message)) and not any(
        True for _ in tree.findall(docutils.nodes.problematic))


def _docstring(app, what, name, obj, options, lines):
    text = "\n".join(lines)
    if not text.strip() or _parses_cleanly(text):
        return
    lines[:] = ["::", ""] + ["    " + ln for ln in text.splitlines()] + [""]


def _skip(app, what, name, obj, skip, options):
    import types
    if isinstance(obj, types.ModuleType):  # submodules have their own section
        return True
    return None


def setup(app):
    app.connect("autodoc-process-docstring", _docstring)
    app.connect("autodoc-skip-member", _skip)
