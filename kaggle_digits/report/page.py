"""Plots a Kaggler looks at, on one page: `python scripts/report.py [--studies S ...] [--submission FILE] [--out DIR]`.

Sections, each skipped with a one-line reason when its inputs are missing:
  data       sample digits, class distribution and mean image per class of train.csv
  training   per-fold loss/accuracy curves of the best trial of each study (history.json)
  errors     out-of-fold confusion matrices, the most confidently misclassified training digits,
             per-class precision/recall/F1 (of the submission's ensemble, else of the best trial)
  attribution  what the models look at: per class, the mean attribution map of correctly predicted
             training digits; the most confident errors' maps toward the prediction and the truth
  tuning     Optuna optimisation history, parameter importances and intermediate values per study
  ensemble   weights, CV of each constituent vs the ensemble, local score, test digits in dispute
Every PNG and the index.html are written atomically into the report folder. What the sections read is
report/inputs.py; the page's HTML is report/render.py's template.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits import N_CLASSES, written
from kaggle_digits.blend import submission
from kaggle_digits.data import dataset as data
from kaggle_digits.data.paths import Paths
from kaggle_digits.errors import UserError
from kaggle_digits.io import atomic_open
from kaggle_digits.progress import Log, silent
from kaggle_digits.report.inputs import Ensemble, Inputs, Skip
from kaggle_digits.report.render import ClassTable, Plot, Section, render_html
from kaggle_digits.search import runs, storage
from kaggle_digits.search.steps import step_position

DPI = 110
N_WORST = 32  # digits shown in the misclassified and disagreement grids
MAX_BALLOT = 3  # labels listed under a disputed test digit, most voted first
# fANOVA importances from a handful of trials are noise: below this many finished trials, say so instead.
MIN_TRIALS_FOR_IMPORTANCE = 5
# Attribution maps cost a model pass per patch or per path step: a few images per class show the pattern.
MAPS_PER_CLASS = 12
N_ERROR_MAPS = 8
INDEX_FILE = "index.html"
# Every figure's file name starts with its section's key (data-, training-, errors-, tuning-, ensemble-).
PLOT_PREFIXES = ("data-", "training-", "errors-", "attribution-", "tuning-", "ensemble-")


def refuse_users_files(out: Path) -> None:
    """A report rewrites its own earlier files in `out`, never a user's index.html or same-named PNGs."""
    if not out.is_dir():
        return
    ours = [out / INDEX_FILE, *(p for p in out.glob("*.png") if p.name.startswith(PLOT_PREFIXES))]
    theirs = written.foreign(out, ours)
    if theirs:
        more = f" (and {len(theirs) - 1} more)" if len(theirs) > 1 else ""
        raise UserError(
            f"--out {out}: {theirs[0].name}{more} was not written by kaggle-digits report (or was changed since): "
            "it is never overwritten; choose another --out"
        )


# --- the report -----------------------------------------------------------------------------


def section_line(section: Section) -> str:
    """What a built section holds, or why it was skipped (one line, or more for parts skipped inside it)."""
    if section.skipped is not None:
        return f"{section.key}: skipped: {section.skipped}"
    return "\n".join([f"{section.key}: {len(section.plots)} figure(s)", *(f"  skipped: {n}" for n in section.notes)])


