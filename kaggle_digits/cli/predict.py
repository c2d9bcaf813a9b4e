"""`predict`: parse the images and options, predict them (kaggle_digits.predict), print one line a file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kaggle_digits.errors import UserError
from kaggle_digits.predict import pages as predict_pages
from kaggle_digits.predict.predictor import (
    expand_inputs,
    explain_outcomes,
    load_predictor,
    predict_files,
    summary,
    top_k,
)

HELP = "predict the digit in your own PNG/JPG images with a tuned trial or an ensemble"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMG", help="PNG/JPG files, or folders of them")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ensemble", metavar="SUBMISSION.json", help="an ensemble's .json (default: the newest)")
    which.add_argument("--trial", metavar="runs/<study>/trial-<n>", help="one trial's fold models, averaged")
    which.add_argument("--model", metavar="FILE", help="a model file written by `export` (.keras, .onnx, .tflite)")
    parser.add_argument(
        "--show", metavar="OUT.png", help="write PNG pages with each input, its 28x28 version and the probabilities"
    )
    parser.add_argument(
        "--explain",
        metavar="OUT.png",
        help="write PNG pages with each input, its 28x28 version and the attribution maps of its top two digits",
    )


def run(args: argparse.Namespace) -> int:
    files = expand_inputs(args.images)
    # Before any work: a page must never replace an input or any file this command did not write.
    show_pages = predict_pages.check_pages("--show", Path(args.show), len(files), files) if args.show else []
    explain_pages = (
        predict_pages.check_pages("--explain", Path(args.explain), len(files), files) if args.explain else []
    )
    if set(show_pages) & set(explain_pages):
        raise UserError(f"--show and --explain name the same file {args.show}: give each its own")
    predictor = load_predictor(args.paths.runs_dir, args.paths.submissions_dir, args.ensemble, args.trial, args.model)
    print(f"predictor: {summary(predictor)}", flush=True)
    outcomes = predict_files(predictor, files)
    for outcome in outcomes:
        if outcome.error is not None:
            print(f"error: {outcome.error}", file=sys.stderr, flush=True)
        else:
            best = "  ".join(f"{d} {p:6.1%}" for d, p in top_k(outcome.proba))
            print(f"{outcome.path}: {int(np.argmax(outcome.proba))}    top-3: {best}", flush=True)
    failed = sum(o.error is not None for o in outcomes)
    print(f"predicted {len(outcomes) - failed} of {len(outcomes)} files" + (f"; {failed} failed" if failed else ""))
    if show_pages:
        written = predict_pages.write_pages(outcomes, show_pages, f"predicted with {predictor.name}", "show")
        print(f"wrote {_listing(written)}")
    if explain_pages:
        method = explain_outcomes(predictor, outcomes)
        how = f" ({method})" if method else ""
        written = predict_pages.write_pages(outcomes, explain_pages, f"what {predictor.name} looks at{how}", "explain")
        print(f"wrote {_listing(written)}")
    return 2 if failed else 0


def _listing(paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        return str(paths[0])
    return f"{len(paths)} pages: {paths[0]} ... {paths[-1]}"
