"""Does mixed_bfloat16 cost accuracy? float32 and mixed_bfloat16 CNNs trained side by side over several seeds.

For each seed, the same CNN (the default cnn, with augmentation, `--epochs` epochs) is trained once in
float32 and once in mixed_bfloat16 on the first `--train` rows of the offline mirror's train.csv and
scored on the next `--val` rows (held-out train rows: the test labels play no part in this choice).
Prints each pair, the mean paired difference with its standard error, and the speed of each precision
(median seconds per epoch; the two alternate, so machine load hits both alike).

    python benchmarks/precision.py                          # 4 seeds, ~20 minutes on a quiet 2-core CPU
    python benchmarks/precision.py --seeds 2 --epochs 3     # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from kaggle_digits.data import dataset as data
from kaggle_digits.models import (
    cnn,  # noqa: E402
    hardware,
)

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "mixed_bfloat16")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=12_000, help="training rows (default 12000)")
    parser.add_argument("--val", type=int, default=8_000, help="held-out rows scored (default 8000)")
    args = parser.parse_args(argv)

    X, y = data.load_mnist(REPO / "data" / "mnist")
    train_rows, _ = data.mirror_split(len(X))  # the mirror's train.csv rows, in its order
    X, y = X[train_rows], y[train_rows]
    X_fit, y_fit = X[: args.train], y[: args.train]
    X_val, y_val = X[args.train : args.train + args.val], y[args.train : args.train + args.val]
    params = cnn.SPEC.default_params(augment=True)
    print(f"machine: {hardware.detect().describe()}")
    print(f"default cnn with augmentation, {args.epochs} epochs on {len(X_fit):,} rows, scored on {len(X_val):,}")

    accuracy: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    epoch_seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for seed in range(args.seeds):
        order = PRECISIONS if seed % 2 == 0 else PRECISIONS[::-1]
        for precision in order:
            hardware.configure(precision)
            marks: list[float] = []
            started = time.perf_counter()
            result = cnn.SPEC.fit(
                params,
                X_fit,
                y_fit,
                max_epochs=args.epochs,
                seed=seed,
                on_epoch=lambda *_, marks=marks: marks.append(time.perf_counter()),
                verbose=False,
            )
            acc = float((cnn.SPEC.predict_proba(result.model, X_val).argmax(axis=1) == y_val).mean())
            accuracy[precision].append(acc)
            epoch_seconds[precision].extend(np.diff(marks).tolist())  # the first epoch (tracing) is left out
            print(f"seed {seed} {precision:15} accuracy {acc:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)

    diffs = np.array(accuracy["mixed_bfloat16"]) - np.array(accuracy["float32"])
    se = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    print()
    for precision in PRECISIONS:
        accs = accuracy[precision]
        spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
        print(
            f"{precision:15} mean accuracy {statistics.mean(accs):.4f}{spread}   "
            f"median {statistics.median(epoch_seconds[precision]):.1f} s/epoch"
        )
    speed = statistics.median(epoch_seconds["float32"]) / statistics.median(epoch_seconds["mixed_bfloat16"])
    print(f"bf16 - float32: {diffs.mean():+.4f} ± {se:.4f} (mean paired difference ± SE); bf16 speed {speed:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
