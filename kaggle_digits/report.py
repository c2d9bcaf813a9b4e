"""Plots a Kaggler looks at, on one page: `python scripts/report.py [--studies S ...] [--submission FILE] [--out DIR]`.

Sections, each skipped with a one-line reason when its inputs are missing:
  data       sample digits, class distribution and mean image per class of train.csv
  training   per-fold loss/accuracy curves of the best trial of each study (history.json)
  errors     out-of-fold confusion matrices, the most confidently misclassified training digits,
             per-class precision/recall/F1 (of the submission's ensemble, else of the best trial)
  tuning     Optuna optimisation history, parameter importances and intermediate values per study
  ensemble   weights, CV of each constituent vs the ensemble, local score, test digits in dispute
Every PNG and the index.html are written atomically into the report folder.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set before anything imports pyplot

import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from . import IMAGE_SHAPE, N_CLASSES, __version__, data, runs, submission  # noqa: E402
from .errors import UserError  # noqa: E402
from .io import atomic_open, read_json  # noqa: E402
from .paths import Paths  # noqa: E402

HELP = "Plots of the data, studies, errors and ensemble, gathered in one index.html."

DPI = 110
SAMPLES_PER_CLASS = 10  # the sample grid is N_CLASSES rows of this many digits
N_WORST = 32  # digits shown in the misclassified and disagreement grids
MAX_BALLOT = 3  # labels listed under a disputed test digit, most voted first
GRID_COLUMNS = 8
# fANOVA importances from a handful of trials are noise: below this many finished trials, say so instead.
MIN_TRIALS_FOR_IMPORTANCE = 5
INDEX_FILE = "index.html"


class Skip(Exception):
    """Raised inside a section or figure whose inputs are missing; the message says why."""


@dataclass
class Plot:
    file: str  # PNG file name inside the report folder
    title: str
    caption: str


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    numbers: list[tuple[str, str]] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # ready-made HTML
    notes: list[str] = field(default_factory=list)  # parts skipped inside the section, with the reason
    skipped: str | None = None  # the whole section skipped, with the reason


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--studies",
        nargs="+",
        metavar="S",
        help="studies to show (default: every study in --runs-dir and in the Optuna storage)",
    )
    parser.add_argument(
        "--submission",
        metavar="FILE",
        help="an ensemble's submission CSV, with its .json beside it (default: the newest in --submissions-dir)",
    )
    parser.add_argument("--out", metavar="DIR", help="report folder (default: <reports-dir>/<yyyymmdd-HHMMSS>)")
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage holding the studies (default: sqlite:///<runs-dir>/optuna.db)",
    )


def run(args: argparse.Namespace) -> int:
    paths: Paths = args.paths
    out = Path(args.out) if args.out else paths.reports_dir / f"{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    storage = args.storage or default_storage(paths.runs_dir)
    report = Report(paths, out, storage, studies=args.studies, submission_file=args.submission)
    index = report.build()
    written = sum(len(s.plots) for s in report.sections)
    print(
        f"report: {written} figures and {index} ({sum(s.skipped is not None for s in report.sections)} sections skipped)"
    )
    for name, value in report.headline():
        print(f"  {name}: {value}")
    print(f"open {index}")
    return 0


def default_storage(runs_dir: Path) -> str:
    """The Optuna storage URL tune uses when given none."""
    return f"sqlite:///{Path(runs_dir) / 'optuna.db'}"


# --- inputs ---------------------------------------------------------------------------------


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
        total = sum(c.weight for c in self.constituents)
        blend = np.zeros((len(rows), N_CLASSES))
        for c in self.constituents:
            order = np.argsort(c.trial.oof_rows, kind="stable")
            if not np.array_equal(c.trial.oof_rows[order], rows):
                raise Skip(f"{c.name} and {first.name} cover different train.csv rows")
            blend += c.weight / total * c.trial.oof_proba[order]
        return blend.astype(np.float32), rows


def read_ensemble(csv: Path, runs_dir: Path) -> Ensemble:
    """The submission `csv` and its constituents, from the `.json` the ensemble command writes beside it."""
    meta = csv.with_suffix(".json")
    if not meta.exists():
        raise Skip(f"{meta} not found: only submissions written by `python scripts/ensemble.py` name their trials")
    info = read_json(meta)
    constituents = []
    for entry in info.get("constituents", []):
        name = entry.get("trial") or entry.get("name")
        folder = Path(entry.get("folder") or entry.get("path") or runs_dir / name)
        if not folder.is_absolute() and not folder.exists():
            folder = runs_dir / name
        try:
            trial = runs.load_trial(folder)
        except UserError as exc:
            raise Skip(f"constituent {name}: {exc}") from None
        constituents.append(Constituent(name=name, weight=float(entry.get("weight", 1.0)), trial=trial))
    if not constituents:
        raise Skip(f"{meta} names no constituents")
    return Ensemble(csv=csv, info=info, constituents=constituents)


def newest_submission(submissions_dir: Path) -> Path | None:
    """The most recent submission CSV with an ensemble .json beside it."""
    if not submissions_dir.is_dir():
        return None
    found = [p for p in submissions_dir.glob("*.csv") if p.with_suffix(".json").exists()]
    return max(found, key=lambda p: (p.stat().st_mtime, p.name)) if found else None


# --- the report -----------------------------------------------------------------------------


class Report:
    """Builds every section into `out`; `build()` writes the PNGs, then index.html, and returns its path."""

    def __init__(
        self,
        paths: Paths,
        out: Path,
        storage: str,
        studies: list[str] | None = None,
        submission_file: str | os.PathLike | None = None,
    ) -> None:
        self.paths, self.out, self.storage_url = paths, Path(out), storage
        self.requested_studies = studies
        self.submission_file = Path(submission_file) if submission_file else None
        self.sections: list[Section] = []
        self.key_numbers: list[tuple[str, str]] = []  # shown at the top of the page and printed at the end

    # Inputs are loaded once, on first use; a missing one raises Skip with the reason.

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
        return open_storage(self.storage_url)

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
        folder = self.paths.runs_dir / study
        if not folder.is_dir():
            known = ", ".join(runs.list_studies(self.paths.runs_dir)) or "none"
            raise Skip(f"no folder {folder} (studies with trials in {self.paths.runs_dir}: {known})")
        trials = runs.list_trials(self.paths.runs_dir, [study])
        if not trials:
            raise Skip(f"no finished trial in {folder}")
        return trials[0]

    # Building.

    def build(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        builders: list[tuple[str, str, Callable[[Section], None]]] = [
            ("data", "Data", self._data),
            ("training", "Training curves", self._training),
            ("errors", "Errors", self._errors),
            ("tuning", "Tuning", self._tuning),
            ("ensemble", "Ensemble", self._ensemble),
        ]
        with matplotlib.rc_context(_theme()):
            for key, title, build in builders:
                section = Section(key, title)
                try:
                    build(section)
                except Skip as exc:
                    section.skipped = str(exc)
                self.sections.append(section)
                self._print(section)
        index = self.out / INDEX_FILE
        with atomic_open(index, "w", encoding="utf-8") as f:
            f.write(render_html(self.sections, self.headline(), self.out))
        return index

    def _print(self, section: Section) -> None:
        if section.skipped is not None:
            print(f"{section.key}: skipped: {section.skipped}", flush=True)
            return
        print(f"{section.key}: {len(section.plots)} figure(s)", flush=True)
        for note in section.notes:
            print(f"  skipped: {note}", flush=True)

    def headline(self) -> list[tuple[str, str]]:
        """The key numbers of the whole report, for the top of the page and the command's last lines."""
        return list(self.key_numbers)

    def save(self, section: Section, fig: Figure, file: str, title: str, caption: str) -> None:
        """Write `fig` as out/<file> atomically and list it in `section`."""
        with atomic_open(self.out / file, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight")
        section.plots.append(Plot(file, title, caption))

    def part(self, section: Section, what: str) -> _Part:
        """Context for one optional part of a section: a Skip inside becomes a note, the rest goes on."""
        return _Part(section, what)

    # --- data ---

    def _data(self, section: Section) -> None:
        X, y = self.train
        counts = np.bincount(y, minlength=N_CLASSES)
        section.intro = f"{self.paths.train_csv}: {len(y):,} labelled images."
        section.numbers += [("training images", f"{len(y):,}")]
        if self.paths.test_csv.exists():
            section.numbers += [("test images", f"{len(self.test_images):,}")]
        section.numbers += [
            ("rarest class", f"{counts.argmin()} ({counts.min() / len(y):.1%})"),
            ("commonest class", f"{counts.argmax()} ({counts.max() / len(y):.1%})"),
        ]
        self.save(
            section,
            plot_sample_grid(X, y),
            "data-samples.png",
            "Sample digits",
            f"The first {SAMPLES_PER_CLASS} training images of each class, one row per label.",
        )
        self.save(
            section,
            plot_class_distribution(counts),
            "data-classes.png",
            "Class distribution",
            "Images per label in train.csv; the dashed line is a uniform split.",
        )
        self.save(
            section,
            plot_mean_images(X, y),
            "data-means.png",
            "Mean image per class",
            "Pixel-wise mean of every training image of each label.",
        )

    # --- training curves ---

    def _training(self, section: Section) -> None:
        if not self.studies:
            raise Skip(f"no study in {self.paths.runs_dir}: run `python scripts/tune.py --model mlp` first")
        for study in self.studies:
            with self.part(section, f"study {study}"):
                trial = self.best_trial(study)
                number = (f"best {study}", f"{trial.name} CV {trial.cv_accuracy:.5f} ± {trial.cv_std:.5f}")
                section.numbers.append(number)
                self.key_numbers.append(number)
                if not trial.history:
                    raise Skip(f"{trial.path / 'history.json'} not found or empty")
                self.save(
                    section,
                    plot_training(trial.history, f"{trial.name} ({trial.model})"),
                    f"training-{_slug(study)}.png",
                    f"{trial.name}: loss and accuracy per fold",
                    f"Best trial of study {study}: {trial.model}, CV accuracy {trial.cv_accuracy:.5f} "
                    f"± {trial.cv_std:.5f} over {len(trial.history)} folds. Solid: training, dashed: "
                    "held-out fold.",
                )

    # --- errors ---

    def _errors(self, section: Section) -> None:
        subject, oof, rows, fingerprint = self._oof_subject(section)
        X, y = self.train
        if isinstance(fingerprint, dict) and fingerprint.get("train_sha256"):
            if data.sha256(self.paths.train_csv) != fingerprint["train_sha256"]:
                raise Skip(
                    f"{self.paths.train_csv} is not the file {subject} was tuned on (SHA-256 differs): "
                    "pass the --data-dir used by tune"
                )
        if rows.max() >= len(y):
            raise Skip(f"{subject} covers train.csv rows up to {rows.max()}, but {self.paths.train_csv} has {len(y)}")
        truth = y[rows].astype(np.int64)
        pred = oof.argmax(axis=1)
        accuracy = float((pred == truth).mean())
        section.intro = f"Out-of-fold predictions of {subject} on {len(rows):,} training images."
        section.numbers += [("OOF accuracy", f"{accuracy:.5f}"), ("OOF errors", f"{int((pred != truth).sum()):,}")]
        self.save(
            section,
            plot_confusion(truth, pred, subject),
            "errors-confusion.png",
            "Out-of-fold confusion matrix",
            "Rows: true label, columns: prediction. Left: counts; right: each row divided by its total "
            "(the diagonal is each class's recall).",
        )
        with self.part(section, "misclassified digits"):
            wrong = np.flatnonzero(pred != truth)
            if not wrong.size:
                raise Skip(f"{subject} gets every out-of-fold image right")
            confidence = oof[wrong, pred[wrong]]
            worst = wrong[np.argsort(-confidence, kind="stable")[:N_WORST]]
            self.save(
                section,
                plot_digit_grid(
                    X[rows[worst]],
                    [f"true {truth[i]}, pred {pred[i]}\np = {oof[i, pred[i]]:.3f}" for i in worst],
                    f"Most confidently misclassified training digits ({subject})",
                ),
                "errors-misclassified.png",
                "Most confident mistakes",
                f"The {len(worst)} out-of-fold errors with the highest predicted probability (of "
                f"{len(wrong):,} errors): true label, prediction and its probability.",
            )
        report = per_class_report(truth, pred)
        section.tables.append(render_class_table(report))
        self.save(
            section,
            plot_per_class(report),
            "errors-per-class.png",
            "Precision, recall and F1 per class",
            "scikit-learn's classification_report of the out-of-fold predictions.",
        )

    def _oof_subject(self, section: Section) -> tuple[str, np.ndarray, np.ndarray, Any]:
        """Whose OOF predictions the errors section shows: the submission's ensemble, else the best trial.

        Returns a name, OOF probabilities float32 (n, 10), the train.csv rows they cover (n,) and the
        data fingerprint of params.json.
        """
        try:
            ensemble = self.ensemble
            oof, rows = ensemble.oof()
            fingerprint = ensemble.constituents[0].trial.info.get("data")
            return f"the ensemble {ensemble.csv.name}", oof, rows, fingerprint
        except Skip as exc:
            reason = str(exc)
        best = []
        for study in self.studies:
            try:
                best.append(self.best_trial(study))
            except Skip:
                continue
        if not best:
            raise Skip(f"no ensemble ({reason}) and no finished trial in the studies shown")
        trial = max(best, key=lambda t: t.cv_accuracy)
        section.notes.append(f"showing the best trial instead of an ensemble: {reason}")
        return f"{trial.name} ({trial.model})", trial.oof_proba, trial.oof_rows, trial.info.get("data")

    # --- tuning ---

    def _tuning(self, section: Section) -> None:
        storage = self.optuna_storage
        if not self.studies:
            raise Skip(f"no study in {self.storage_url}: run `python scripts/tune.py --model mlp` first")
        section.intro = f"Optuna studies in {_display_url(self.storage_url)}."
        for name in self.studies:
            with self.part(section, f"study {name}"):
                if name not in self.storage_studies:
                    known = ", ".join(self.storage_studies) or "none"
                    raise Skip(f"not in {_display_url(self.storage_url)} (studies there: {known})")
                self._tuning_study(section, load_study(storage, name))

    def _tuning_study(self, section: Section, study: Any) -> None:
        import optuna

        states = optuna.trial.TrialState
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == states.COMPLETE]
        pruned = [t for t in trials if t.state == states.PRUNED]
        failed = [t for t in trials if t.state == states.FAIL]
        name = study.study_name
        counts = f"{len(done)} complete, {len(pruned)} pruned, {len(failed)} failed"
        section.numbers.append((f"trials of {name}", counts))
        if not done:
            raise Skip(f"no complete trial yet ({counts})")
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        best = study.best_trial
        section.numbers.append((f"best {name} value", f"{best.value:.5f} (trial {best.number})"))
        self.save(
            section,
            plot_optimization_history(trials, maximize, name),
            f"tuning-history-{_slug(name)}.png",
            f"{name}: optimisation history",
            f"Objective (mean fold accuracy) of each trial and the best so far; {counts}. Pruned trials "
            "are drawn at the last value they reported.",
        )
        with self.part(section, f"parameter importances of {name}"):
            if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
                raise Skip(
                    f"{len(done)} complete trial(s); importances need at least {MIN_TRIALS_FOR_IMPORTANCE} to mean anything"
                )
            try:
                importances = optuna.importance.get_param_importances(study)
            except (RuntimeError, ValueError) as exc:
                raise Skip(f"Optuna cannot rank the parameters: {exc}") from None
            if not importances:
                raise Skip("the complete trials share no varying parameter")
            self.save(
                section,
                plot_importances(importances, name),
                f"tuning-importance-{_slug(name)}.png",
                f"{name}: parameter importances",
                f"fANOVA importance of each hyperparameter for the objective, over {len(done)} complete trials.",
            )
        with self.part(section, f"intermediate values of {name}"):
            if not any(t.intermediate_values for t in trials):
                raise Skip("no trial reported intermediate values")
            self.save(
                section,
                plot_intermediate(trials, name, _step_stride()),
                f"tuning-intermediate-{_slug(name)}.png",
                f"{name}: intermediate values",
                "What each trial reported to the pruner: the held-out fold's accuracy after each epoch, fold "
                "after fold. Pruned trials in red, stopped at the cross.",
            )

    # --- ensemble ---

    def _ensemble(self, section: Section) -> None:
        ensemble = self.ensemble
        section.intro = f"{ensemble.csv}: {len(ensemble.constituents)} constituent(s)."
        names = [c.name for c in ensemble.constituents]
        weights = np.array([c.weight for c in ensemble.constituents])
        cvs = np.array([c.trial.cv_accuracy for c in ensemble.constituents])
        ens_cv = ensemble.cv_accuracy
        if ens_cv is None:
            oof, rows = ensemble.oof()
            ens_cv = float((oof.argmax(axis=1) == self.train[1][rows]).mean())
        self.key_numbers.append(("ensemble CV", f"{ens_cv:.5f} ({ensemble.csv.name})"))
        section.numbers += [
            ("ensemble CV", f"{ens_cv:.5f}"),
            ("best constituent CV", f"{cvs.max():.5f} ({names[int(cvs.argmax())]})"),
            ("gain over the best constituent", f"{ens_cv - cvs.max():+.5f}"),
        ]
        local = None
        if self.paths.solution_csv.exists():
            try:
                local = submission.score_local(ensemble.csv, self.paths.solution_csv)
                section.numbers.append(("local leaderboard", str(local)))
                self.key_numbers.append(("local leaderboard", str(local)))
            except UserError as exc:
                section.notes.append(f"local score: {exc}")
        else:
            section.notes.append(f"local score: {self.paths.solution_csv} not found (real Kaggle data)")
        labels = [f"{n}\n{c.trial.model}" for n, c in zip(names, ensemble.constituents)]
        self.save(
            section,
            plot_weights(labels, weights / weights.sum()),
            "ensemble-weights.png",
            "Weights",
            "Each constituent's share of the blended probabilities (chosen on out-of-fold predictions only).",
        )
        self.save(
            section,
            plot_ensemble_scores(labels, cvs, ens_cv, None if local is None else local.accuracy),
            "ensemble-cv.png",
            "Constituents vs ensemble",
            "Cross-validated accuracy of each constituent and of the ensemble"
            + ("; the local leaderboard score of the submission on the hidden test labels." if local else "."),
        )
        with self.part(section, "disputed test digits"):
            self._disagreement(section, ensemble)

    def _disagreement(self, section: Section, ensemble: Ensemble) -> None:
        if len(ensemble.constituents) < 2:
            raise Skip("a single constituent cannot disagree with itself")
        X_test = self.test_images
        submitted = submission.read_submission(ensemble.csv, n_test=len(X_test))
        votes = np.stack([c.trial.test_proba.argmax(axis=1) for c in ensemble.constituents], axis=1)
        if votes.shape[0] != len(X_test):
            raise Skip(f"constituents predict {votes.shape[0]} test images, {self.paths.test_csv} has {len(X_test)}")
        weights = np.array([c.weight for c in ensemble.constituents], dtype=np.float64)
        weights /= weights.sum()
        # Weighted share of the most popular label: 1.0 is unanimity.
        share = np.zeros((len(votes), N_CLASSES))
        for j, w in enumerate(weights):
            share[np.arange(len(votes)), votes[:, j]] += w
        agreement = share.max(axis=1)
        disputed = np.flatnonzero(agreement < 1.0)
        if not disputed.size:
            raise Skip("the constituents agree on every test image")
        order = disputed[np.lexsort((disputed, agreement[disputed]))][:N_WORST]
        titles = []
        for i in order:
            tally = np.bincount(votes[i], minlength=N_CLASSES)
            ranked = [d for d in np.argsort(-tally, kind="stable") if tally[d]]
            ballot = " ".join(f"{d}×{tally[d]}" for d in ranked[:MAX_BALLOT])
            more = len(ranked) - MAX_BALLOT
            titles.append(f"id {i + 1} → {submitted[i]}\n{ballot}" + (f" +{more}" if more > 0 else ""))
        section.numbers.append(("test images in dispute", f"{disputed.size:,} of {len(votes):,}"))
        self.save(
            section,
            plot_digit_grid(X_test[order], titles, "Test digits the constituents disagree on most"),
            "ensemble-disagreement.png",
            "Disputed test digits",
            f"The {len(order)} test images with the weakest weighted majority among the constituents' "
            f"predictions ({disputed.size:,} test images are not unanimous). Above each: its ImageId → the "
            "submitted label, then the labels voted for with their number of votes (at most "
            f"{MAX_BALLOT} shown).",
        )


