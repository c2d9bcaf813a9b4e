"""`export`: parse the source, format and output, write the model as one file (kaggle_digits.predict.export)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from kaggle_digits.cli.output import say
from kaggle_digits.errors import UserError
from kaggle_digits.predict import export
from kaggle_digits.predict.predictor import load_predictor, summary

HELP = "write a trial or an ensemble as one model file (.keras, .onnx, .tflite) that runs without this toolkit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ensemble", metavar="SUBMISSION.json", help="an ensemble's .json (default: the newest)")
    which.add_argument("--trial", metavar="runs/<study>/trial-<n>", help="one trial's fold models, averaged")
    parser.add_argument(
        "--format",
        metavar="{" + ",".join(export.FORMATS) + "}",
        help="keras (.keras), onnx (.onnx, runs with onnxruntime) or litert (.tflite); default: by --out's ending",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="the model file to write")


def run(args: argparse.Namespace) -> int:
    fmt = args.format or _format_of(Path(args.out))
    export.check_out(args.out, fmt)  # before loading any model: a bad name fails fast
    predictor = load_predictor(args.paths.runs_dir, args.paths.submissions_dir, args.ensemble, args.trial)
    say(f"exporting {summary(predictor)} as {fmt}")
    result = export.export(predictor, fmt, args.out, log=say)
    say(
        f"wrote {result.path} ({result.size / 1e6:.1f} MB: {len(result.members)} "
        f"member{'s' if len(result.members) != 1 else ''}, {result.fold_models} fold models; "
        "input uint8 images (n, 28, 28), output probabilities (n, 10))"
    )
    say(f"next: python scripts/predict.py IMG... --model {shlex.quote(str(result.path))}")
    return 0


def _format_of(out: Path) -> str:
    for fmt, ending in export.FORMATS.items():
        if out.suffix.lower() == ending:
            return fmt
    endings = ", ".join(f"{e} ({f})" for f, e in export.FORMATS.items())
    raise UserError(f"--out {out}: give --format, or a file name ending in {endings}")
