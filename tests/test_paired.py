"""benchmarks/_paired.py and benchmarks/paired.py: McNemar's exact test against the truth, the reference
labels' reader, and the printed comparison line."""

from __future__ import annotations

import runpy
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import _paired
from kaggle_digits.data import dataset as data
from kaggle_digits.errors import UserError
from tests.conftest import REPO


def test_mcnemar_counts_the_rows_where_the_two_disagree():
    truth = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    first = np.array([0, 1, 2, 3, 4, 0, 0, 0])  # right on rows 0-4
    second = np.array([0, 1, 9, 9, 9, 5, 6, 0])  # right on rows 0, 1, 5, 6
    result = _paired.mcnemar(first, second, truth)
    assert (result.correct_first, result.correct_second, result.total) == (5, 4, 8)
    assert (result.b, result.c) == (3, 2)  # rows 2-4 only the first, rows 5-6 only the second
    assert result.p == 1.0  # 2 * P(X <= 2 | n=5) = 2 * 16/32, capped at 1


def test_mcnemar_p_is_the_exact_two_sided_binomial():
    truth = np.zeros(20, dtype=int)
    first = np.zeros(20, dtype=int)
    second = np.r_[np.ones(10, dtype=int), np.zeros(10, dtype=int)]  # wrong on the first 10 rows
    assert _paired.mcnemar(first, second, truth).p == 2 * 0.5**10  # b=10, c=0
    assert _paired.mcnemar(second, first, truth).p == 2 * 0.5**10  # b=0, c=10: two-sided
    assert _paired.exact_p(0, 0) == 1.0  # no disagreement
    assert _paired.exact_p(3, 3) == 1.0
    assert _paired.exact_p(1, 4) == pytest.approx(2 * (1 + 5) / 32)  # 2 * P(X <= 1 | n=5)
    with pytest.raises(ValueError, match="not the same rows"):
        _paired.mcnemar(first, second[:5], truth)


def test_the_line_says_the_counts_or_how_to_make_the_reference():
    result = _paired.McNemar(27910, 27905, 28000, 12, 7, 0.359375)
    assert _paired.line(result) == "vs the recipe: 27,910 / 27,905 of 28,000 correct, b=12 c=7, McNemar p=0.359"
    assert _paired.line(None) == f"no reference labels: make them with `{_paired.MAKE_REFERENCE}`"
    assert "--reference benchmarks/reference/recipe.csv" in _paired.MAKE_REFERENCE


def test_the_reference_reader(tmp_path):
    assert _paired.read_reference(tmp_path / "absent.csv") is None
    good = tmp_path / "recipe.csv"
    data.write_submission_like(good, np.arange(1, 5), np.array([7, 1, 0, 9]))
    assert _paired.read_reference(good).tolist() == [7, 1, 0, 9]
    assert _paired.read_reference(good, rows=4).tolist() == [7, 1, 0, 9]
    assert _paired.vs_reference(np.array([7, 1, 0, 0]), np.array([7, 1, 3, 0]), good).startswith(
        "vs the recipe: 3 / 2 of 4 correct, b=1 c=0, McNemar p=1"
    )
    assert _paired.vs_reference(np.zeros(4, int), np.zeros(4, int), tmp_path / "absent.csv").startswith("no reference")
    with pytest.raises(UserError, match="4 rows, expected one per test image .28000."):
        _paired.read_reference(good, rows=28000)
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,Label\n1,7\n2,x\n")
    with pytest.raises(UserError, match="bad.csv line 3, column Label: 'x' is not a digit 0-9"):
        _paired.read_reference(bad)


def _paired_py(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "benchmarks/paired.py", *map(str, args)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def _paired_py_here(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """benchmarks/paired.py run as a script in this process (as fast as a unit test): exit code, out, err."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.setattr(sys, "argv", ["benchmarks/paired.py", *map(str, args)])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(str(REPO / "benchmarks" / "paired.py"), run_name="__main__")
    out, err = capsys.readouterr()
    return exit.value.code, out, err


def test_paired_py_scores_two_submissions_and_compares_them(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    ids = np.arange(1, 11)
    data.write_submission_like(folder / "solution.csv", ids, np.arange(10))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    data.write_submission_like(a, ids, np.r_[np.arange(9), 0])  # 9 right: only row 10 wrong
    data.write_submission_like(b, ids, np.r_[0, 0, 0, np.arange(3, 10)])  # 8 right: rows 2 and 3 wrong
    done = _paired_py(a, b, "--data-dir", folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{a}: 0.90000 (9/10 correct; 95% CI 0.5958-0.9821)",
        f"{b}: 0.80000 (8/10 correct; 95% CI 0.4902-0.9433)",
        "vs b.csv: 9 / 8 of 10 correct, b=2 c=1, McNemar p=1",
    ]
    # One submission: against the reference labels, or how to make them when there are none.
    code, out, _ = _paired_py_here(monkeypatch, capsys, a, "--data-dir", folder, "--reference", tmp_path / "no.csv")
    assert code == 0 and out.splitlines()[1] == f"no reference labels: make them with `{_paired.MAKE_REFERENCE}`"
    code, out, _ = _paired_py_here(monkeypatch, capsys, a, "--data-dir", folder, "--reference", b)
    assert code == 0 and out.splitlines()[1] == "vs the recipe: 9 / 8 of 10 correct, b=2 c=1, McNemar p=1"
    # A submission of other rows is one clear line, no traceback.
    short = tmp_path / "short.csv"
    data.write_submission_like(short, ids[:5], np.zeros(5, dtype=int))
    code, out, err = _paired_py_here(monkeypatch, capsys, a, short, "--data-dir", folder)
    assert code == 2 and out.count("\n") == 1
    assert err == f"error: {short}: 5 rows, expected one per test image (10)\n"
