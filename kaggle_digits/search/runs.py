"""Trial artifacts on disk: `runs/<study>/trial-<n>/` — what tuning leaves for ensembles, reports, predict.

A trial folder holds:
  params.json   {"study", "trial", "model", "augment", "params", "seed", "folds", "data"}
  metrics.json  {"cv_accuracy", "cv_std", "fold_accuracies", "fit_seconds", "epochs", "n_rows", ...}
  history.json  [{"fold": k, "loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}, ...]
  oof.npy       float32 (n_rows, 10): out-of-fold probabilities, row i is train.csv row oof_rows[i]
  oof_rows.npy  int64 (n_rows,): which train.csv rows the OOF covers (all of them unless --subsample)
  test.npy      float32 (n_test, 10): test probabilities averaged over the fold models
  fold-<k>.keras | fold-<k>.joblib   the fold models, where kept
metrics.json is written last: a folder without it is an unfinished trial and is ignored.
  .kaggle-digits-written.json   which of these files the toolkit wrote (kaggle_digits.written): a trial is
                never written into a folder that holds anything else
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits import N_CLASSES, written
from kaggle_digits.errors import UserError
from kaggle_digits.io import read_json, write_json, write_npy

_FOLD_MODEL = re.compile(r"^fold-(\d+)\.[A-Za-z0-9]+$")
# The temporary file of an interrupted atomic write of one of a trial's files (kaggle_digits.io.atomic_path).
_TEMPORARY = re.compile(
    r"^\.(params\.json|history\.json|metrics\.json|oof\.npy|oof_rows\.npy|test\.npy|fold-\d+\.\w+)\."
)

METRICS_FILE = "metrics.json"


def trial_dir(runs_dir: str | os.PathLike, study: str, number: int) -> Path:
    return Path(runs_dir) / study / f"trial-{number}"


@dataclass
class TrialRun:
    """One finished trial's artifacts, loaded lazily."""

    path: Path

    @cached_property
    def info(self) -> dict[str, Any]:
        return read_json(self.path / "params.json")

    @cached_property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.path / METRICS_FILE)

    def finished_after(self, moment: float) -> bool:
        """Its metrics were written at or after `moment` (time.time()): a trial of this run, not an earlier one."""
        try:
            return (self.path / METRICS_FILE).stat().st_mtime >= moment
        except OSError:
            return False

    @property
    def study(self) -> str:
        return self.info["study"]

    @property
    def number(self) -> int:
        return int(self.info["trial"])

    @property
    def model(self) -> str:
        return self.info["model"]

    @property
    def params(self) -> dict[str, Any]:
        return self.info["params"]

    @property
    def name(self) -> str:
        """`<study>/trial-<n>`: how commands and files refer to this trial."""
        return f"{self.study}/trial-{self.number}"

    @property
    def cv_accuracy(self) -> float:
        return float(self.metrics["cv_accuracy"])

    @property
    def cv_std(self) -> float:
        return float(self.metrics.get("cv_std", 0.0))

    @cached_property
    def oof_proba(self) -> np.ndarray:
        return load_array(self.path / "oof.npy")

    @cached_property
    def oof_rows(self) -> np.ndarray:
        return load_array(self.path / "oof_rows.npy")

    @cached_property
    def test_proba(self) -> np.ndarray:
        return load_array(self.path / "test.npy")

    @cached_property
    def history(self) -> list[dict[str, Any]]:
        path = self.path / "history.json"
        return read_json(path) if path.exists() else []

    def fold_model_paths(self) -> list[Path]:
        """Saved fold models `fold-<k>.<the family's suffix>`, in fold order (empty when none were kept)."""
        found = [(int(m.group(1)), p) for p in self.path.glob("fold-*.*") if (m := _FOLD_MODEL.match(p.name))]
        return [p for _, p in sorted(found) if p.is_file()]


class ArtifactError(UserError):
    """A trial's array file is missing, truncated or damaged (commands that can, leave that trial out)."""


def load_array(path: Path) -> np.ndarray:
    """One .npy array of a trial; ArtifactError naming the file when it is missing or cannot be read whole."""
    try:
        return np.load(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path.name} is missing ({path})") from None
    except (ValueError, EOFError) as exc:
        # numpy: "Failed to read all data for array...", "cannot reshape array of size...", a bad header.
        raise ArtifactError(f"{path.name} is truncated or damaged ({path}: {str(exc).splitlines()[0]})") from None


