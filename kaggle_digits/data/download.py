"""`download`: put train.csv / test.csv / sample_submission.csv in the data folder.

Sources: a Kaggle kernel's input folder, the Kaggle API, a zip downloaded by hand, or the offline
mirror built from the bundled MNIST. Files are staged, validated, then moved into place, and a
manifest records what this toolkit wrote so that it never overwrites a user's own files.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kaggle_digits import io
from kaggle_digits.data import dataset as data
from kaggle_digits.data import paths
from kaggle_digits.errors import UserError
from kaggle_digits.io import read_json, write_json
from kaggle_digits.progress import Log, silent

MANIFEST = ".kaggle-digits.json"
COMPETITION_FILES = ("train.csv", "test.csv", "sample_submission.csv")
SOURCES = ("auto", "kaggle", "zip", "mnist")


@dataclass(frozen=True)
class FileSummary:
    """A file in the data folder: its path, data rows (header not counted) and SHA-256."""

    path: Path
    rows: int
    sha256: str


@dataclass
class Fetched:
    """What `fetch` did: where the files came from, and the files now in the data folder."""

    data_dir: Path
    source: str  # kernel | kaggle | zip | mnist, or what an earlier run recorded
    already_present: bool  # valid files were there: nothing was fetched
    files: list[FileSummary]


@dataclass
class Verified:
    """The files already in the data folder, validated."""

    data_dir: Path
    train_rows: int
    test_rows: int
    label_counts: np.ndarray  # (10,) train.csv rows per label
    source: str
    files: list[FileSummary]


def fetch(
    folders: paths.Paths,
    source: str = "auto",
    zip_path: Path | None = None,
    force: bool = False,
    log: Log = silent,
) -> Fetched:
    """Put the competition's files in folders.data_dir: staged, validated, then moved into place.

    source : auto (a Kaggle kernel's input, else the Kaggle API with credentials, else the offline mirror),
    kaggle, zip (with zip_path) or mnist. Valid files already present are kept unless `force`; files the
    toolkit did not write are never overwritten (UserError).
    """
    data_dir = folders.data_dir
    if source not in SOURCES:
        raise UserError(f"--source {source}: choose one of {', '.join(SOURCES)}")
    if zip_path is not None and source not in ("zip", "auto"):
        raise UserError(f"--zip goes with --source zip, not --source {source}")
    source = choose_source(source, zip_path, log)
    manifest = _read_manifest(data_dir)
    if not force and _present_and_valid(data_dir, manifest):
        log(f"{data_dir}: train.csv and test.csv already present and valid (use --force to fetch again)")
        return Fetched(data_dir, manifest.get("source", "existing files"), True, describe(data_dir))
    _check_overwrite(data_dir, manifest)
    data_dir.mkdir(parents=True, exist_ok=True)
    # A full disk names data_dir, not the staging folder (removed with everything in it).
    with io.writing_to(data_dir), tempfile.TemporaryDirectory(prefix=".staging-", dir=data_dir) as tmp:
        staging = Path(tmp)
        if source == "kernel":
            log(f"copying the competition's files from {paths.kaggle_input_dir()}")
            for name in COMPETITION_FILES:
                src = paths.kaggle_input_dir() / name
                if src.exists():
                    shutil.copyfile(src, staging / name)
        elif source == "kaggle":
            from kaggle_digits.kaggle import api as kaggle_api

            log("downloading digit-recognizer.zip with the Kaggle API")
            _extract(kaggle_api.download_competition_zip(data_dir, force=force, log=log), staging)
        elif source == "zip":
            assert zip_path is not None  # choose_source refuses a zip source without a path
            _extract(zip_path, staging)
        else:
            log(f"building the offline mirror from MNIST in {folders.mnist_dir} (seed {data.MIRROR_SEED})")
            data.write_mirror(folders.mnist_dir, staging)
        _install(staging, data_dir, manifest, source)
    return Fetched(data_dir, source, False, describe(data_dir))


def choose_source(source: str, zip_path: Path | None, log: Log = silent) -> str:
    """The source `auto` stands for here (and a check that zip has its file)."""
    if source == "zip" or (source == "auto" and zip_path is not None):
        if zip_path is None:
            raise UserError("--source zip needs --zip PATH (the digit-recognizer.zip you downloaded)")
        return "zip"
    if source != "auto":
        return source
    if (paths.kaggle_input_dir() / "train.csv").exists():
        return "kernel"
    from kaggle_digits.kaggle import api as kaggle_api

    if kaggle_api.has_credentials():
        return "kaggle"
    log(
        "no Kaggle credentials found: using the offline mirror built from the bundled MNIST "
        "(same 70,000 images; for the real files add credentials and run --source kaggle --force)"
    )
    return "mnist"


def verify(data_dir: Path) -> Verified:
    """Validate train.csv and test.csv where they are (a bad file is a UserError naming line and column)."""
    for name in ("train.csv", "test.csv"):
        if not (data_dir / name).exists():
            raise UserError(f"{data_dir / name} not found: run `python scripts/download.py` first")
    X_train, y_train = data.load_train(data_dir / "train.csv")
    X_test = data.load_test(data_dir / "test.csv")
    counts = np.bincount(y_train, minlength=10)
    source = _read_manifest(data_dir).get("source", "existing files")
    return Verified(data_dir, len(X_train), len(X_test), counts, source, describe(data_dir))


def describe(data_dir: Path) -> list[FileSummary]:
    """The competition's files (and the mirror's solution.csv) present in data_dir."""
    return [
        FileSummary(path, data.count_rows(path), data.sha256(path))
        for path in (data_dir / name for name in (*COMPETITION_FILES, "solution.csv"))
        if path.exists()
    ]


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
