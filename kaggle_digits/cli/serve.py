"""`serve`: parse the port and model, serve the drawing page (kaggle_digits.predict.serve) until Ctrl+C."""

from __future__ import annotations

import argparse

from kaggle_digits.errors import UserError
from kaggle_digits.predict import serve
from kaggle_digits.predict.predictor import load_predictor, summary
from kaggle_digits.predict.serve import DEFAULT_PORT, HOST

HELP = "serve a local page to draw a digit and see the model's probabilities (needs the extra `serve`)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT}; 0: any free one)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ensemble", metavar="SUBMISSION.json", help="an ensemble's .json (default: the newest)")
    which.add_argument("--trial", metavar="runs/<study>/trial-<n>", help="one trial's fold models, averaged")
    which.add_argument("--model", metavar="FILE", help="a model file written by `export` (.keras, .onnx, .tflite)")


def run(args: argparse.Namespace) -> int:
    _, uvicorn = serve.serving_modules()
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected 0-65535")
    listener = serve.listen(args.port)  # before loading the model: a busy port fails fast
    try:
        predictor = load_predictor(
            args.paths.runs_dir, args.paths.submissions_dir, args.ensemble, args.trial, args.model
        )
        app = serve.create_app(predictor)
        serve.warm_up(predictor)
        port = listener.getsockname()[1]
        print(f"predictor: {summary(predictor)}", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        try:
            # Announced inside the try: a Ctrl+C right after it, before uvicorn has taken over the signal,
            # stops as cleanly as one later.
            print(f"serving http://{HOST}:{port}/  (POST /predict, GET /health; Ctrl+C to stop)", flush=True)
            server.run(sockets=[listener])
        except KeyboardInterrupt:  # uvicorn shuts down cleanly on Ctrl+C, then re-raises it: stopping is normal
            pass
    finally:
        listener.close()
    print("stopped")
    return 0
