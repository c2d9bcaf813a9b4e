"""Speed of attribution maps: one image's map from one cnn fold model, and the drawing page's round trip
with a map (`POST /predict?explain=1` to the real `serve` command).

    python benchmarks/attribution_speed.py [--cnn-model runs/<study>/trial-<n>/fold-0.keras]
        [--ensemble SUBMISSION.json | --trial runs/<study>/trial-<n>] [--rounds 5] [--block 10]
        [--runs-dir runs] [--submissions-dir submissions]

Part 1 times attribution.explain on one real MNIST test digit with one cnn fold model (--cnn-model, else
the cnn family's default network built untrained: the same layers, so the same cost). Its baseline, in
the same process, is predict_proba of the same image with the same model.
Part 2 starts `serve` with the predictor serve would pick (or --trial / --ensemble) and times POSTs of a
280x280 PNG drawing with `?explain=1`; its baseline is the same POST without the map, on the same server.
Blocks of candidate and baseline calls alternate (timing on this machine is bimodal) and medians are
compared; the figures are printed as a ratio against the baseline.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serve_latency import page_like_pngs, start_server  # noqa: E402
from kaggle_digits import models
from kaggle_digits.data import dataset as data
from kaggle_digits.data.paths import BUNDLED_MNIST_DIR
from kaggle_digits.predict import attribution
from kaggle_digits.predict import predictor as predict

MAP_AIM_MS = 200.0
ROUND_TRIP_AIM_MS = 300.0
WARMUP = 3


def alternate(candidate, baseline, rounds: int, block: int) -> tuple[list[float], list[float]]:
    """Seconds of each call of candidate() and baseline(), in alternating blocks of `block` calls."""
    for _ in range(WARMUP):
        candidate()
        baseline()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for work, out in ((candidate, times[0]), (baseline, times[1])):
            for _ in range(block):
                started = time.perf_counter()
                work()
                out.append(time.perf_counter() - started)
    return times


def report(name: str, candidate: list[float], baseline: list[float], baseline_name: str, aim_ms: float) -> None:
    c, b = np.median(candidate) * 1000, np.median(baseline) * 1000
    print(f"{name}: median {c:.1f} ms, p95 {np.percentile(candidate, 95) * 1000:.1f} ms ({len(candidate)} calls)")
    print(f"  baseline, {baseline_name}: median {b:.1f} ms; ratio {c / b:.1f}x")
    print(f"  aim: median under {aim_ms:.0f} ms: {'met' if c < aim_ms else 'NOT met'}")


def one_fold_model(args: argparse.Namespace, digit: np.ndarray, label: int) -> None:
    spec = models.get("cnn")
    if args.cnn_model:
        model, source = spec.load(Path(args.cnn_model)), args.cnn_model
    else:
        model, source = spec.build(spec.default_params(False)), "the default cnn, untrained"
    fitted = attribution.FittedModel(spec, model)
    image = digit[np.newaxis]
    result = attribution.explain(fitted, image, [label])
    print(f"part 1: one cnn fold model ({source}); method {result.method}, {attribution.IG_STEPS} steps")
    maps, plain = alternate(
        lambda: attribution.explain(fitted, image, [label]),
        lambda: fitted.predict_proba(image),
        args.rounds,
        args.block,
    )
    report("map of one image", maps, plain, "predict_proba of the same image", MAP_AIM_MS)


def round_trip(args: argparse.Namespace) -> None:
    folders = ["--runs-dir", args.runs_dir, "--submissions-dir", args.submissions_dir]
    choice = ["--ensemble", args.ensemble] if args.ensemble else ["--trial", args.trial] if args.trial else []
    predictor = predict.load_predictor(args.runs_dir, args.submissions_dir, args.ensemble, args.trial)
    method = "integrated gradients" if predictor.gradient_fn is not None else "occlusion"
    print(f"part 2: the page's round trip; predictor {predict.summary(predictor)}; maps by {method}")
    del predictor
    png = page_like_pngs(1)[0]
    process, port, _ = start_server(choice + folders)

    def post(path: str) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", path, body=png, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"POST {path} answered {response.status}: {body[:200]!r}")

    try:
        with_map, without = alternate(
            lambda: post("/predict?explain=1"), lambda: post("/predict"), args.rounds, args.block
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    report("POST /predict?explain=1", with_map, without, "POST /predict (no map)", ROUND_TRIP_AIM_MS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cnn-model", help="a cnn fold model (.keras); default: the default cnn, untrained")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ensemble")
    which.add_argument("--trial")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--submissions-dir", default="submissions")
    parser.add_argument("--skip-round-trip", action="store_true", help="part 1 only (no predictor needed)")
    args = parser.parse_args()

    X, y = data.load_mnist(BUNDLED_MNIST_DIR)
    _, test_idx = data.mirror_split(len(X))
    i = int(test_idx[0])
    one_fold_model(args, X[i], int(y[i]))
    if not args.skip_round_trip:
        print()
        round_trip(args)


if __name__ == "__main__":
    main()
