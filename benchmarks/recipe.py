"""The public recipe itself on the offline mirror's 28,000 test rows: 15 CNNs, each trained for 45 augmented
epochs on its own random 90% of train.csv, their test probabilities averaged, scored by the local scorer.

The recipe scored 0.99757 on Kaggle's public leaderboard (about 7,000 of the test rows); the targets of
the long budgets are taken from that score. This says what the recipe scores on the 28,000 rows the
toolkit's own runs are scored on, and how its ensemble grows with each net.

Each net k trains on a stratified 90% split with random_state k (the other 10% scores it alone), with seed
k, two at a time (one process each, as the pipeline's folds run). Its test probabilities are saved in
--out as net-<k>.npy beside net-<k>.json (its held-out accuracy, seconds, machine): a run stopped part way
is continued by the same command, which trains only the nets not yet saved (on any machine; the seconds
are then that machine's). The network is the cnn's default params with `--params` over them, by default
the recipe's own (strided convs, dropout 0.4, Adam 1e-3 x 0.95**epoch, conv-ReLU-BatchNorm).

    python benchmarks/recipe.py --data-dir data --out runs/recipe                 # all 15: about 2 h on a BF16 CPU
    python benchmarks/recipe.py --data-dir data --out runs/recipe --nets 4        # the first 4 (or 4 more of them)
    python benchmarks/recipe.py --data-dir data --out runs/default --params '{}'  # the toolkit's default net instead
    python benchmarks/recipe.py --data-dir data --out runs/recipe --reference benchmarks/reference/recipe.csv

Printed as each net ends: its held-out and test accuracy, and the local score of the nets saved so far
averaged; at the end, the score of the first n nets for each n, with its 95% interval, the public score for
reference, and the saved nets averaged compared row by row with the recipe's reference labels (--reference,
else benchmarks/reference/recipe.csv; benchmarks/_paired.py: McNemar's exact test), or the command that
makes them.

--reference PATH writes the labels of the recipe's 15 nets averaged to PATH (a submission file, ImageId,Label,
of the mirror's 28,000 test rows) once all 15 are saved, training the missing ones first: the reference
labels that the benchmarks compare their submissions with. It refuses another setting than the recipe's,
an existing file, and a call that would leave some of the 15 nets unsaved (`--nets 0` writes the file from
nets already saved).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

import _paired  # (benchmarks/_paired.py)

RECIPE = {"downsample": "stride", "dropout": 0.4, "schedule": "exponential", "lr": 1e-3}
PUBLIC_SCORE = 0.99757
NETS = 15


def fit_net(k: int, params: dict, epochs: int, precision: str, data_dir: str, report) -> dict:
    """Train net k in a child process; returns its held-out accuracy, seconds and test probabilities."""
    from kaggle_digits.models import hardware

    policy = hardware.configure(precision)
    from sklearn.model_selection import train_test_split

    from kaggle_digits.data.dataset import load_dataset
    from kaggle_digits.models import cnn

    data = load_dataset(data_dir)
    X_fit, X_val, y_fit, y_val = train_test_split(
        data.X_train, data.y_train, test_size=0.1, stratify=data.y_train, random_state=k
    )
    started = time.monotonic()

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        report(epoch + 1, metrics.get("loss", float("nan")), time.monotonic() - started)

    fitted = cnn.SPEC.fit(params, X_fit, y_fit, max_epochs=epochs, seed=k, on_epoch=on_epoch, verbose=False)
    seconds = time.monotonic() - started
    held_out = float((cnn.SPEC.predict_proba(fitted.model, X_val).argmax(axis=1) == y_val).mean())
    test = cnn.SPEC.predict_proba(fitted.model, data.X_test).astype(np.float32)
    return {
        "held_out": held_out,
        "seconds": seconds,
        "epochs": fitted.epochs,
        "images": len(y_fit),
        "policy": str(policy),
        "machine": hardware.detect().describe(),
        "test": test,
    }


def score(proba: np.ndarray, solution: Path):
    """The local scorer's Score of the labels these probabilities give."""
    from kaggle_digits.blend import submission

    with tempfile.TemporaryDirectory() as tmp:
        path = submission.write_submission(Path(tmp) / "recipe.csv", proba.argmax(axis=1))
        return submission.score_local(path, solution)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder of the nets' saved test probabilities")
    parser.add_argument("--nets", type=int, default=NETS, help=f"nets to train in this call (default {NETS})")
    parser.add_argument("--total", type=int, default=NETS, help=f"nets in the whole ensemble (default {NETS})")
    parser.add_argument("--epochs", type=int, default=45)
    parser.add_argument("--params", default=json.dumps(RECIPE), help="JSON over the cnn's default params")
    parser.add_argument(
        "--precision", default="fast", help="each net's precision (default fast: bf16 on a CPU with it)"
    )
    parser.add_argument("--data-dir", type=Path, default=CHECKOUT / "data")
    parser.add_argument("--jobs", type=int, default=2, help="nets trained at once (default 2)")
    parser.add_argument(
        "--reference", type=Path, help="write the 15 nets' averaged labels here once all are saved (see above)"
    )
    args = parser.parse_args()

    solution = args.data_dir / "solution.csv"
    for name in ("train.csv", "test.csv", "solution.csv"):
        if not (args.data_dir / name).exists():
            parser.error(f"--data-dir {args.data_dir}: no {name} (build the mirror: python scripts/download.py)")
    try:
        overrides = json.loads(args.params)
    except json.JSONDecodeError as error:
        parser.error(f"--params: not JSON ({error})")
    if not isinstance(overrides, dict):
        parser.error(f"--params: a JSON object of cnn params, not {args.params}")
    if args.reference:
        refuse_reference(args, overrides)

    from kaggle_digits.models import cnn
    from kaggle_digits.search import processes

    params = cnn.SPEC.default_params(augment=True) | overrides
    setting = {"params": params, "epochs": args.epochs, "precision": args.precision}
    args.out.mkdir(parents=True, exist_ok=True)
    saved = saved_nets(args.out)
    for k in saved:
        recorded = json.loads((args.out / f"net-{k}.json").read_text())["setting"]
        if recorded != json.loads(json.dumps(setting)):
            parser.error(f"{args.out}/net-{k}.json was trained with another setting: use another --out")
    todo = [k for k in range(args.total) if k not in saved][: args.nets]
    print(f"{len(saved)} nets saved in {args.out}; training {len(todo)}: {json.dumps(overrides)}, {args.epochs} epochs")

    def on_report(i: int, body: tuple) -> None:
        epoch, loss, seconds = body
        if epoch % 5 == 0 or epoch == args.epochs:
            print(f"  net {todo[i]}: epoch {epoch}/{args.epochs}, loss {loss:.4f}, {seconds:.0f} s", flush=True)

    def on_done(i: int, result: dict) -> None:
        k = todo[i]
        np.save(args.out / f"net-{k}.npy", result.pop("test"))
        (args.out / f"net-{k}.json").write_text(json.dumps(result | {"setting": setting}, indent=1))
        done = saved_nets(args.out)
        alone = score(np.load(args.out / f"net-{k}.npy"), solution)
        together = score(sum(np.load(args.out / f"net-{j}.npy") for j in done), solution)
        print(
            f"net {k}: held-out {result['held_out']:.5f}, test {alone.accuracy:.5f}, {result['seconds']:.0f} s "
            f"({result['policy']}); the {len(done)} saved averaged: {together}",
            flush=True,
        )

    tasks = [
        processes.Task(fit_net, (k, params, args.epochs, args.precision, str(args.data_dir)), f"net {k}") for k in todo
    ]
    processes.run(tasks, args.jobs, on_report=on_report, on_done=on_done)

    done = saved_nets(args.out)
    records = [json.loads((args.out / f"net-{k}.json").read_text()) for k in done]
    print(f"\n{'nets':>4} {'local score':>12} {'95% interval':>15}   (the first n saved nets averaged)")
    total = np.zeros_like(np.load(args.out / f"net-{done[0]}.npy")) if done else None
    for n, k in enumerate(done, 1):
        total = total + np.load(args.out / f"net-{k}.npy")
        s = score(total, solution)
        print(f"{n:>4} {s.accuracy:12.5f} {s.ci_low:9.4f}-{s.ci_high:.4f}")
    if records:
        held = np.array([r["held_out"] for r in records])
        secs = np.array([r["seconds"] for r in records])
        print(
            f"\nnets' held-out accuracy: mean {held.mean():.5f} (min {held.min():.5f}, max {held.max():.5f}); "
            f"training {np.median(secs):.0f} s a net (median), {secs.sum() / 3600:.2f} h of process time in all"
        )
    print(f"public leaderboard score of the recipe (15 nets, about 7,000 rows): {PUBLIC_SCORE}")
    if args.reference:
        write_reference(args)
    if done:
        truth = _paired.truth(solution)
        labels = sum(np.load(args.out / f"net-{k}.npy") for k in done).argmax(axis=1)
        reference = _paired.read_reference(args.reference, rows=len(truth))
        result = None if reference is None else _paired.mcnemar(labels, reference, truth)
        print(("" if result is None else f"the {len(done)} saved nets averaged ") + _paired.line(result))
    print(f"wrote {args.out}")
    return 0


