"""The one model interface. CV, tuning, ensembling, reports and predict never branch on the family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# Called after each epoch with the epoch number (0-based) and that epoch's metrics
# (at least "val_accuracy" when validation data was given). It may raise optuna.TrialPruned.
EpochCallback = Callable[[int, dict[str, float]], None]

# Given images X float32 (m, 28, 28) in 0-255 and one class per image (m,) int: the probability of each
# image's class, float32 (m,), and its gradient with respect to the pixels, float32 (m, 28, 28).
GradientFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class FitResult:
    """A fitted model and how it got there.

    model : whatever predict_proba/save accept
    history : per-epoch curves, e.g. {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}
    epochs : epochs actually run
    """

    model: Any
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0


KERAS_SUFFIX = ".keras"


class ModelSpec(Protocol):
    """What every family provides (see kaggle_digits/models/mlp.py, dense.py, cnn.py)."""

    name: str
    model_suffix: str  # file suffix of a saved fold model: KERAS_SUFFIX or ".joblib"
    # preset name (models.PRESET_NAMES) -> tune options it sets: trials, timeout, folds, epochs, subsample,
    # precision; a preset the family does not name sets nothing.
    presets: dict[str, dict[str, Any]]

    def search_space(self, trial: Any, augment: bool) -> dict[str, Any]:
        """Sample this family's hyperparameters from an optuna Trial (define-by-run); JSON-serialisable."""

    def default_params(self, augment: bool) -> dict[str, Any]:
        """A known-good point of the search space: the study's first trial."""

    def default_suggestions(self, augment: bool) -> dict[str, Any]:
        """The default as the values search_space suggests (name -> value): search_space answered with these
        returns default_params. The study's first trial is queued with them."""

    def fit(
        self,
        params: dict[str, Any],
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        max_epochs: int | None = None,
        seed: int = 0,
        on_epoch: EpochCallback | None = None,
        verbose: bool = True,
        stop_by: float | None = None,
    ) -> FitResult:
        """Train on X uint8 (n, 28, 28), y (n,) in 0..9. Validation data only feeds monitoring,
        early stopping and on_epoch; it never trains the model. max_epochs caps params' epochs.
        stop_by: a time (time.time()) by which training should end; after each epoch the fit stops
        when the next would end later (at least one epoch runs)."""

    def predict_proba(self, model: Any, X: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 of shape (n, 10), rows summing to 1."""

    def gradient_fn(self, model: Any) -> GradientFn | None:
        """The model's class-probability gradients (for attribution maps), or None when the family has
        none; attribution then falls back to occlusion, which needs only predict_proba."""

    def save(self, model: Any, path: Path) -> None:
        """Write the fitted model to `path` (ending in model_suffix), atomically."""

    def load(self, path: Path) -> Any:
        """Read a model written by save."""


def uses_tensorflow(spec: ModelSpec) -> bool:
    """Whether the family's models are Keras models: a precision policy and TensorFlow's threads apply to
    them, and a process that fits one loads TensorFlow."""
    return spec.model_suffix == KERAS_SUFFIX
