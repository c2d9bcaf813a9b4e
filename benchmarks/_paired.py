"""Paired comparisons on the local leaderboard: two sets of labels for the same test rows, compared row by
row against the truth with McNemar's exact test.

Two accuracies on the same 28,000 rows are not independent samples: their 95% intervals overlap long after
one is reliably better. What tells them apart is the rows where they disagree: b rows only the first got
right, c rows only the second got right. Under "equally good" each of those b + c rows is a fair coin, so
the two-sided exact binomial p of b in b + c is the test (McNemar's, exact form).

The benchmarks compare with the public recipe's own labels, kept in benchmarks/reference/recipe.csv (the
submission format, ImageId,Label) and made by MAKE_REFERENCE once its 15 nets are saved. The truth is
data/solution.csv as the local scorer reads it (kaggle_digits.blend.submission.read_solution): nothing
here reads that file itself.

Shared by pipeline_quick.py, recipe.py and paired.py.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from kaggle_digits.blend import submission

REFERENCE = CHECKOUT / "benchmarks" / "reference" / "recipe.csv"
MAKE_REFERENCE = (
    "python benchmarks/recipe.py --data-dir data --out runs/recipe --reference benchmarks/reference/recipe.csv"
)


@dataclass(frozen=True)
class McNemar:
    """Two label arrays scored on the same rows: each one's correct rows, the discordant counts and p."""

    correct_first: int
    correct_second: int
    total: int
    b: int  # rows only the first got right
    c: int  # rows only the second got right
    p: float  # two-sided exact binomial p of b in b + c at one half (1.0 when b + c is 0)


def truth(solution_csv: str | os.PathLike) -> np.ndarray:
    """The test labels of a data folder's solution.csv, as the local scorer reads them."""
    return submission.read_solution(solution_csv)


def read_reference(path: str | os.PathLike | None = None, rows: int | None = None) -> np.ndarray | None:
    """The reference labels (ordered by ImageId; path: default REFERENCE), or None when the file is absent.
    A malformed file, or one with another number of rows than `rows`, is a UserError naming the file (and
    the line)."""
    path = Path(REFERENCE if path is None else path)
    if not path.exists():
        return None
    return submission.read_submission(path, n_test=rows)


def mcnemar(first: np.ndarray, second: np.ndarray, truth: np.ndarray) -> McNemar:
    """McNemar's exact test of two label arrays against the truth (all three in the same row order)."""
    first, second, truth = np.asarray(first), np.asarray(second), np.asarray(truth)
    if not len(first) == len(second) == len(truth):
        raise ValueError(f"label arrays of {len(first)}, {len(second)} and {len(truth)} rows: not the same rows")
    right_first, right_second = first == truth, second == truth
    b = int((right_first & ~right_second).sum())
    c = int((~right_first & right_second).sum())
    return McNemar(int(right_first.sum()), int(right_second.sum()), len(truth), b, c, exact_p(b, c))


def exact_p(b: int, c: int) -> float:
    """Two-sided exact binomial p of b successes in b + c trials at one half: twice the smaller tail, at most
    1 (what scipy.stats.binomtest(b, b + c, 0.5).pvalue gives), in exact integers without scipy's import."""
    n, k = b + c, min(b, c)
    if 2 * k == n:
        return 1.0
    term = tail = 1  # C(n, 0), then C(n, i) for i up to k
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i
        tail += term
    return min(1.0, 2 * tail / (1 << n))


def line(result: McNemar | None, against: str = "the recipe") -> str:
    """The line the benchmarks print beside a score: the comparison, or how to make the missing reference."""
    if result is None:
        return f"no reference labels: make them with `{MAKE_REFERENCE}`"
    return (
        f"vs {against}: {result.correct_first:,} / {result.correct_second:,} of {result.total:,} correct, "
        f"b={result.b} c={result.c}, McNemar p={result.p:.3g}"
    )


def vs_reference(labels: np.ndarray, truth: np.ndarray, path: str | os.PathLike | None = None) -> str:
    """`line` for labels against the reference file's (the 'no reference labels' line when it is absent)."""
    reference = read_reference(path, rows=len(truth))
    return line(None if reference is None else mcnemar(labels, reference, truth))