class _Part:
    def __init__(self, section: Section, what: str) -> None:
        self.section, self.what = section, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, Skip):
            self.section.notes.append(f"{self.what}: {exc}")
            return True
        return False


# --- Optuna ---------------------------------------------------------------------------------


def open_storage(url: str) -> Any:
    """An Optuna storage for reading; Skip (not a new empty database) when a SQLite file does not exist."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.exists():
            raise Skip(f"no Optuna storage at {path}: run `python scripts/tune.py` first (or pass --storage URL)")
    try:
        return optuna.storages.get_storage(url)
    except Exception as exc:  # noqa: BLE001 — any driver's failure to connect is reported, not raised
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Skip(f"cannot open Optuna storage {_display_url(url)}: {first}") from None


def _step_stride() -> int:
    from .tune import STEP_STRIDE  # how tune numbers the pruner's steps: fold * STEP_STRIDE + epoch

    return STEP_STRIDE


def load_study(storage: Any, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def _display_url(url: str) -> str:
    """The URL without a password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


# --- figures --------------------------------------------------------------------------------


def _theme() -> dict[str, Any]:
    """seaborn's whitegrid look, applied only inside the report (rc_context), not process-wide."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook")}
    rc["axes.prop_cycle"] = matplotlib.cycler(color=sns.color_palette("deep"))
    rc["figure.dpi"] = DPI
    return rc


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def plot_sample_grid(X: np.ndarray, y: np.ndarray) -> Figure:
    """A class-by-row mosaic of the first SAMPLES_PER_CLASS images of each label.

    X : uint8 (n, 28, 28); y : (n,) labels 0..9.
    """
    h, w = IMAGE_SHAPE
    gap = 2
    mosaic = np.zeros((N_CLASSES * (h + gap) - gap, SAMPLES_PER_CLASS * (w + gap) - gap), dtype=np.uint8)
    for label in range(N_CLASSES):
        for k, i in enumerate(np.flatnonzero(y == label)[:SAMPLES_PER_CLASS]):
            top, left = label * (h + gap), k * (w + gap)
            mosaic[top : top + h, left : left + w] = X[i]
    fig = _figure(6.2, 6.6)
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([label * (h + gap) + h / 2 for label in range(N_CLASSES)], [str(d) for d in range(N_CLASSES)])
    ax.tick_params(axis="y", length=0)
    ax.set_ylabel("label")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{SAMPLES_PER_CLASS} training digits per class")
    return fig


def plot_class_distribution(counts: np.ndarray) -> Figure:
    """Bar chart of images per label; counts : int (10,)."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    digits = np.arange(N_CLASSES)
    bars = ax.bar(digits, counts, color=sns.color_palette("deep")[0])
    # Counts inside the bars, where the uniform line cannot cross them.
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], label_type="center", color="white", fontsize=9)
    ax.axhline(counts.sum() / N_CLASSES, color="0.3", linestyle="--", linewidth=1, label="uniform")
    ax.set_xticks(digits)
    ax.set_xlabel("label")
    ax.set_ylabel("training images")
    ax.set_ylim(0, counts.max() * 1.12)
    ax.legend(loc="lower right")
    ax.set_title(f"Class distribution of train.csv ({counts.sum():,} images)")
    return fig


