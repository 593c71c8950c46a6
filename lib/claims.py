"""Claims tables: each paper's claim beside what the notebook measured.

A notebook builds one :class:`Claims`, adds a row per claim while it measures,
and ends by showing it. ``save()`` writes results/<profile>/<notebook>.claims.json,
which ``make report`` (``python -m lib.report``) gathers into REPORT.md.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from . import paths

VERDICTS = ("reproduced", "partly", "not reproduced", "not measurable here")


@dataclass
class Claim:
    paper: str
    claim: str
    paper_value: str
    our_value: str
    verdict: str
    note: str = ""


class Claims:
    def __init__(self, notebook: str, profile: str):
        self.notebook, self.profile, self.rows = notebook, profile, []

    def add(self, paper: str, claim: str, paper_value, our_value, verdict: str, note: str = "") -> Claim:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        row = Claim(paper, claim, str(paper_value), str(our_value), verdict, note)
        self.rows.append(row)
        return row

    def frame(self):
        import pandas as pd
        return pd.DataFrame([asdict(r) for r in self.rows],
                            columns=["paper", "claim", "paper_value", "our_value", "verdict", "note"])

    def markdown(self) -> str:
        head = "| paper | claim | paper's value | ours | verdict | note |\n|---|---|---|---|---|---|\n"
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        return head + "".join(f"| {esc(r.paper)} | {esc(r.claim)} | {esc(r.paper_value)} | {esc(r.our_value)} "
                              f"| **{r.verdict}** | {esc(r.note)} |\n" for r in self.rows)

    def save(self) -> str:
        out = paths.results_dir(self.profile) / f"{self.notebook}.claims.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"notebook": self.notebook, "profile": self.profile,
                                   "claims": [asdict(r) for r in self.rows]}, indent=1))
        return paths.rel(out)

    def show(self):
        """Save, then display the table as Markdown (plain text outside Jupyter)."""
        self.save()
        try:
            from IPython.display import Markdown, display
            display(Markdown(self.markdown()))
        except ImportError:  # pragma: no cover
            print(self.markdown())