def unusable(trial: TrialRun, test: bool = True) -> str | None:
    """Why `trial`'s OOF (and, with `test`, test) probabilities cannot be used, or None when they can.

    Checks that oof_rows.npy, oof.npy and test.npy load whole, have the shapes runs/ promises and hold
    only finite numbers."""
    try:
        rows, oof = trial.oof_rows, trial.oof_proba
        if rows.ndim != 1 or oof.shape != (len(rows), N_CLASSES):
            return f"oof.npy has shape {oof.shape}, oof_rows.npy {rows.shape}: expected ({len(rows)}, {N_CLASSES})"
        if not np.isfinite(oof).all():
            return "oof.npy holds NaN or infinite values"
        if test:
            proba = trial.test_proba
            if proba.ndim != 2 or proba.shape[1] != N_CLASSES:
                return f"test.npy has shape {proba.shape}, expected (n_test, {N_CLASSES})"
            if not np.isfinite(proba).all():
                return "test.npy holds NaN or infinite values"
    except ArtifactError as exc:
        return str(exc)
    return None


def check_trial_dir(folder: Path) -> None:
    """Refuse (UserError) to write a trial into `folder` unless it is new or holds only files the toolkit
    wrote there: never a finished trial, nor a folder of the user's (a link to one, say)."""
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise UserError(f"{folder}: a link to {os.readlink(folder)}, which does not exist: move it away")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"{folder}: is a file, expected a trial folder: move it away")
    if (folder / METRICS_FILE).exists():
        raise UserError(f"{folder} already holds a finished trial that this storage does not know: move it away")
    entries = [p for p in folder.iterdir() if p.name != written.MANIFEST and not _TEMPORARY.match(p.name)]
    theirs = [p for p in entries if not p.is_file()] + written.foreign(folder, [p for p in entries if p.is_file()])
    if theirs:
        names = sorted(p.name for p in theirs)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        link = f" (a link to {folder.resolve()})" if folder.is_symlink() else ""
        raise UserError(
            f"{folder}{link} holds files that tune did not write ({shown}): a trial is written into a folder "
            "of its own; move them away"
        )


def save_trial(
    path: Path,
    info: dict[str, Any],
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    oof_proba: np.ndarray,
    oof_rows: np.ndarray,
    test_proba: np.ndarray,
) -> TrialRun:
    """Write a finished trial's artifacts; metrics.json last, so a reader never sees half a trial. They and
    the fold models already saved in `path` are recorded as the toolkit's own (check_trial_dir)."""
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "params.json", info)
    write_json(path / "history.json", history)
    write_npy(path / "oof.npy", np.asarray(oof_proba, dtype=np.float32))
    write_npy(path / "oof_rows.npy", np.asarray(oof_rows, dtype=np.int64))
    write_npy(path / "test.npy", np.asarray(test_proba, dtype=np.float32))
    write_json(path / METRICS_FILE, metrics)
    trial = TrialRun(path)
    names = ("params.json", "history.json", "oof.npy", "oof_rows.npy", "test.npy", METRICS_FILE)
    written.record(path, [path / name for name in names] + trial.fold_model_paths())
    return trial


def load_trial(path: str | os.PathLike) -> TrialRun:
    """A finished trial folder (`runs/<study>/trial-<n>`); UserError when it is not one."""
    path = Path(path)
    if not (path / METRICS_FILE).exists() or not (path / "params.json").exists():
        raise UserError(f"{path}: not a finished trial folder (no metrics.json/params.json)")
    return TrialRun(path)


def list_studies(runs_dir: str | os.PathLike) -> list[str]:
    """Names of the studies that have at least one finished trial under runs_dir."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and any(p.glob(f"trial-*/{METRICS_FILE}")))


def list_trials(runs_dir: str | os.PathLike, studies: list[str] | None = None) -> list[TrialRun]:
    """Finished trials of the given studies (default: all; a study named twice counts once), best CV first."""
    runs_dir = Path(runs_dir)
    names = list_studies(runs_dir) if studies is None else list(dict.fromkeys(studies))
    trials = []
    for study in names:
        folder = runs_dir / study
        if not folder.is_dir():
            raise UserError(f"no study '{study}' in {runs_dir} (known: {', '.join(list_studies(runs_dir)) or 'none'})")
        trials += [TrialRun(p.parent) for p in folder.glob(f"trial-*/{METRICS_FILE}")]
    return sorted(trials, key=lambda t: (-t.cv_accuracy, t.study, t.number))
