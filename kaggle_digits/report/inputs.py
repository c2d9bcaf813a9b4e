"""What the report reads: train.csv and test.csv, the Optuna storage, the studies' best trials, the
submission's ensemble, and whose predictions a section shows (the ensemble, else the best trial).

Each input is loaded once, on first use; a missing one raises Skip with the reason, which the section
that needed it shows instead of its figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits.blend import manifest
from kaggle_digits.data import dataset as data
from kaggle_digits.data.paths import Paths
from kaggle_digits.errors import UserError
from kaggle_digits.search import listing, runs, storage


class Skip(Exception):
    """Raised inside a section or figure whose inputs are missing; the message says why."""


@dataclass
class Constituent:
    """One trial of an ensemble, as named in the submission's .json."""

    name: str  # <study>/trial-<n>
    weight: float
    trial: runs.TrialRun


@dataclass
class Ensemble:
    """A written submission and, from the .json beside it, the trials blended into it."""

    csv: Path
    info: dict[str, Any]
    constituents: list[Constituent]

    @property
    def cv_accuracy(self) -> float | None:
        value = self.info.get("cv_accuracy")
        return None if value is None else float(value)

    def oof(self) -> tuple[np.ndarray, np.ndarray]:
        """Blended out-of-fold probabilities float32 (n, 10) and the train.csv rows they cover (n,)."""
        first = self.constituents[0]
        rows = np.sort(first.trial.oof_rows)
        aligned = []
        for c in self.constituents:
            order = np.argsort(c.trial.oof_rows, kind="stable")
            if not np.array_equal(c.trial.oof_rows[order], rows):
                raise Skip(f"{c.name} and {first.name} cover different train.csv rows")
            aligned.append(c.trial.oof_proba[order])
        return manifest.blend(aligned, [c.weight for c in self.constituents]), rows


def read_ensemble(csv: Path, runs_dir: Path) -> Ensemble:
    """The submission `csv` and its constituents, from the manifest the ensemble command writes beside it."""
    path = manifest.path_for(csv)
    if not path.exists():
        raise Skip(f"{path} not found: only submissions written by `python scripts/ensemble.py` name their trials")
    try:
        read = manifest.read(path)
    except UserError as exc:
        raise Skip(str(exc)) from None
    constituents = []
    for member in read.members:
        try:
            trial = runs.load_trial(member.folder(runs_dir))
        except UserError as exc:
            raise Skip(f"constituent {member.name}: {exc}") from None
        constituents.append(Constituent(name=member.name, weight=member.weight, trial=trial))
    return Ensemble(csv=csv, info=read.info, constituents=constituents)


def newest_submission(submissions_dir: Path) -> Path | None:
    """The most recent submission CSV with an ensemble manifest beside it."""
    newest = manifest.newest(submissions_dir)
    return None if newest is None else newest.with_suffix(".csv")


@dataclass
class Subject:
    """Whose out-of-fold predictions a section shows: the submission's ensemble, else the best trial."""

    name: str
    oof: np.ndarray  # float32 (n, 10)
    rows: np.ndarray  # the train.csv rows they cover (n,)
    fingerprint: Any  # the data fingerprint of params.json
    predictor: Any = None  # a predict.predictor.Predictor, when asked for
    instead: str | None = None  # why the best trial stands in for the ensemble