def plot_mean_images(X: np.ndarray, y: np.ndarray) -> Figure:
    """Mean image of each label in a 2×5 grid; X : uint8 (n, 28, 28), y : (n,)."""
    fig = _figure(9, 4.4)
    axes = fig.subplots(2, 5)
    for label, ax in enumerate(axes.flat):
        members = X[y == label]
        mean = members.mean(axis=0) if len(members) else np.zeros(IMAGE_SHAPE)
        ax.imshow(mean, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{label}  (n={len(members):,})", fontsize=10)
        ax.axis("off")
    fig.suptitle("Mean training image per class")
    return fig


# How each history.json curve is drawn: training solid, held-out fold dashed, anything else dotted
# (e.g. the mlp's own early-stopping split, carved out of the training fold).
_CURVE_STYLES = {"train": "-", "val": "--", "other": ":"}


def _curve_kind(key: str) -> str:
    if key in ("loss", "accuracy"):
        return "train"
    return "val" if key.startswith("val_") else "other"


def plot_training(history: list[dict[str, Any]], title: str) -> Figure:
    """Loss and accuracy per epoch for each fold; history is runs.py's history.json (a list of fold dicts).

    Every list-valued key whose name contains "loss" goes to the left panel, "accuracy" to the right.
    """
    fig = _figure(12.5, 4.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    palette = sns.color_palette("deep", max(len(history), 1))
    used: dict[str, set[str]] = {}  # kind -> curve names drawn in that style
    for ax, word in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        drawn = False
        for k, fold in enumerate(history):
            for key, values in fold.items():
                if word not in key or not isinstance(values, list):
                    continue
                values = [v for v in values if v is not None]
                if not values:
                    continue
                kind = _curve_kind(key)
                used.setdefault(kind, set()).add(key)
                ax.plot(
                    np.arange(1, len(values) + 1),
                    values,
                    color=palette[k],
                    linestyle=_CURVE_STYLES[kind],
                    marker="o" if len(values) <= 20 else None,
                    markersize=3.5,
                )
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, f"no {word} recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.set_ylabel(word)
        ax.set_title(word.capitalize())
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color=palette[k], label=f"fold {fold.get('fold', k)}") for k, fold in enumerate(history)]
    names = {"train": "training", "val": "held-out fold"}
    for kind, keys in used.items():
        label = names.get(kind) or ", ".join(sorted(k.replace("_", " ") for k in keys))
        handles.append(Line2D([], [], color="0.2", linestyle=_CURVE_STYLES[kind], label=label))
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    fig.suptitle(title)
    return fig


