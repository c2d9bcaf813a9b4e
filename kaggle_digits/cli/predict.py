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
        "--show",
        metavar="OUT.png",
        help="write pages (.png, .jpg, .pdf or .svg) with each input, its 28x28 version and the probabilities",
    )
    parser.add_argument(
        "--explain",
        metavar="OUT.png",
        help="write pages (.png, .jpg, .pdf or .svg) with each input, its 28x28 version and the attribution maps "
        "of its top two digits",
    )


def run(args: argparse.Namespace) -> int:
    files, pages_left_out = _inputs(args.images)
    if pages_left_out:
        print(f"left out {_listing(pages_left_out, 'page')} that predict wrote earlier", flush=True)
    # Before any work: a page must never replace an input or any file this command did not write.
    show_pages = predict_pages.check_pages("--show", args.show, len(files), files) if args.show else []
    explain_pages = predict_pages.check_pages("--explain", args.explain, len(files), files) if args.explain else []
    if set(show_pages) & set(explain_pages):
        raise UserError(f"--show and --explain name the same file {args.show}: give each its own")
    predictor = load_predictor(args.paths.runs_dir, args.paths.submissions_dir, args.ensemble, args.trial, args.model)
    print(f"predictor: {summary(predictor)}", flush=True)
    outcomes = predict_files(predictor, files)
    for outcome in outcomes:
        if outcome.error is not None or outcome.proba is None:
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


def _inputs(images: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """The files to predict, and the pages of an earlier `predict --show/--explain` found in the folders given
    (left out: a page is not a digit). A file named on its own is always predicted."""
    files: list[Path] = []
    left_out: list[Path] = []
    for image in images:
        found = expand_inputs([image])
        if not Path(image).is_dir():
            files += found
            continue
        pages = [path for path in found if predict_pages.is_page(path)]
        if len(pages) == len(found):
            raise UserError(f"{image}: folder has no files besides the pages predict wrote")
        files += [path for path in found if path not in pages]
        left_out += pages
    return files, left_out


def _listing(paths: Sequence[Path], what: str = "page") -> str:
    if len(paths) == 1:
        return str(paths[0])
    return f"{len(paths)} {what}s: {paths[0]} ... {paths[-1]}"
