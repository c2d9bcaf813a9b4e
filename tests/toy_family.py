"""A toy model family for tests/test_architecture.py: nearest class centroid, softmax over distances.
It is everything a family needs: this module and one line in kaggle_digits.models.FAMILIES."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits import N_CLASSES
from kaggle_digits.io import atomic_open
from kaggle_digits.models.base import FitResult


class ToySpec:
    name = "toy"
    model_suffix = ".npz"
    presets = {"quick": {"trials": 1, "folds": 2}, "standard": {"trials": 2}, "full": {"trials": 3}}

    def search_space(self, trial: Any, augment: bool) -> dict[str, Any]:
        return {"temperature": trial.suggest_float("temperature", 100.0, 2000.0, log=True)}

    def default_params(self, augment: bool) -> dict[str, Any]:
        return {"temperature": 500.0}

    def default_suggestions(self, augment: bool) -> dict[str, Any]:
        return self.default_params(augment)

    def fit(
        self,
        params,
        X,
        y,
        X_val=None,
        y_val=None,
        *,
        max_epochs=None,
        seed=0,
        on_epoch=None,
        verbose=True,
        stop_by=None,
    ):
        flat = X.reshape(len(X), -1).astype(np.float32) / 255.0
        centroids = np.stack([flat[y == k].mean(axis=0) for k in range(N_CLASSES)])
        model = {"centroids": centroids, "temperature": float(params["temperature"])}
        history: dict[str, list[float]] = {}
        if X_val is not None:
            accuracy = float((self.predict_proba(model, X_val).argmax(axis=1) == y_val).mean())
            history["val_accuracy"] = [accuracy]
            if on_epoch is not None:
                on_epoch(0, {"val_accuracy": accuracy})
        return FitResult(model=model, history=history, epochs=1)

    def predict_proba(self, model: Any, X: np.ndarray) -> np.ndarray:
        flat = X.reshape(len(X), -1).astype(np.float32) / 255.0
        distances = ((flat[:, None, :] - model["centroids"][None]) ** 2).sum(axis=2)
        logits = -distances * model["temperature"] / flat.shape[1]
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return (proba / proba.sum(axis=1, keepdims=True)).astype(np.float32)

    def gradient_fn(self, model: Any) -> None:
        """No gradients: attribution maps of this family use occlusion."""
        return None

    def save(self, model: Any, path: Path) -> None:
        with atomic_open(path, "wb") as f:
            np.savez(f, centroids=model["centroids"], temperature=model["temperature"])

    def load(self, path: Path) -> Any:
        with np.load(path) as saved:
            return {"centroids": saved["centroids"], "temperature": float(saved["temperature"])}


SPEC = ToySpec()