def plot_confusion(truth: np.ndarray, pred: np.ndarray, subject: str) -> Figure:
    """Counts and row-normalised confusion matrices side by side; truth, pred : int (n,)."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(truth, pred, labels=np.arange(N_CLASSES))
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    fig = _figure(16, 7)
    ax_counts, ax_norm = fig.subplots(1, 2)
    sns.heatmap(matrix, ax=ax_counts, annot=True, fmt="d", cmap="Blues", cbar=True, square=True, annot_kws={"size": 9})
    sns.heatmap(
        normalised,
        ax=ax_norm,
        annot=True,
        fmt=".3f",
        cmap="Blues",
        vmin=0,
        vmax=1,
        square=True,
        annot_kws={"size": 8},
    )
    for ax, title in ((ax_counts, "counts"), (ax_norm, "normalised by true label (rows sum to 1)")):
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.set_title(title)
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle(f"Out-of-fold confusion matrix — {subject}")
    return fig


def plot_digit_grid(images: np.ndarray, titles: list[str], title: str) -> Figure:
    """Images uint8 (k, 28, 28) in rows of GRID_COLUMNS, each with its (one- or two-line) title."""
    rows = max(1, math.ceil(len(images) / GRID_COLUMNS))
    fig = _figure(GRID_COLUMNS * 1.55, rows * 1.8 + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, GRID_COLUMNS)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, image, text in zip(axes, images, titles):
        ax.axis("on")
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for spine in ax.spines.values():  # a light frame shows where each 28×28 image ends
            spine.set_edgecolor("0.8")
        ax.set_title(text, fontsize=8.5)
    fig.suptitle(title)
    return fig


def per_class_report(truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """scikit-learn's classification_report as a dict (per class "0".."9", accuracy, averages)."""
    from sklearn.metrics import classification_report

    return classification_report(
        truth,
        pred,
        labels=np.arange(N_CLASSES),
        target_names=[str(d) for d in range(N_CLASSES)],
        output_dict=True,
        zero_division=0,
    )


