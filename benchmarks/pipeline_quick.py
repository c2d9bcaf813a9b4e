"""Time `pipeline.py --preset quick` end to end and score it against its targets.

    python benchmarks/pipeline_quick.py                     # the README's command (1), ~6-11 minutes here
    python benchmarks/pipeline_quick.py -- --folds 2        # extra pipeline options after --

Runs `python scripts/pipeline.py --preset quick [extra]` in temporary runs/submissions/reports folders (kept
with --keep) on --data-dir (default data/; the pipeline builds the offline mirror there when it is
missing), then prints, each as a ratio to its target: the wall time against the 10-minute budget, the
local leaderboard accuracy (from data/solution.csv, read by the scorer only) against 0.992, and the gap
between the ensemble's out-of-fold accuracy and that local score against ±0.002 (CV predicts the
leaderboard).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

import _timed  # noqa: E402  (benchmarks/_timed.py)

from kaggle_digits.io import read_json  # noqa: E402

BUDGET_SECONDS = 600
MIN_LOCAL = 0.992
MAX_GAP = 0.002


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(CHECKOUT / "data"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (their path is printed)")
    parser.add_argument("extra", nargs="*", help="more pipeline options, after --")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pipeline-quick-"))
    folders = {name: work / name for name in ("runs", "submissions", "reports")}
    command = ["scripts/pipeline.py", "--preset", "quick", "--data-dir", args.data_dir]
    for name, folder in folders.items():
        command += [f"--{name}-dir", str(folder)]
    code, seconds = _timed.run(command + args.extra)
    manifests = sorted(folders["submissions"].glob("*.json"))
    if code == 0 and manifests:
        manifest = read_json(manifests[-1])
        cv = float(manifest["cv_accuracy"])
        local = (manifest.get("local_score") or {}).get("accuracy")
        print(f"time: {seconds:.0f} s = {seconds / BUDGET_SECONDS:.2f} of the {BUDGET_SECONDS} s budget")
        print(f"ensemble CV (out-of-fold) accuracy {cv:.5f}")
        if local is None:
            print("no local score: data/solution.csv is missing (real Kaggle data)")
        else:
            local = float(local)
            print(f"local leaderboard {local:.5f} = {local / MIN_LOCAL:.4f} of the target {MIN_LOCAL}")
            gap = local - cv
            print(f"local - CV = {gap:+.5f} ({abs(gap) / MAX_GAP:.2f} of the allowed ±{MAX_GAP})")
    if args.keep:
        print(f"kept in {work}")
    else:
        shutil.rmtree(work)
    return code


if __name__ == "__main__":
    sys.exit(main())
