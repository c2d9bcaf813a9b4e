"""`download`: put train.csv / test.csv / sample_submission.csv in the data folder.

Sources: a Kaggle kernel's input folder, the Kaggle API, a zip downloaded by hand, or the offline
mirror built from the bundled MNIST. Files are staged, validated, then moved into place, and a
manifest records what this toolkit wrote so that it never overwrites a user's own files.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import data, io, paths
from .errors import UserError
from .io import read_json, write_json

HELP = "get the competition's CSV files (Kaggle kernel, Kaggle API, a zip, or the offline MNIST mirror)"
MANIFEST = ".kaggle-digits.json"
COMPETITION_FILES = ("train.csv", "test.csv", "sample_submission.csv")
RULES_URL = "https://www.kaggle.com/competitions/digit-recognizer/rules"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        choices=["auto", "kaggle", "zip", "mnist"],
        default="auto",
        help="auto (default): Kaggle kernel input, else the Kaggle API when credentials exist, else the "
        "offline mirror from the bundled MNIST",
    )
    parser.add_argument("--zip", type=Path, help="digit-recognizer.zip downloaded by hand (with --source zip)")
    parser.add_argument("--force", action="store_true", help="fetch again even if valid files are present")
    parser.add_argument("--verify", action="store_true", help="only validate the files already present")


def run(args: argparse.Namespace) -> int:
    data_dir: Path = args.paths.data_dir
    if args.verify:
        return _verify(data_dir)
    if args.zip is not None and args.source not in ("zip", "auto"):
        raise UserError(f"--zip goes with --source zip, not --source {args.source}")
    source = _choose_source(args)
    manifest = _read_manifest(data_dir)
    if not args.force and _present_and_valid(data_dir, manifest):
        print(f"{data_dir}: train.csv and test.csv already present and valid (use --force to fetch again)")
        _summary(data_dir, manifest.get("source", "existing files"))
        return 0
    _check_overwrite(data_dir, manifest)
    data_dir.mkdir(parents=True, exist_ok=True)
    # A full disk names data_dir, not the staging folder (removed with everything in it).
    with io.writing_to(data_dir), tempfile.TemporaryDirectory(prefix=".staging-", dir=data_dir) as tmp:
        staging = Path(tmp)
        if source == "kernel":
            print(f"copying the competition's files from {paths.kaggle_input_dir()}", flush=True)
            for name in COMPETITION_FILES:
                src = paths.kaggle_input_dir() / name
                if src.exists():
                    shutil.copyfile(src, staging / name)
        elif source == "kaggle":
            from . import kaggle_api

            print("downloading digit-recognizer.zip with the Kaggle API", flush=True)
            zip_path = kaggle_api.download_competition_zip(data_dir, force=args.force)
            _extract(zip_path, staging)
        elif source == "zip":
            _extract(args.zip, staging)
        else:
            print(
                f"building the offline mirror from MNIST in {args.paths.mnist_dir} (seed {data.MIRROR_SEED})",
                flush=True,
            )
            data.write_mirror(args.paths.mnist_dir, staging)
        _install(staging, data_dir, manifest, source)
    _summary(data_dir, source)
    return 0


def _choose_source(args: argparse.Namespace) -> str:
    if args.source == "zip" or (args.source == "auto" and args.zip is not None):
        if args.zip is None:
            raise UserError("--source zip needs --zip PATH (the digit-recognizer.zip you downloaded)")
        return "zip"
    if args.source != "auto":
        return args.source
    if (paths.kaggle_input_dir() / "train.csv").exists():
        return "kernel"
    from . import kaggle_api

    if kaggle_api.has_credentials():
        return "kaggle"
    print(
        "no Kaggle credentials found: using the offline mirror built from the bundled MNIST "
        "(same 70,000 images; for the real files add credentials and run --source kaggle --force)"
    )
    return "mnist"


def _extract(zip_path: Path, staging: Path) -> None:
    zip_path = Path(zip_path)
    if not zip_path.exists():
        raise UserError(f"{zip_path}: file not found")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = {Path(name).name: name for name in archive.namelist()}
            for name in ("train.csv", "test.csv"):
                if name not in members:
                    raise UserError(f"{zip_path}: no {name} inside (is this digit-recognizer.zip?)")
            for name in COMPETITION_FILES:
                if name in members:
                    with archive.open(members[name]) as src, open(staging / name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile:
        raise UserError(f"{zip_path}: not a zip file") from None


def _install(staging: Path, data_dir: Path, manifest: dict, source: str) -> None:
    """Validate staged files, then move them into data_dir and record them in the manifest."""
    data.load_train(staging / "train.csv")
    data.load_test(staging / "test.csv")
    written = {}
    for path in sorted(staging.iterdir()):
        written[path.name] = data.sha256(path)
    files = dict(manifest.get("files", {}))
    # A solution.csv from an earlier mirror would score real Kaggle test rows against wrong labels.
    stale_solution = data_dir / "solution.csv"
    if "solution.csv" not in written and stale_solution.exists() and _ours(stale_solution, files):
        stale_solution.unlink()
        files.pop("solution.csv", None)
    for name in written:
        (staging / name).replace(data_dir / name)
    files.update(written)
    write_json(data_dir / MANIFEST, {"source": source, "files": files})


def _read_manifest(data_dir: Path) -> dict:
    path = data_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = read_json(path)
    except ValueError:
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _ours(path: Path, files: dict) -> bool:
    """True when this toolkit wrote `path` and it is unchanged since."""
    return files.get(path.name) is not None and path.exists() and data.sha256(path) == files[path.name]


def _check_overwrite(data_dir: Path, manifest: dict) -> None:
    files = manifest.get("files", {})
    for name in (*COMPETITION_FILES, "solution.csv"):
        path = data_dir / name
        if path.exists() and not _ours(path, files):
            raise UserError(
                f"{path} exists and was not written by kaggle-digits (or was changed since): "
                "move it away or choose another --data-dir; it is never overwritten"
            )


def _present_and_valid(data_dir: Path, manifest: dict) -> bool:
    train, test = data_dir / "train.csv", data_dir / "test.csv"
    if not (train.exists() and test.exists()):
        return False
    files = manifest.get("files", {})
    if _ours(train, files) and _ours(test, files):
        return True
    try:
        data.load_train(train)
        data.load_test(test)
    except UserError:
        return False
    return True


def _verify(data_dir: Path) -> int:
    for name in ("train.csv", "test.csv"):
        if not (data_dir / name).exists():
            raise UserError(f"{data_dir / name} not found: run `python scripts/download.py` first")
    X_train, y_train = data.load_train(data_dir / "train.csv")
    X_test = data.load_test(data_dir / "test.csv")
    counts = np.bincount(y_train, minlength=10)
    print(f"{data_dir / 'train.csv'}: {len(X_train):,} rows, valid; labels 0-9: {' '.join(map(str, counts))}")
    print(f"{data_dir / 'test.csv'}: {len(X_test):,} rows, valid")
    _summary(data_dir, _read_manifest(data_dir).get("source", "existing files"))
    return 0


def _summary(data_dir: Path, source: str) -> None:
    print(f"source: {source}")
    for name in (*COMPETITION_FILES, "solution.csv"):
        path = data_dir / name
        if path.exists():
            with open(path, "rb") as f:
                rows = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1
            print(f"  {path}  {rows:>6,} rows  sha256 {data.sha256(path)[:16]}")
    if (data_dir / "solution.csv").exists():
        print("  (solution.csv holds the mirror's test labels: only the local scorer reads it)")