class Inputs:
    """The report's inputs, read from `paths` (and `storage_url`, `trials_storage`, `artifacts`)."""

    def __init__(
        self,
        paths: Paths,
        storage_url: str,
        studies: list[str] | None = None,
        submission_file: str | os.PathLike | None = None,
        trials_storage: str | None = None,
        artifacts: str | None = None,
    ) -> None:
        """trials_storage: read trials from this storage (listing.list_trials) instead of runs_dir's folders."""
        self.paths, self.storage_url = paths, storage_url
        self.trials_storage, self.artifacts = trials_storage, artifacts
        self.requested_studies = studies
        self.submission_file = Path(submission_file) if submission_file else None

    @cached_property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.paths.train_csv.exists():
            raise Skip(f"{self.paths.train_csv} not found: run `python scripts/download.py` (or pass --data-dir)")
        return data.load_train(self.paths.train_csv)

    @cached_property
    def test_images(self) -> np.ndarray:
        if not self.paths.test_csv.exists():
            raise Skip(f"{self.paths.test_csv} not found: run `python scripts/download.py` (or pass --data-dir)")
        return data.load_test(self.paths.test_csv)

    @cached_property
    def optuna_storage(self) -> Any:
        """The Optuna storage, opened for reading; Skip when its file does not exist (opening one would
        create an empty one) or it cannot be opened."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        path = storage.local_file(self.storage_url)
        if path is not None and not path.exists():
            raise Skip(f"no Optuna storage at {path}: run `python scripts/tune.py` first (or pass --storage URL)")
        try:
            return storage.open_storage(self.storage_url, heartbeat=None)
        except UserError as exc:
            raise Skip(str(exc)) from None

    @cached_property
    def storage_studies(self) -> list[str]:
        try:
            return sorted(s.study_name for s in self.optuna_storage.get_all_studies())
        except Skip:
            return []

    @cached_property
    def studies(self) -> list[str]:
        if self.requested_studies:
            return list(dict.fromkeys(self.requested_studies))
        return sorted(set(runs.list_studies(self.paths.runs_dir)) | set(self.storage_studies))

    @cached_property
    def ensemble(self) -> Ensemble:
        csv = self.submission_file or newest_submission(self.paths.submissions_dir)
        if csv is None:
            raise Skip(
                f"no ensemble submission in {self.paths.submissions_dir}: run `python scripts/ensemble.py` "
                "or pass --submission FILE"
            )
        if not csv.exists():
            raise Skip(f"--submission {csv}: file not found")
        return read_ensemble(csv, self.paths.runs_dir)

    def best_trial(self, study: str) -> runs.TrialRun:
        """The study's best finished trial: from the storage given with --storage (wherever its files are),
        else from its folder in runs_dir."""
        reasons = []
        if self.trials_storage is not None:
            shown = storage.display_url(self.trials_storage)
            try:
                found = listing.list_trials(
                    self.paths.runs_dir, [study], storage=self.trials_storage, artifacts=self.artifacts, top=1
                )
            except UserError as exc:
                reasons.append(str(exc))
            else:
                if found.trials:
                    return found.trials[0]
                unreachable = "; ".join(f"{name}: {why}" for name, why in found.unreachable)
                reasons.append(
                    f"no finished trial of it in {shown}" + (f" can be reached ({unreachable})" if unreachable else "")
                )
        folder = self.paths.runs_dir / study
        if not folder.is_dir():
            known = ", ".join(runs.list_studies(self.paths.runs_dir)) or "none"
            raise Skip(
                "; ".join([f"no folder {folder} (studies with trials in {self.paths.runs_dir}: {known})", *reasons])
            )
        trials = listing.list_trials(self.paths.runs_dir, [study], top=1).trials
        if not trials:
            raise Skip("; ".join([f"no finished trial in {folder}", *reasons]))
        return trials[0]

    def subject(self, predictor: bool = False) -> Subject:
        """The submission's ensemble, else the best of the studies' best trials (with `predictor`: the
        ensemble if its predictor loads, else the best of those that kept their fold models)."""
        from kaggle_digits.predict import predictor as predict

        try:
            ensemble = self.ensemble
            oof, rows = ensemble.oof()
            loaded: Any = None
            if predictor:
                loaded = predict.load_ensemble(manifest.path_for(ensemble.csv), self.paths.runs_dir)
            fingerprint = ensemble.constituents[0].trial.info.get("data")
            return Subject(f"the ensemble {ensemble.csv.name}", oof, rows, fingerprint, loaded)
        except (Skip, UserError) as exc:  # runs.ArtifactError is a UserError
            reason = str(exc)
        best = []
        for study in self.studies:
            try:
                trial = self.best_trial(study)
            except Skip:
                continue
            if not predictor or trial.fold_model_paths():
                best.append(trial)
        if not best:
            raise Skip(
                f"no ensemble ({reason}) and "
                + (
                    "no best trial that kept its fold models (tune keeps them for the best trials)"
                    if predictor
                    else "no finished trial in the studies shown"
                )
            )
        trial = max(best, key=lambda t: t.cv_accuracy)
        return Subject(
            f"{trial.name} ({trial.model})",
            trial.oof_proba,
            trial.oof_rows,
            trial.info.get("data"),
            predict.TrialPredictor.load(trial) if predictor else None,
            reason,
        )
