"""Training throughput (images/s) of our CNN against a plain Keras `model.fit` of the same network.

Candidate: `cnn.SPEC.fit` with the public recipe's parameters (batch 64, rotation 10 / zoom 0.1 /
shift 0.1), exactly as cross-validation runs it (precision from `--precision`, default auto).
Baseline ("plain Keras"): the same architecture built from Keras' own layers (Conv2D, Keras'
BatchNormalization, ReLU, Dropout, Dense) in float32, trained by a plain `model.fit` with Keras' Adam on
a float32 NumPy array, with augmentation the plain Keras 3 way: RandomRotation, RandomZoom and
RandomTranslation layers (fill_mode="constant") in front of the network; same batch size, same images.
A second reference ("plain fit, our layers") is the same plain float32 fit of `cnn.build`, i.e. with our
fused batch norm: the candidate's ratio to it is what precision, input pipeline and optimizer add.

All sides run in this one process, alternating `--rounds` times; each run trains `--epochs` epochs on
`--images` images and the first epoch (graph tracing) is not timed. Timing on a shared 2-core machine
is noisy, so the figures are medians over all timed epochs. Also measured without augmentation (all
sides unaugmented).

    python benchmarks/throughput.py                  # ~12 minutes on a quiet 2-core CPU
    python benchmarks/throughput.py --rounds 2 --images 3200   # a quick look
    python benchmarks/throughput.py --precision auto,fast   # one candidate per precision
"""

from __future__ import annotations

import argparse
import resource
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
from kaggle_digits.models.keras_common import keras  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Clock:
    """Epoch-end timestamps (wall and process CPU seconds)."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def tick(self, *_args) -> None:
        self.marks.append((time.perf_counter(), _cpu_seconds()))

    def epochs(self, n_images: int) -> list[tuple[float, float]]:
        """(images/s, cores busy) of each epoch after the first."""
        return [(n_images / (t2 - t1), (c2 - c1) / (t2 - t1)) for (t1, c1), (t2, c2) in zip(self.marks, self.marks[1:])]


class _KerasClock(keras.callbacks.Callback):
    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock = clock

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.clock.tick()


PLAIN = "plain Keras"
OUR_LAYERS = "plain fit, our layers"


def baseline(params: dict, X: np.ndarray, y: np.ndarray, epochs: int, seed: int, our_layers: bool) -> _Clock:
    """A plain float32 Keras model.fit of the same network (from Keras' layers, or with `our_layers` from
    cnn.build's), with Random* layers in front when `params` has augmentation magnitudes. Keras'
    defaults otherwise (Adam, jit_compile="auto", steps_per_execution=1)."""
    hardware.configure("float32")
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(shape=(28, 28, 1))]
    if "rotation" in params:
        layers += [
            keras.layers.RandomRotation(params["rotation"] / 360.0, fill_mode="constant"),
            keras.layers.RandomZoom(params["zoom"], fill_mode="constant"),
            keras.layers.RandomTranslation(params["shift"], params["shift"], fill_mode="constant"),
        ]
    network = cnn.build(params) if our_layers else cnn.build(params, batchnorm_layer=keras.layers.BatchNormalization)
    model = keras.Sequential([*layers, network])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock = _Clock()
    model.fit(
        X.astype(np.float32)[..., None],
        y,
        batch_size=params["batch_size"],
        epochs=epochs,
        callbacks=[_KerasClock(clock)],
        verbose=0,
    )
    return clock


def candidate(params: dict, X: np.ndarray, y: np.ndarray, epochs: int, precision: str, seed: int) -> tuple[_Clock, str]:
    """cnn.SPEC.fit as cross-validation runs it."""
    policy = hardware.configure(precision)
    clock = _Clock()
    cnn.SPEC.fit(params, X, y, max_epochs=epochs, seed=seed, on_epoch=clock.tick, verbose=False)
    return clock, policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6400, help="training images per epoch (default 6400)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not timed (default 3)")
    parser.add_argument("--rounds", type=int, default=4, help="baseline/candidate alternations (default 4)")
    parser.add_argument(
        "--precision",
        default="auto",
        help=f"the candidate's precision; several, comma-separated, make one candidate each ({', '.join(hardware.PRECISIONS)})",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    precisions = args.precision.split(",")
    for precision in precisions:
        if precision not in hardware.PRECISIONS:
            parser.error(f"--precision {precision!r}: choose from {', '.join(hardware.PRECISIONS)}")

    X, y = data.load_mnist(REPO / "data" / "mnist")
    X, y = X[: args.images], y[: args.images]
    print(f"machine: {hardware.detect().describe()}")
    print(f"{args.images} images x {args.epochs - 1} timed epochs x {args.rounds} rounds, batch 64")
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    policies: dict[str, str] = {}
    sides = [PLAIN, OUR_LAYERS, *precisions]
    for round_number in range(1, args.rounds + 1):
        for augmented in (True, False):
            params = cnn.SPEC.default_params(augment=augmented)
            # Alternate the order so no side always runs in the warmer (or busier) slot.
            order = sides if round_number % 2 else sides[::-1]
            for side in order:
                started = time.perf_counter()
                if side in (PLAIN, OUR_LAYERS):
                    clock = baseline(params, X, y, args.epochs, args.seed + round_number, side == OUR_LAYERS)
                else:
                    clock, policies[side] = candidate(params, X, y, args.epochs, side, args.seed + round_number)
                epochs = clock.epochs(args.images)
                results.setdefault((side, augmented), []).extend(epochs)
                rates = " ".join(f"{rate:,.0f}" for rate, _ in epochs)
                name = side if side in (PLAIN, OUR_LAYERS) else f"ours {side}"
                print(
                    f"round {round_number}/{args.rounds} {'aug' if augmented else 'no-aug':6} {name:22}: "
                    f"{rates} images/s  ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )

    # Images per CPU-second: the work each side does per image, less sensitive than wall time to how
    # much of the machine other processes leave us.
    def medians(side: str, augmented: bool) -> tuple[float, float, float]:
        timings = results[(side, augmented)]
        return (
            statistics.median(r for r, _ in timings),
            statistics.median(c for _, c in timings),
            statistics.median(r / c for r, c in timings),
        )

    for precision in precisions:
        print(f"\ncandidate: ours, --precision {precision} (policy {policies[precision]})")
        for reference in (PLAIN, OUR_LAYERS):
            print(
                f"  against {reference + ':':24}{'baseline images/s':>18}{'candidate images/s':>21}{'ratio':>8}"
                "   cores busy (base / cand)   images per CPU-second (base / cand, ratio)"
            )
            for augmented in (True, False):
                base_rate, base_cores, base_work = medians(reference, augmented)
                cand_rate, cand_cores, cand_work = medians(precision, augmented)
                print(
                    f"  {'aug' if augmented else 'no-aug':32}{base_rate:>18,.0f}{cand_rate:>21,.0f}"
                    f"{cand_rate / base_rate:>7.2f}x   {base_cores:.2f} / {cand_cores:.2f}"
                    f"{'':14}{base_work:,.0f} / {cand_work:,.0f}, {cand_work / base_work:.2f}x"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
