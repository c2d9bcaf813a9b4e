"""Submission files: write (atomic), validate strictly, score against the offline mirror's solution.csv,
and keep `submissions/history.csv`."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits.data.dataset import N_TEST, count_rows, write_submission_like
from kaggle_digits.data.dataset import SUBMISSION_HEADER as HEADER
from kaggle_digits.errors import UserError

_CV_IN_NAME = re.compile(r"-cv(\d\.\d+)\.csv$")
HISTORY_COLUMNS = ["time", "file", "cv_accuracy", "local_score", "public_score", "message"]


def expected_rows(test_csv: str | os.PathLike) -> int:
    """Rows a submission must have: one per row of test.csv, or Kaggle's 28,000 when it is absent."""
    test_csv = Path(test_csv)
    return count_rows(test_csv) if test_csv.exists() else N_TEST


def cv_from_name(path: Path) -> float | None:
    """The CV accuracy recorded in a file name written by the ensemble (`...-cv0.99571.csv`), if any."""
    match = _CV_IN_NAME.search(path.name)
    return float(match.group(1)) if match else None


def write_submission(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write `ImageId,Label` rows (ImageId 1..n) atomically; refuses to overwrite an existing file."""
    path = Path(path)
    if path.exists():
        raise UserError(f"{path} already exists: submissions are never overwritten")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
        raise ValueError("labels must be a 1-D integer array of digits 0-9")
    write_submission_like(path, np.arange(1, len(labels) + 1), labels)
    return path


def submission_name(name: str, cv_accuracy: float | None, when: datetime | None = None) -> str:
    """`<yyyymmdd-HHMMSS>-<name>-cv<acc>.csv`, e.g. 20261123-184500-ensemble-cv0.99571.csv."""
    when = when or datetime.now()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "submission"
    cv = f"-cv{cv_accuracy:.5f}" if cv_accuracy is not None else ""
    return f"{when:%Y%m%d-%H%M%S}-{slug}{cv}.csv"


def read_submission(path: str | os.PathLike, n_test: int | None = None) -> np.ndarray:
    """Validate a submission CSV strictly and return its labels ordered by ImageId (int64, shape (n,)).

    Exact header `ImageId,Label`; one row per test image; each ImageId exactly once from 1 to n_test;
    labels integers 0-9; no blanks. Every failure is a UserError naming the line.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            try:
                rows = list(reader)
            except csv.Error as exc:
                raise UserError(f"{path} line {reader.line_num}: {_csv_problem(exc)}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file") from None
    if not rows:
        raise UserError(f"{path}: file is empty (expected header `ImageId,Label`)")
    if [c.strip() for c in rows[0]] != HEADER or rows[0] != HEADER:
        raise UserError(f"{path} line 1: header is `{','.join(rows[0])}`, expected exactly `ImageId,Label`")
    n = len(rows) - 1
    labels = np.full(n, -1, dtype=np.int64)
    seen: dict[int, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            what = "blank line" if not row or row == [""] else f"has {len(row)} values, expected 2"
            raise UserError(f"{path} line {line}: {what}")
        image_id, label = row
        if not image_id.strip().isdigit():
            raise UserError(f"{path} line {line}, column ImageId: '{image_id}' is not a positive integer")
        if not label.strip().isdigit() or int(label) > 9:
            raise UserError(f"{path} line {line}, column Label: '{label}' is not a digit 0-9")
        i = int(image_id)
        if i in seen:
            raise UserError(f"{path} line {line}, column ImageId: {i} already given on line {seen[i]}")
        if not 1 <= i <= n:
            raise UserError(f"{path} line {line}, column ImageId: {i} is outside 1..{n}")
        seen[i] = line
        labels[i - 1] = int(label)
    if n_test is not None and n != n_test:
        raise UserError(f"{path}: {n} rows, expected one per test image ({n_test})")
    if n == 0:
        raise UserError(f"{path}: has a header but no rows")
    return labels


def _csv_problem(exc: csv.Error) -> str:
    """What the csv module could not read, in words: a field over its size limit, or its own message."""
    if "field larger than field limit" in str(exc):
        return f"a value is longer than {csv.field_size_limit():,} characters: not a submission row"
    return f"not a valid CSV line ({exc})"


@dataclass
class Score:
    accuracy: float
    correct: int
    total: int
    ci_low: float
    ci_high: float

    def __str__(self) -> str:
        return (
            f"{self.accuracy:.5f} ({self.correct:,}/{self.total:,} correct; "
            f"95% CI {self.ci_low:.4f}-{self.ci_high:.4f})"
        )

    def as_dict(self) -> dict[str, Any]:
        """As recorded in an ensemble manifest: accuracy, correct, total, ci95."""
        return {
            "accuracy": self.accuracy,
            "correct": self.correct,
            "total": self.total,
            "ci95": [self.ci_low, self.ci_high],
        }


def score_local(path: str | os.PathLike, solution_csv: str | os.PathLike) -> Score:
    """Accuracy of a submission against the offline mirror's hidden labels, with a Wilson 95% interval."""
    truth = read_solution(solution_csv)
    return score_labels(read_submission(path, n_test=len(truth)), truth)


def read_solution(solution_csv: str | os.PathLike) -> np.ndarray:
    """The offline mirror's hidden test labels, ordered by ImageId, for scoring only.

    This is the only reader of solution.csv in the toolkit: the local score, and the benchmarks' paired
    comparisons of two submissions row by row (benchmarks/_paired.py), take the truth from here.
    """
    solution_csv = Path(solution_csv)
    if not solution_csv.exists():
        raise UserError(
            f"{solution_csv} not found: a local score needs the offline mirror "
            "(`python scripts/download.py --source mnist`); with Kaggle's real files, submit to get a score"
        )
    return read_submission(solution_csv)


def score_labels(predicted: np.ndarray, truth: np.ndarray) -> Score:
    """Accuracy of predicted labels against the true ones (same order), with a Wilson 95% interval."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted labels for {len(truth)} true ones")
    correct = int((np.asarray(predicted) == np.asarray(truth)).sum())
    low, high = wilson_interval(correct, len(truth))
    return Score(correct / len(truth), correct, len(truth), low, high)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def append_history(
    history_csv: str | os.PathLike,
    file: str | os.PathLike,
    cv_accuracy: float | None = None,
    local_score: float | None = None,
    public_score: float | None = None,
    message: str = "",
) -> None:
    """Add one row to submissions/history.csv (created with a header when new).

    The text a user chose (the file's path, the message) is stored as one spreadsheet-safe line (see
    `history_cell`). The row is added whole or not at all: when the write fails (a full disk, Ctrl-C) the
    file is cut back to what it was.
    """
    history_csv = Path(history_csv)
    history_csv.parent.mkdir(parents=True, exist_ok=True)
    try:
        size: int | None = history_csv.stat().st_size
    except FileNotFoundError:
        size = None
    row = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "file": history_cell(str(file)),
        "cv_accuracy": "" if cv_accuracy is None else f"{cv_accuracy:.5f}",
        "local_score": "" if local_score is None else f"{local_score:.5f}",
        "public_score": "" if public_score is None else f"{public_score:.5f}",
        "message": history_cell(message),
    }
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS)
    if not size:
        writer.writeheader()
    writer.writerow(row)
    # One short append in one write: the file is never rewritten, and rows of commands running at once
    # do not mix.
    try:
        with open(history_csv, "a", encoding="utf-8", newline="") as f:
            f.write(text.getvalue())
    except BaseException:
        if size is None:
            history_csv.unlink(missing_ok=True)
        else:
            os.truncate(history_csv, size)
        raise


# A cell starting with one of these is a formula (or may become one) when a spreadsheet opens the CSV.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def history_cell(text: str) -> str:
    """User text as one history.csv cell that a spreadsheet shows as text: line breaks become spaces (one
    line per submission) and a leading = + - @ or tab gets a single quote in front, as spreadsheets expect."""
    text = " ".join(text.splitlines()) if text else text
    return "'" + text if text.startswith(_FORMULA_START) else text


def read_history(history_csv: str | os.PathLike) -> list[dict[str, str]]:
    history_csv = Path(history_csv)
    if not history_csv.exists():
        return []
    with open(history_csv, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
