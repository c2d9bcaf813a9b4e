"""Score one submission (or two) on the local leaderboard and compare it, row by row, with the public
recipe's labels (or with the other submission): McNemar's exact test on the rows where they disagree.

    python benchmarks/paired.py submissions/A.csv --data-dir data            # A against the recipe's labels
    python benchmarks/paired.py submissions/A.csv submissions/B.csv          # A against B, on the same rows

Printed: each submission's local score with its 95% interval, then "vs ...: correct / correct, b=.. c=..,
McNemar p=.." where b counts the rows only the first got right and c the rows only the other did (the
other being B, or the recipe's labels in --reference, default benchmarks/reference/recipe.csv; without
that file, the command that makes it). The truth is --data-dir's solution.csv, read by the local scorer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

import _paired  # (benchmarks/_paired.py)

from kaggle_digits.blend import submission
from kaggle_digits.errors import UserError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submission", type=Path, help="a submission CSV (ImageId,Label) of the data folder's test rows")
    parser.add_argument("other", type=Path, nargs="?", help="a second one, compared with the first on the same rows")
    parser.add_argument("--data-dir", type=Path, default=CHECKOUT / "data", help="the folder with solution.csv")
    parser.add_argument(
        "--reference", type=Path, default=_paired.REFERENCE, help="the recipe's labels (default %(default)s)"
    )
    args = parser.parse_args()

    try:
        truth = _paired.truth(args.data_dir / "solution.csv")
        first = submission.read_submission(args.submission, n_test=len(truth))
        print(f"{args.submission}: {submission.score_labels(first, truth)}")
        if args.other is None:
            print(_paired.vs_reference(first, truth, args.reference))
        else:
            other = submission.read_submission(args.other, n_test=len(truth))
            print(f"{args.other}: {submission.score_labels(other, truth)}")
            print(_paired.line(_paired.mcnemar(first, other, truth), against=args.other.name))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
