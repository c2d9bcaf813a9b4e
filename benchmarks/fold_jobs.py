"""Folds side by side: training images per second of the default cnn in one process using every core
(how folds ran before --fold-jobs) against one process per core at once (--fold-jobs N), in turn.

    python benchmarks/fold_jobs.py                       # 2 rounds, 12,000 images, 3 epochs, bf16, augmented
    python benchmarks/fold_jobs.py --images 31500 --rounds 1 --precision float32

Each variant is a real cv fit of the same network on the same images in fresh processes (spawned by
kaggle_digits.search.processes); the speed of a process is its images over the median of its later
epochs (the first builds the graph). Printed: each round's images per second of both variants, and the
median ratio (one process per core over one process on every core).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _speed(images: int, epochs: int, precision: str, augment: bool, report) -> float:
    """Images per second of one fit in this (child) process."""
    import numpy as np

    from kaggle_digits.data import load_train
    from kaggle_digits.models import cnn

    X, y = load_train(Path(__file__).resolve().parents[1] / "data" / "train.csv")
    X, y = X[:images].reshape(-1, 28, 28), y[:images]
    ends: list[float] = []
    params = {**cnn.SPEC.default_params(augment), "epochs": epochs}
    cnn.SPEC.fit(params, X, y, max_epochs=epochs, on_epoch=lambda e, m: ends.append(time.monotonic()), verbose=False)
    return images / float(np.median(np.diff(ends)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--no-augment", action="store_true")
    args = parser.parse_args()

    from kaggle_digits.models import hardware
    from kaggle_digits.search import processes

    cores = hardware.thread_budget()
    task_args = (args.images, args.epochs, args.precision, not args.no_augment)
    ratios = []
    for r in range(args.rounds):
        one = processes.run([processes.Task(_speed, task_args, "one process")], 1, policy=args.precision)
        many = processes.run(
            [processes.Task(_speed, task_args, f"process {k + 1}") for k in range(cores)], cores, policy=args.precision
        )
        ratios.append(sum(many) / one[0])
        print(
            f"round {r + 1}: 1 process x {cores} threads {one[0]:.0f} images/s; {cores} processes x 1 thread "
            f"{' + '.join(f'{s:.0f}' for s in many)} = {sum(many):.0f} images/s; ratio {ratios[-1]:.2f}",
            flush=True,
        )
    print(f"median ratio ({cores} processes at once / 1 process): {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
