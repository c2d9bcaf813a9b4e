"""`dense`: a Keras fully connected net — Dense blocks with optional BatchNorm and Dropout, Adam with an
exponential learning-rate schedule, early stopping on validation accuracy (best weights restored)."""

from __future__ import annotations

from typing import Any

from kaggle_digits.models import keras_common as kc
from kaggle_digits.models.augment import RECIPE as RECIPE_AUGMENT
from kaggle_digits.models.augment import search_space as augment_space
from kaggle_digits.models.keras_common import keras

UNITS = (32, 50, 64, 128, 256, 512)
BATCH_SIZES = (32, 64, 128, 256)
MAX_LAYERS = 4


def build(params: dict[str, Any]) -> keras.Model:
    """784 -> [Dense(units) -> BatchNorm? -> ReLU -> Dropout]* -> 10 softmax."""
    inputs = kc.model_input()
    x = keras.layers.Flatten()(kc.images_in(inputs))
    batchnorm = bool(params.get("batchnorm", False))
    dropout = float(params.get("dropout", 0.0))
    for units in params["units"]:
        x = keras.layers.Dense(int(units), use_bias=not batchnorm)(x)
        if batchnorm:
            x = kc.BatchNorm()(x)
        x = keras.layers.Activation("relu")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, kc.classifier_out(x), name="dense")


class DenseSpec(kc.KerasSpec):
    name = "dense"
    presets = {
        "quick": {"trials": 2, "folds": 3, "epochs": 10},
        "standard": {"trials": None, "timeout": 3600, "folds": 5, "epochs": 30},
        "full": {"trials": 50, "folds": 5},
    }

    def build(self, params: dict[str, Any]) -> keras.Model:
        return build(params)

    def search_space(self, trial: Any, augment: bool) -> dict[str, Any]:
        """1-4 layers of 32-512 units (covers 128-64, 50-50 and 512-256-128-64), BatchNorm, Dropout, Adam."""
        n_layers = trial.suggest_int("n_layers", 1, MAX_LAYERS)
        params: dict[str, Any] = {
            "units": [trial.suggest_categorical(f"units_{i}", UNITS) for i in range(n_layers)],
            "batchnorm": trial.suggest_categorical("batchnorm", (False, True)),
            **kc.training_space(trial, (1e-4, 3e-3), BATCH_SIZES, epochs=40 if augment else 30, patience=5),
        }
        if augment:
            params.update(augment_space(trial))
        return params

    def default_params(self, augment: bool) -> dict[str, Any]:
        """784-128-64-10 with BatchNorm and Dropout 0.2, Adam 1e-3 decaying 5%/epoch, batch 128."""
        params: dict[str, Any] = {
            "units": [128, 64],
            "batchnorm": True,
            "dropout": 0.2,
            "lr": 1e-3,
            "lr_decay": 0.95,
            "batch_size": 128,
            "epochs": 40 if augment else 30,
            "patience": 5,
        }
        if augment:
            params.update(RECIPE_AUGMENT)
        return params

    def default_suggestions(self, augment: bool) -> dict[str, Any]:
        """default_params as search_space suggests it: the layers as n_layers and units_<i>."""
        suggested: dict[str, Any] = {"n_layers": 2, "units_0": 128, "units_1": 64, "batchnorm": True}
        suggested |= {"dropout": 0.2, "lr": 1e-3, "lr_decay": 0.95, "batch_size": 128}
        return suggested | (RECIPE_AUGMENT if augment else {})


SPEC = DenseSpec()
