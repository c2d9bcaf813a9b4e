"""`mlp`: scikit-learn StandardScaler -> optional PCA -> MLPClassifier (Adam, early stopping).

The classic one-hidden-layer-of-100 net (about 0.97) is the default; the search space goes up to two
layers of 1024-512 units. With `--augment` each training fold gets one augmented copy of every image
(rotation, zoom and shift through kaggle_digits.models.augment), so the net trains on twice the rows.
Early stopping uses scikit-learn's own 10% split of the training fold; the held-out fold only feeds the
per-epoch report (on_epoch), never training or stopping.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from kaggle_digits import N_CLASSES, N_PIXELS, tflog
from kaggle_digits.io import atomic_path
from kaggle_digits.models import augment
from kaggle_digits.models.augment import RECIPE as RECIPE_AUGMENT
from kaggle_digits.models.augment import search_space as augment_space
from kaggle_digits.models.base import EpochCallback, FitResult

# Hidden layers as "units-units": one categorical keeps the space small and the params readable.
HIDDEN = ("100", "256", "512", "1024", "256-128", "512-256", "1024-512")
PCA_COMPONENTS = (0, 50, 100, 200)  # 0 = no PCA
BATCH_SIZES = (64, 128, 200, 256)
MAX_EPOCHS = 200  # scikit-learn's max_iter default; early stopping ends most fits long before
PATIENCE = 10  # scikit-learn's n_iter_no_change default
VALIDATION_FRACTION = 0.1  # of the training fold, for early stopping (scikit-learn's default)
# scikit-learn catches KeyboardInterrupt inside its training loop and only warns with this text.
_INTERRUPTED = "Training interrupted by user"


class _ReportingMLP(MLPClassifier):
    """MLPClassifier that calls `_epoch_hook(self)` after every epoch (the hook is never pickled), and
    with `_stop_by` (a time.time()) stops as its early stopping does when the next epoch would end later."""

    _epoch_hook: Callable[[MLPClassifier], None] | None = None
    _stop_by: float | None = None
    _epoch_began: float | None = None

    def _update_no_improvement_count(self, *args: Any, **kwargs: Any) -> None:
        # scikit-learn calls this once at the end of each epoch of its stochastic solvers, and stops
        # when the count exceeds n_iter_no_change right after.
        super()._update_no_improvement_count(*args, **kwargs)
        if self._epoch_hook is not None:
            self._epoch_hook(self)
        now = time.time()
        if self._stop_by is not None and self._epoch_began is not None:
            if now + (now - self._epoch_began) > self._stop_by:
                self._no_improvement_count = self.n_iter_no_change + 1
        self._epoch_began = now


def _flat(X: np.ndarray) -> np.ndarray:
    """uint8 images (n, 28, 28) or (n, 784) -> float32 (n, 784)."""
    return np.asarray(X).reshape(len(X), N_PIXELS).astype(np.float32)


def _augmented_copy(X: np.ndarray, params: dict[str, Any], seed: int) -> np.ndarray:
    """One randomly rotated/zoomed/shifted copy of uint8 images (n, 28, 28), same shape and dtype."""
    tf = tflog.import_tensorflow()

    magnitudes = augment.Magnitudes.from_params(params)
    images = tf.constant(np.asarray(X, dtype=np.float32).reshape(len(X), 28, 28, 1))
    moved = augment.random_augment(images, magnitudes, seed=tf.constant([seed, 0], dtype=tf.int32))
    return np.clip(np.rint(moved.numpy()), 0, 255).astype(np.uint8).reshape(X.shape)


class MlpSpec:
    name = "mlp"
    model_suffix = ".joblib"
    presets = {
        "quick": {"trials": 2, "folds": 3, "epochs": 20, "subsample": 20_000},
        "standard": {"trials": None, "timeout": 3600, "folds": 5},
        "full": {"trials": 50, "folds": 5},
    }

    def search_space(self, trial: Any, augment: bool) -> dict[str, Any]:
        """Hidden layers 100 .. 1024-512, optional PCA, L2 alpha, Adam learning rate and batch size."""
        params: dict[str, Any] = {
            "hidden": trial.suggest_categorical("hidden", HIDDEN),
            "pca": trial.suggest_categorical("pca", PCA_COMPONENTS),
            "alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
            "learning_rate_init": trial.suggest_float("learning_rate_init", 1e-4, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
            "epochs": MAX_EPOCHS,
        }
        if augment:
            params.update(augment_space(trial))
        return params

    def default_params(self, augment: bool) -> dict[str, Any]:
        """The classic net: 784-100-10, no PCA, scikit-learn's defaults (alpha 1e-4, Adam 1e-3, batch 200)."""
        params: dict[str, Any] = {
            "hidden": "100",
            "pca": 0,
            "alpha": 1e-4,
            "learning_rate_init": 1e-3,
            "batch_size": 200,
            "epochs": MAX_EPOCHS,
        }
        if augment:
            params.update(RECIPE_AUGMENT)
        return params

    def default_suggestions(self, augment: bool) -> dict[str, Any]:
        """default_params without the fixed epochs: every other key is a suggested name."""
        return {key: value for key, value in self.default_params(augment).items() if key != "epochs"}

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
        """Train on X uint8 (n, 28, 28), y (n,). Reports loss and val_accuracy (on X_val) after each epoch;
        with stop_by, stops (as its early stopping does) when the next epoch would end after it."""
        epochs = int(params.get("epochs", MAX_EPOCHS))
        if max_epochs is not None:
            epochs = min(epochs, int(max_epochs))
        if augment.Magnitudes.from_params(params).active:
            X = np.concatenate([X, _augmented_copy(X, params, seed)])
            y = np.concatenate([y, y])
        mlp = _ReportingMLP(
            hidden_layer_sizes=tuple(int(u) for u in str(params["hidden"]).split("-")),
            alpha=float(params["alpha"]),
            learning_rate_init=float(params["learning_rate_init"]),
            # scikit-learn warns when a batch exceeds the rows left after its early-stopping split
            batch_size=min(int(params["batch_size"]), len(X) - math.ceil(VALIDATION_FRACTION * len(X))),
            max_iter=epochs,
            early_stopping=True,
            validation_fraction=VALIDATION_FRACTION,
            n_iter_no_change=PATIENCE,
            random_state=seed,
            verbose=verbose,
        )
        pca = int(params.get("pca", 0))
        model = Pipeline(
            [
                ("scale", StandardScaler()),
                ("pca", PCA(pca, random_state=seed) if pca else "passthrough"),
                ("mlp", mlp),
            ]
        )
        val_accuracy: list[float] = []
        if X_val is not None and y_val is not None:
            Xv_raw, yv = _flat(X_val), np.asarray(y_val)
            Xv: list[np.ndarray] = []  # X_val through the fitted scaler/PCA, computed at the first epoch

            def hook(net: MLPClassifier) -> None:
                if not Xv:
                    Xv.append(model[:-1].transform(Xv_raw))
                val_accuracy.append(float((net.predict(Xv[0]) == yv).mean()))
                if on_epoch is not None:
                    epoch = len(net.loss_curve_) - 1
                    on_epoch(epoch, {"loss": float(net.loss_curve_[-1]), "val_accuracy": val_accuracy[-1]})

            mlp._epoch_hook = hook
        mlp._stop_by, mlp._epoch_began = stop_by, time.time()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.fit(_flat(X), np.asarray(y))
        finally:
            mlp._epoch_hook = mlp._stop_by = mlp._epoch_began = None
        for w in caught:
            if _INTERRUPTED in str(w.message):
                raise KeyboardInterrupt
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        history: dict[str, list[float]] = {
            "loss": [float(v) for v in mlp.loss_curve_],
            "early_stopping_accuracy": [float(v) for v in mlp.validation_scores_],
        }
        if val_accuracy:
            history["val_accuracy"] = val_accuracy
        return FitResult(model=model, history=history, epochs=int(mlp.n_iter_))

    def predict_proba(self, model: Pipeline, X: np.ndarray) -> np.ndarray:
        """Class probabilities float32 (n, 10), rows summing to 1, for uint8 images (n, 28, 28)."""
        proba = model.predict_proba(_flat(X)).astype(np.float32)
        assert proba.shape[1] == N_CLASSES, "every fold sees all 10 digits (stratified folds)"
        return proba / proba.sum(axis=1, keepdims=True)

    def gradient_fn(self, model: Pipeline) -> None:
        """No gradients through scikit-learn's pipeline: attribution maps use occlusion."""
        return None

    def save(self, model: Pipeline, path: Path) -> None:
        """Write the fitted pipeline to `path` (.joblib), atomically."""
        with atomic_path(path) as tmp:
            joblib.dump(model, tmp)

    def load(self, path: Path) -> Pipeline:
        return joblib.load(path)


SPEC = MlpSpec()