def plot_per_class(report: dict[str, Any]) -> Figure:
    """Grouped bars of precision, recall and F1 per class."""
    fig = _figure(11, 4.8)
    ax = fig.add_subplot()
    digits = np.arange(N_CLASSES)
    metrics = ("precision", "recall", "f1-score")
    values = np.array([[report[str(d)][m] for d in digits] for m in metrics])
    width = 0.27
    for j, (metric, row) in enumerate(zip(metrics, values)):
        ax.bar(digits + (j - 1) * width, row, width, label=metric.replace("-score", ""))
    low = float(values.min())
    ax.set_ylim(max(0.0, low - (1 - low) * 0.25 - 0.005), 1.0)
    ax.set_xticks(digits)
    ax.set_xlabel("label")
    ax.set_ylabel("score")
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    ax.set_title(f"Per-class precision, recall and F1 (accuracy {report['accuracy']:.5f})")
    return fig


def plot_optimization_history(trials: list[Any], maximize: bool, name: str) -> Figure:
    """Objective per trial, best so far, and pruned trials at their last reported value."""
    from optuna.trial import TrialState

    fig = _figure(10, 4.8)
    ax = fig.add_subplot()
    palette = sns.color_palette("deep")
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    x = [t.number for t in done]
    values = [t.value for t in done]
    ax.scatter(x, values, color=palette[0], s=28, zorder=3, label="complete trial")
    best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
    ax.step(x, best, where="post", color=palette[3], linewidth=2, label="best so far")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="0.45", s=30, label="pruned (last report)")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective: mean fold accuracy")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="lower right" if maximize else "upper right")
    ax.set_title(f"Optimisation history — {name}")
    return fig


