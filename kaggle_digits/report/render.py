"""The report page's content (sections of numbers, figures, notes and tables) and its HTML, rendered from
templates/report.html by Jinja2 with autoescaping: no text the report shows (a study's name, a path, a
reason) ever becomes markup."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kaggle_digits import N_CLASSES, __version__

TEMPLATE = "report.html"


@dataclass
class Plot:
    file: str  # PNG file name inside the report folder
    title: str
    caption: str


@dataclass
class ClassRow:
    name: str  # a class, or an average's name
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class ClassTable:
    """scikit-learn's classification_report as the page's table: per class, the averages, the accuracy."""

    rows: list[ClassRow]
    accuracy: float

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> ClassTable:
        """From classification_report's dict (output_dict=True, target names "0".."9")."""
        keys = [*(str(d) for d in range(N_CLASSES)), "macro avg", "weighted avg"]
        rows = [
            ClassRow(k, report[k]["precision"], report[k]["recall"], report[k]["f1-score"], int(report[k]["support"]))
            for k in keys
        ]
        return cls(rows, float(report["accuracy"]))


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    numbers: list[tuple[str, str]] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    class_tables: list[ClassTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # parts skipped inside the section, with the reason
    skipped: str | None = None  # the whole section skipped, with the reason


def render_html(sections: list[Section], headline: list[tuple[str, str]], out: Path) -> str:
    """The report page: key numbers, then each section's numbers, figures (relative links) and notes."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("kaggle_digits.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template(TEMPLATE).render(
        sections=sections,
        headline=headline,
        out=str(out),
        written=f"{datetime.now():%Y-%m-%d %H:%M}",
        version=__version__,
    )