class Report(Inputs):
    """Builds every section into `out` from its inputs (Inputs); `build()` writes the PNGs, then
    index.html, and returns its path."""

    def __init__(
        self,
        paths: Paths,
        out: Path,
        storage: str,
        studies: list[str] | None = None,
        submission_file: str | os.PathLike | None = None,
        trials_storage: str | None = None,
        artifacts: str | None = None,
        log: Log = silent,
    ) -> None:
        """trials_storage: read trials from this storage (listing.list_trials) instead of runs_dir's folders.
        log: one line per section built (section_line)."""
        super().__init__(paths, storage, studies, submission_file, trials_storage, artifacts)
        self.log, self.out = log, Path(out)
        self.sections: list[Section] = []
        self.key_numbers: list[tuple[str, str]] = []  # shown at the top of the page and printed at the end

    # Building.

    def build(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        builders: list[tuple[str, str, Callable[[Section], None]]] = [
            ("data", "Data", self._data),
            ("training", "Training curves", self._training),
            ("errors", "Errors", self._errors),
            ("attribution", "What the models look at", self._attribution),
            ("tuning", "Tuning", self._tuning),
            ("ensemble", "Ensemble", self._ensemble),
        ]
        with self.plots.theme(DPI):
            for key, title, build in builders:
                section = Section(key, title)
                try:
                    build(section)
                except (Skip, runs.ArtifactError) as exc:  # a trial's damaged array: skip what needs it
                    section.skipped = str(exc)
                self.sections.append(section)
                self.log(section_line(section))
        index = self.out / INDEX_FILE
        with atomic_open(index, "w", encoding="utf-8") as f:
            f.write(render_html(self.sections, self.headline(), self.out))
        written.record(self.out, [index])
        return index

    def headline(self) -> list[tuple[str, str]]:
        """The key numbers of the whole report, for the top of the page and the command's last lines."""
        return list(self.key_numbers)

    @cached_property
    def plots(self) -> Any:
        from kaggle_digits.report import plots

        return plots

    def save(self, section: Section, fig: Any, file: str, title: str, caption: str) -> None:
        """Write `fig` as out/<file> atomically, note it as the report's own, and list it in `section`."""
        assert file.startswith(PLOT_PREFIXES), file  # what _refuse_users_files knows as a report's figure
        with atomic_open(self.out / file, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight")
        written.record(self.out, [self.out / file])  # at once: an interrupted report's figures stay ours
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
            self.plots.plot_sample_grid(X, y),
            "data-samples.png",
            "Sample digits",
            f"The first {self.plots.SAMPLES_PER_CLASS} training images of each class, one row per label.",
        )
        self.save(
            section,
            self.plots.plot_class_distribution(counts),
            "data-classes.png",
            "Class distribution",
            "Images per label in train.csv; the dashed line is a uniform split.",
        )
        self.save(
            section,
            self.plots.plot_mean_images(X, y),
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
                    self.plots.plot_training(trial.history, f"{trial.name} ({trial.model})"),
                    f"training-{_slug(study)}.png",
                    f"{trial.name}: loss and accuracy per fold",
                    f"Best trial of study {study}: {trial.model}, CV accuracy {trial.cv_accuracy:.5f} "
                    f"± {trial.cv_std:.5f} over {len(trial.history)} folds. Colour: fold; solid: "
                    "training, dashed: the held-out fold, dotted: any other curve the model records.",
                )

    # --- errors ---

    def _errors(self, section: Section) -> None:
        shown = self.subject()
        if shown.instead is not None:
            section.notes.append(f"showing the best trial instead of an ensemble: {shown.instead}")
        subject, oof, rows, fingerprint = shown.name, shown.oof, shown.rows, shown.fingerprint
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
            self.plots.plot_confusion(truth, pred, subject),
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
                self.plots.plot_digit_grid(
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
        section.class_tables.append(ClassTable.from_report(report))
        self.save(
            section,
            self.plots.plot_per_class(report),
            "errors-per-class.png",
            "Precision, recall and F1 per class",
            "scikit-learn's classification_report of the out-of-fold predictions.",
        )

    # --- attribution maps ---

    def _attribution(self, section: Section) -> None:
        from kaggle_digits.predict import attribution
        from kaggle_digits.report import attribution_plots

        shown = self.subject(predictor=True)
        subject, predictor, oof, rows = shown.name, shown.predictor, shown.oof, shown.rows
        X, y = self.train
        if rows.max() >= len(y):
            raise Skip(f"{subject} covers train.csv rows up to {rows.max()}, but {self.paths.train_csv} has {len(y)}")
        truth = y[rows].astype(np.int64)
        pred = oof.argmax(axis=1)
        correct = [np.flatnonzero((pred == truth) & (truth == d))[:MAPS_PER_CLASS] for d in range(N_CLASSES)]
        chosen = np.concatenate(correct)
        result = attribution.explain(predictor, X[rows[chosen]], truth[chosen])
        how = {
            "integrated-gradients": "integrated gradients (from a blank image)",
            "occlusion": "occlusion (a blank 4x4 patch sliding over the digit)",
        }[result.method]
        section.intro = (
            f"Attribution maps of {subject} by {how}, in units of the class's probability. The maps come from "
            "the saved fold models together, which saw most of these training digits while they learned."
        )
        section.numbers.append(("method", result.method))
        counts = np.array([len(c) for c in correct])
        mean_maps = np.zeros((N_CLASSES, *X.shape[1:]), dtype=np.float32)
        mean_digits = np.zeros_like(mean_maps)
        start = 0
        for d, count in enumerate(counts):
            if count:
                mean_maps[d] = result.maps[start : start + count].mean(axis=0)
                mean_digits[d] = X[rows[chosen[start : start + count]]].mean(axis=0)
            start += count
        self.save(
            section,
            attribution_plots.plot_class_means(mean_maps, mean_digits, counts, subject),
            "attribution-classes.png",
            "Per class: what a correct prediction rests on",
            f"For each class, the mean map toward that class of up to {MAPS_PER_CLASS} training digits of it "
            "that were predicted correctly out of fold, over the outline of their mean digit. "
            + attribution_plots.CAPTION,
        )
        with self.part(section, "maps of the most confident mistakes"):
            wrong = np.flatnonzero(pred != truth)
            if not wrong.size:
                raise Skip(f"{subject} gets every out-of-fold image right")
            worst = wrong[np.argsort(-oof[wrong, pred[wrong]], kind="stable")[:N_ERROR_MAPS]]
            digits = X[rows[worst]]
            both = attribution.explain(predictor, np.concatenate([digits, digits]), np.r_[pred[worst], truth[worst]])
            self.save(
                section,
                attribution_plots.plot_error_maps(
                    digits,
                    truth[worst],
                    pred[worst],
                    oof[worst, pred[worst]],
                    both.maps[: len(worst)],
                    both.maps[len(worst) :],
                    subject,
                ),
                "attribution-errors.png",
                "The most confident mistakes: toward the prediction and toward the truth",
                f"The {len(worst)} out-of-fold errors with the highest predicted probability, each with its map "
                "toward the predicted label and toward the true one, on one colour scale per digit. "
                + attribution_plots.CAPTION,
            )

    # --- tuning ---

    def _tuning(self, section: Section) -> None:
        import optuna

        opened = self.optuna_storage
        if not self.studies:
            raise Skip(
                f"no study in {storage.display_url(self.storage_url)}: run `python scripts/tune.py --model mlp` first"
            )
        section.intro = f"Optuna studies in {storage.display_url(self.storage_url)}."
        for name in self.studies:
            with self.part(section, f"study {name}"):
                if name not in self.storage_studies:
                    known = ", ".join(self.storage_studies) or "none"
                    raise Skip(f"not in {storage.display_url(self.storage_url)} (studies there: {known})")
                self._tuning_study(section, optuna.load_study(study_name=name, storage=opened))

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
            self.plots.plot_optimization_history(trials, maximize, name),
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
                self.plots.plot_importances(importances, name),
                f"tuning-importance-{_slug(name)}.png",
                f"{name}: parameter importances",
                f"fANOVA importance of each hyperparameter for the objective, over {len(done)} complete trials.",
            )
        with self.part(section, f"intermediate values of {name}"):
            if not any(t.intermediate_values for t in trials):
                raise Skip("no trial reported intermediate values")
            self.save(
                section,
                self.plots.plot_intermediate(trials, name, step_position),
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
        # The family under the name, unless the study's name already says it (mlp, cnn-aug, ...).
        labels = [
            n if c.trial.study.startswith(c.trial.model) else f"{n}\n{c.trial.model}"
            for n, c in zip(names, ensemble.constituents)
        ]
        self.save(
            section,
            self.plots.plot_weights(labels, weights / weights.sum()),
            "ensemble-weights.png",
            "Weights",
            "Each constituent's share of the blended probabilities (chosen on out-of-fold predictions only).",
        )
        self.save(
            section,
            self.plots.plot_ensemble_scores(labels, cvs, ens_cv, None if local is None else local.accuracy),
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
            self.plots.plot_digit_grid(X_test[order], titles, "Test digits the constituents disagree on most"),
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
        if isinstance(exc, (Skip, runs.ArtifactError)):
            self.section.notes.append(f"{self.what}: {exc}")
            return True
        return False


# --- metrics ---------------------------------------------------------------------------------


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


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "study"
