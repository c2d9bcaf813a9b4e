"""Time a `tune` preset on the full data and print its best CV accuracy against the preset's target.

    python benchmarks/tune_presets.py                                  # cnn --preset quick
    python benchmarks/tune_presets.py --model cnn --preset standard --augment
    python benchmarks/tune_presets.py --model mlp --preset quick -- --seed 3   # extra tune options after --

Runs `python scripts/tune.py --model M --preset P [--augment] [extra]` as a fresh study in a temporary runs
folder (kept with --keep), on --data-dir (default data/: run `python scripts/download.py` first), and
prints the wall time, the CPU time, the best trial's CV accuracy ± std and the preset's targets.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

import _timed  # noqa: E402  (benchmarks/_timed.py)

from kaggle_digits.search import runs

# (model, preset, augment) -> (seconds at most, best CV accuracy at least); None = no target.
TARGETS = {
    ("cnn", "quick", False): (300, 0.990),
    ("cnn", "standard", True): (None, 0.996),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--data-dir", default=str(CHECKOUT / "data"))
    parser.add_argument("--keep", action="store_true", help="keep the runs folder (its path is printed)")
    parser.add_argument("extra", nargs="*", help="more tune options, after --")
    args = parser.parse_args()
    if not (Path(args.data_dir) / "train.csv").exists():
        print(f"{args.data_dir}/train.csv not found: run `python scripts/download.py` first", file=sys.stderr)
        return 2

    runs_dir = Path(tempfile.mkdtemp(prefix="tune-preset-"))
    command = ["scripts/tune.py", "--model", args.model, "--preset", args.preset]
    command += ["--augment"] if args.augment else []
    command += ["--data-dir", args.data_dir, "--runs-dir", str(runs_dir), *args.extra]
    code, seconds = _timed.run(command)
    trials = runs.list_trials(runs_dir)
    print(f"{len(trials)} finished trials")
    if trials:
        best = trials[0]
        print(f"best CV accuracy {best.cv_accuracy:.4f} ± {best.cv_std:.4f} ({best.name}, {best.model})")
        print("default trial: " + ", ".join(f"{t.cv_accuracy:.4f}" for t in trials if t.number == 0))
    target = TARGETS.get((args.model, args.preset, args.augment))
    if target and trials:
        max_seconds, min_cv = target
        if max_seconds:
            verdict = "met" if seconds <= max_seconds else "missed"
            print(f"time target {max_seconds} s: {verdict} ({seconds / max_seconds:.2f} of the budget)")
        verdict = "met" if trials[0].cv_accuracy >= min_cv else "missed"
        print(f"CV target {min_cv}: {verdict}")
    if args.keep:
        print(f"runs kept in {runs_dir}")
    else:
        import shutil

        shutil.rmtree(runs_dir)
    return code


if __name__ == "__main__":
    sys.exit(main())