def saved_nets(out: Path) -> list[int]:
    """The k of each net-<k>.json in out, in order."""
    return sorted(int(p.stem.split("-")[1]) for p in out.glob("net-*.json"))


def refuse_reference(args: argparse.Namespace, overrides: dict) -> None:
    """Before any training: exit with one line where --reference could not be written at the end."""
    if overrides != RECIPE or args.epochs != 45 or args.total != NETS:
        sys.exit(f"recipe.py: error: --reference is the recipe's {NETS} nets x 45 epochs with its params only")
    if args.reference.exists():
        sys.exit(f"recipe.py: error: --reference {args.reference} already exists: remove it to write it again")
    missing = set(range(NETS)) - set(saved_nets(args.out))
    if len(missing) > args.nets:
        sys.exit(
            f"recipe.py: error: --reference needs all {NETS} nets: {NETS - len(missing)} saved in {args.out}, "
            f"{min(args.nets, len(missing))} to train in this call (without --nets it trains all the missing ones)"
        )


def write_reference(args: argparse.Namespace) -> None:
    """Write the labels of nets 0..14 averaged to --reference (refused with one line when one is missing)."""
    from kaggle_digits.blend import submission

    missing = sorted(set(range(NETS)) - set(saved_nets(args.out)))
    if missing:
        sys.exit(f"recipe.py: error: --reference needs all {NETS} nets: {missing} not saved in {args.out}")
    labels = sum(np.load(args.out / f"net-{k}.npy") for k in range(NETS)).argmax(axis=1)
    args.reference.parent.mkdir(parents=True, exist_ok=True)
    submission.write_submission(args.reference, labels)
    print(f"wrote the reference labels ({NETS} nets averaged, {len(labels):,} rows) to {args.reference}")


if __name__ == "__main__":
    raise SystemExit(main())