def plot_importances(importances: dict[str, float], name: str) -> Figure:
    """Horizontal bars of Optuna's parameter importances (largest on top)."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = _figure(8, 1.2 + 0.45 * len(items))
    ax = fig.add_subplot()
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color=sns.color_palette("deep")[0])
    ax.bar_label(bars, labels=[f"{v:.2f}" for _, v in items], padding=3, fontsize=9)
    ax.set_xlim(0, max(v for _, v in items) * 1.15 or 1)
    ax.set_xlabel("importance (fANOVA, sums to 1)")
    ax.set_title(f"Hyperparameter importances — {name}")
    return fig


def plot_intermediate(trials: list[Any], name: str, stride: int) -> Figure:
    """Each trial's intermediate values, fold after fold; pruned trials in red ending in a cross.

    tune reports step = fold * stride + epoch (0-based), so folds are laid side by side on the x axis,
    one slot per epoch, and a line never joins the last epoch of a fold to the first of the next.
    """
    from optuna.trial import TrialState

    fig = _figure(10.5, 4.8)
    ax = fig.add_subplot()
    palette = sns.color_palette("deep")
    reported = [t for t in trials if t.intermediate_values]
    width = 1 + max(s % stride for t in reported for s in t.intermediate_values)
    n_folds = 1 + max(s // stride for t in reported for s in t.intermediate_values)
    kinds = {"complete": 0, "pruned": 0, "other": 0}
    for t in reported:
        if t.state == TrialState.PRUNED:
            style, kind = {"color": palette[3], "alpha": 0.85, "linewidth": 1.3, "marker": "."}, "pruned"
        elif t.state == TrialState.COMPLETE:
            style, kind = {"color": palette[0], "alpha": 0.6, "linewidth": 1.2, "marker": "."}, "complete"
        else:
            style, kind = {"color": "0.6", "alpha": 0.7, "linewidth": 1, "linestyle": ":"}, "other"
        kinds[kind] += 1
        steps = sorted(t.intermediate_values)
        for fold in sorted({s // stride for s in steps}):
            in_fold = [s for s in steps if s // stride == fold]
            x = [fold * width + s % stride + 1 for s in in_fold]
            ax.plot(x, [t.intermediate_values[s] for s in in_fold], **style)
        if kind == "pruned":
            last = steps[-1]
            x_last = (last // stride) * width + last % stride + 1
            ax.scatter([x_last], [t.intermediate_values[last]], marker="x", color=palette[3], s=55, zorder=3)
    for fold in range(1, n_folds):
        ax.axvline(fold * width + 0.5, color="0.75", linewidth=1)
    ax.set_xlim(0.5, n_folds * width + 0.5)
    centres = [fold * width + (width + 1) / 2 for fold in range(n_folds)]
    ax.set_xticks(centres, [f"fold {fold}" for fold in range(n_folds)])
    ax.grid(False, axis="x")
    handles = [
        Line2D([], [], color=palette[0], marker=".", label=f"complete ({kinds['complete']})"),
        Line2D([], [], color=palette[3], marker="x", label=f"pruned ({kinds['pruned']})"),
    ]
    if kinds["other"]:
        handles.append(Line2D([], [], color="0.6", linestyle=":", label=f"failed or running ({kinds['other']})"))
    ax.legend(handles=handles, loc="lower right")
    ax.set_xlabel(f"epochs 1–{width} of each fold, fold after fold" if width > 1 else "fold")
    ax.set_ylabel("reported validation accuracy")
    ax.set_title(f"Intermediate values — {name}")
    return fig


def plot_weights(labels: list[str], weights: np.ndarray) -> Figure:
    """Horizontal bars of each constituent's normalised weight."""
    fig = _figure(8, 1.4 + 0.6 * len(labels))
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    bars = ax.barh(y, weights, color=sns.color_palette("deep")[2])
    ax.bar_label(bars, labels=[f"{w:.3f}" for w in weights], padding=3, fontsize=9)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, max(weights.max() * 1.18, 0.05))
    ax.set_xlabel("weight (sums to 1)")
    ax.set_title("Ensemble weights")
    return fig


