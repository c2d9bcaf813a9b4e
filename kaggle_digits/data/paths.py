"""Where data/, runs/, submissions/ and reports/ live: the one place paths are resolved.

Order of precedence: command-line option, environment variable, Kaggle kernel layout, default
(relative to the current directory, which is the checkout for `python scripts/...`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
CHECKOUT_DIR = PACKAGE_DIR.parent
BUNDLED_MNIST_DIR = CHECKOUT_DIR / "data" / "mnist"

ENV_DIRS = {
    "data_dir": "KAGGLE_DIGITS_DATA_DIR",
    "runs_dir": "KAGGLE_DIGITS_RUNS_DIR",
    "submissions_dir": "KAGGLE_DIGITS_SUBMISSIONS_DIR",
    "reports_dir": "KAGGLE_DIGITS_REPORTS_DIR",
}
DEFAULT_DIRS = {
    "data_dir": "data",
    "runs_dir": "runs",
    "submissions_dir": "submissions",
    "reports_dir": "reports",
}


def kaggle_root() -> Path:
    """Root of a Kaggle kernel's file system (`/kaggle`); `KAGGLE_DIGITS_KAGGLE_ROOT` moves it for tests."""
    return Path(os.environ.get("KAGGLE_DIGITS_KAGGLE_ROOT", "/kaggle"))


def kaggle_input_dir() -> Path:
    """Where a Kaggle kernel finds the competition's files."""
    return kaggle_root() / "input" / "digit-recognizer"


def kaggle_working_dir() -> Path:
    """A Kaggle kernel's writable output folder."""
    return kaggle_root() / "working"


def in_kaggle_kernel() -> bool:
    """True inside a Kaggle kernel (or a folder laid out like one, for tests)."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE"):
        return True
    return kaggle_input_dir().is_dir() and kaggle_working_dir().is_dir()


@dataclass(frozen=True)
class Paths:
    """The folders every command reads and writes."""

    data_dir: Path
    runs_dir: Path
    submissions_dir: Path
    reports_dir: Path

    @property
    def train_csv(self) -> Path:
        return self.data_dir / "train.csv"

    @property
    def test_csv(self) -> Path:
        return self.data_dir / "test.csv"

    @property
    def sample_submission_csv(self) -> Path:
        return self.data_dir / "sample_submission.csv"

    @property
    def solution_csv(self) -> Path:
        """Hidden test labels of the offline mirror: read only by the local scorer."""
        return self.data_dir / "solution.csv"

    @property
    def mnist_dir(self) -> Path:
        """The bundled MNIST IDX files: `<data-dir>/mnist` when present, else the checkout's."""
        local = self.data_dir / "mnist"
        return local if (local / "train-images-idx3-ubyte.gz").exists() else BUNDLED_MNIST_DIR

    @property
    def history_csv(self) -> Path:
        return self.submissions_dir / "history.csv"


def resolve(**overrides: str | os.PathLike | None) -> Paths:
    """Build Paths from explicit values (None = not given), the environment and the defaults."""
    unknown = set(overrides) - set(DEFAULT_DIRS)
    if unknown:
        raise TypeError(f"unknown path names: {sorted(unknown)}")
    kernel = in_kaggle_kernel()
    dirs = {}
    for name, default in DEFAULT_DIRS.items():
        value = overrides.get(name) or os.environ.get(ENV_DIRS[name])
        if not value:
            value = kaggle_working_dir() / default if kernel else default
        dirs[name] = Path(value).expanduser()
    return Paths(**dirs)
