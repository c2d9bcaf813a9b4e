"""TensorFlow's oneDNN kernels on against off: the recipe cnn's training and prediction speed, measured
the way the pipeline's folds run (speed.calibrate: one process per core at once, synthetic images,
augmented), in fresh processes with TF_ENABLE_ONEDNN_OPTS=1 and =0 in turn.

    python benchmarks/onednn.py                  # 2 rounds, float32 (~7 min on two cores)
    python benchmarks/onednn.py --rounds 3 --precision fast

TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI and newer; there both variants
may measure the same kernels' speed unless the user's 0 is honoured (it is). Printed: each round's
images per second of one process, on and off, and the median ratios (on / off).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))


def _measure(precision: str) -> None:
    """In a child process: the calibration's speeds, as one JSON line."""
    from kaggle_digits import planner
    from kaggle_digits import speed as machine_speed
    from kaggle_digits.models import hardware

    policy = hardware.configure(precision)
    jobs = hardware.default_fold_jobs(planner.PLAN_FOLDS)
    speed = machine_speed.calibrate(policy, "benchmark", jobs)
    print(json.dumps({"train": speed.train_per_s, "predict": speed.predict_per_s, "jobs": jobs}), flush=True)


def _run(onednn: str, precision: str) -> dict:
    from kaggle_digits import tflog

    env = {**os.environ, tflog.ONEDNN_ENV: onednn}
    done = subprocess.run(
        [sys.executable, __file__, "--measure", "--precision", precision],
        cwd=CHECKOUT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _measure(args.precision)
        return
    train, predict = [], []
    for r in range(args.rounds):
        on = _run("1", args.precision)
        off = _run("0", args.precision)
        train.append(on["train"] / off["train"])
        predict.append(on["predict"] / off["predict"])
        print(
            f"round {r + 1} ({on['jobs']} processes at once, {args.precision}): training {on['train']:.0f} vs "
            f"{off['train']:.0f} images/s per process ({train[-1]:.2f}x); prediction {on['predict']:.0f} vs "
            f"{off['predict']:.0f} ({predict[-1]:.2f}x)",
            flush=True,
        )
    print(
        f"median ratio, oneDNN on / off: training {statistics.median(train):.2f}x, prediction {statistics.median(predict):.2f}x"
    )


if __name__ == "__main__":
    main()