def plot_ensemble_scores(labels: list[str], cvs: np.ndarray, ensemble_cv: float, local: float | None) -> Figure:
    """CV accuracy of each constituent and of the ensemble (and its local score), zoomed to their range."""
    names = [*labels, "ensemble (CV)"] + (["ensemble\n(local leaderboard)"] if local is not None else [])
    values = np.array([*cvs, ensemble_cv] + ([local] if local is not None else []))
    palette = sns.color_palette("deep")
    colors = [palette[0]] * len(labels) + [palette[3]] + ([palette[1]] if local is not None else [])
    fig = _figure(8.5, 1.4 + 0.6 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    bars = ax.barh(y, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.5f}" for v in values], padding=3, fontsize=9)
    ax.set_yticks(y, names, fontsize=9)
    span = max(values.max() - values.min(), 0.002)
    ax.set_xlim(max(0.0, values.min() - span * 1.2), values.max() + span * 0.3)
    ax.set_xlabel("accuracy")
    ax.set_title("Constituents vs ensemble")
    return fig


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; }
table.numbers, table.classes { border-collapse: collapse; margin: 0.8em 0; }
table.numbers td, table.classes td, table.classes th { padding: 0.2em 0.9em; border-bottom: 1px solid #eee; }
table.numbers td:first-child { color: #555; }
table.classes td { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; }
.skip { color: #8a5a00; background: #fff8e6; padding: 0.4em 0.8em; border-left: 3px solid #e0a800; }
"""


def render_html(sections: list[Section], headline: list[tuple[str, str]], out: Path) -> str:
    """The report page: key numbers, then each section's numbers, figures (relative links) and notes."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>kaggle-digits report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>kaggle-digits report</h1>",
        f'<p class="meta">{e(str(out))} · written {datetime.now():%Y-%m-%d %H:%M} · kaggle-digits {__version__}</p>',
    ]
    if headline:
        parts.append(_numbers_table(headline))
    parts.append("<ul>" + "".join(f'<li><a href="#{s.key}">{e(s.title)}</a></li>' for s in sections) + "</ul>")
    for s in sections:
        parts.append(f'<section id="{s.key}"><h2>{e(s.title)}</h2>')
        if s.skipped is not None:
            parts.append(f'<p class="skip">Skipped: {e(s.skipped)}</p></section>')
            continue
        if s.intro:
            parts.append(f"<p>{e(s.intro)}</p>")
        if s.numbers:
            parts.append(_numbers_table(s.numbers))
        for note in s.notes:
            parts.append(f'<p class="skip">Skipped: {e(note)}</p>')
        for plot in s.plots:
            parts.append(
                f'<figure><img src="{e(plot.file)}" alt="{e(plot.title)}">'
                f"<figcaption><b>{e(plot.title)}.</b> {e(plot.caption)}</figcaption></figure>"
            )
        parts.extend(s.tables)
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _numbers_table(numbers: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(v)}</td></tr>" for n, v in numbers)
    return f'<table class="numbers">{rows}</table>'


def render_class_table(report: dict[str, Any]) -> str:
    """classification_report's dict as an HTML table."""
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    body = []
    for key in [*(str(d) for d in range(N_CLASSES)), "macro avg", "weighted avg"]:
        r = report[key]
        body.append(
            f"<tr><th>{html.escape(key)}</th><td>{r['precision']:.4f}</td><td>{r['recall']:.4f}</td>"
            f"<td>{r['f1-score']:.4f}</td><td>{int(r['support']):,}</td></tr>"
        )
    body.append(f'<tr><th>accuracy</th><td colspan="3">{report["accuracy"]:.5f}</td><td></td></tr>')
    return f'<table class="classes">{head}{"".join(body)}</table>'


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "study"
