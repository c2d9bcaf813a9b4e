"""Training and prediction speed of a Keras family's networks (the cnn's unless --model names another):
the default and variants of it, each measured the way the plans measure this machine (speed.calibrate:
synthetic images, augmented, one process per core at once, as the folds run), the variants in turn, for
several rounds.

    python benchmarks/network_speed.py '{}' '{"downsample": "stride"}'     # max-pooling against the recipe's strided convs (~7 min)
    python benchmarks/network_speed.py '{}' '{"batch_size": 128}' --rounds 3
    python benchmarks/network_speed.py --model simplecnn '{}' '{"width": 0.5}'   # M5 at full and half width
    python benchmarks/network_speed.py '{}' '{"model": "simplecnn", "width": 0.25}'  # another family against the cnn

Each variant is a JSON object of params that replace the default params of --model (`{}` is the
default; the first is the baseline); a variant holding "model" times that family's default with its
other keys over it. Printed: each round's images per second of one process, training and prediction, then
each variant's median ratio to the first (above 1: faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="JSON objects of params, the first the baseline")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="fast", help="the plans' precision (default fast)")
    parser.add_argument("--model", default="cnn", help="the Keras family whose networks are timed (default cnn)")
    args = parser.parse_args()

    from kaggle_digits import models, planner
    from kaggle_digits import speed as machine_speed
    from kaggle_digits.errors import UserError
    from kaggle_digits.models import hardware

    variants = [json.loads(v) for v in args.variants]
    if not all(isinstance(v, dict) for v in variants):
        parser.error("each variant is a JSON object of params")
    families = [str(v.pop("model", args.model)) for v in variants]
    for family in dict.fromkeys(families):
        try:
            if not models.uses_tensorflow(models.get(family)):
                parser.error(f"model {family}: not a Keras family; the speed measurement times Keras fits")
        except UserError as error:
            parser.error(str(error))
    policy = hardware.configure(args.precision)
    jobs = hardware.default_fold_jobs(planner.PLAN_FOLDS)
    print(f"{policy}, {jobs} processes at once, {machine_speed.CALIBRATION_IMAGES:,} images", flush=True)
    speeds: list[list[tuple[float, float]]] = [[] for _ in variants]
    for round_ in range(1, args.rounds + 1):
        for k, (changes, family) in enumerate(zip(variants, families)):
            speed = machine_speed.calibrate(policy, "benchmark", jobs, changes=changes, model=family)
            speeds[k].append((speed.train_per_s, speed.predict_per_s))
            print(
                f"round {round_}: {family} {json.dumps(changes):<40} train {speed.train_per_s:7.0f}  "
                f"predict {speed.predict_per_s:7.0f} images/s per process",
                flush=True,
            )
    print(f"\n{'variant':<50} {'train':>8} {'predict':>8}  (median ratio to the first)")
    for changes, family, seen in zip(variants, families, speeds):
        train = statistics.median(s[0] / b[0] for s, b in zip(seen, speeds[0]))
        predict = statistics.median(s[1] / b[1] for s, b in zip(seen, speeds[0]))
        print(f"{family + ' ' + json.dumps(changes):<50} {train:7.2f}x {predict:7.2f}x")


if __name__ == "__main__":
    main()
