"""`cnn`: a Keras convolutional net — conv blocks (conv-BN-ReLU or conv-ReLU-BN, then a strided conv or
max-pooling), dropout, a small head. Its default is the public single-CNN recipe's network with 2x2
max-pooling in place of its stride-2 convs, trained on a one-cycle schedule (docs/models.md gives the
values, docs/experiments.md why each differs from the recipe)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kaggle_digits.models import keras_common as kc
from kaggle_digits.models.augment import RECIPE as RECIPE_AUGMENT
from kaggle_digits.models.augment import search_space as augment_space
from kaggle_digits.models.keras_common import keras

BATCH_SIZES = (32, 64, 128, 256)
DENSE_UNITS = (0, 128, 256)
DOWNSAMPLE = ("stride", "maxpool")


def _conv(x, filters: int, kernel: int, norm, strides: int = 1, padding: str = "valid", norm_last: bool = False):
    """conv-BN-ReLU, or with norm_last conv(+bias)-ReLU-BN (the order of the public recipe's code)."""
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=norm is None or norm_last)(x)
    if norm is not None and not norm_last:
        x = norm()(x)
    x = keras.layers.Activation("relu")(x)
    return norm()(x) if norm is not None and norm_last else x


def build(params: dict[str, Any], batchnorm_layer: Callable[[], keras.layers.Layer] = kc.BatchNorm) -> keras.Model:
    """Per block of `filters`: convs_per_block x conv3x3 (valid), then a 5x5 stride-2 conv ("stride")
    or 2x2 max-pooling ("maxpool"), then dropout; each conv is conv-BN-ReLU, or conv-ReLU-BN with
    `norm_last`. Then an optional 4x4 conv of `final_conv` filters,
    flatten, an optional Dense(dense_units), dropout, 10 softmax.

    batchnorm_layer makes each batch-norm layer: ours (fused) by default; benchmarks/throughput.py
    passes keras.layers.BatchNormalization to build the same network from plain Keras layers."""
    inputs = kc.model_input()
    x = kc.images_in(inputs)
    batchnorm = batchnorm_layer if params.get("batchnorm", True) else None
    last = bool(params.get("norm_last", False))
    dropout = float(params.get("dropout", 0.0))
    for filters in params["filters"]:
        for _ in range(int(params["convs_per_block"])):
            x = _conv(x, int(filters), 3, batchnorm, norm_last=last)
        if params["downsample"] == "stride":
            x = _conv(x, int(filters), 5, batchnorm, strides=2, padding="same", norm_last=last)
        else:
            x = keras.layers.MaxPooling2D(2)(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout)(x)
    final = int(params.get("final_conv", 0))
    if final:
        x = _conv(x, final, min(4, x.shape[1]), batchnorm, norm_last=last)
    x = keras.layers.Flatten()(x)
    dense = int(params.get("dense_units", 0))
    if dense:
        x = _dense(x, dense, batchnorm)
    if dropout > 0:
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, kc.classifier_out(x), name="cnn")


def _dense(x, units: int, norm):
    x = keras.layers.Dense(units, use_bias=norm is None)(x)
    if norm is not None:
        x = norm()(x)
    return keras.layers.Activation("relu")(x)


class CnnSpec(kc.KerasSpec):
    name = "cnn"
    # quick: `fast` precision (bf16 on a CPU that has it) for a run bounded by minutes; standard: the
    # recipe in full (45 epochs with --augment) on 5 folds in `auto` precision; full: a real search.
    presets = {
        "quick": {"trials": 1, "folds": 2, "epochs": 8, "precision": "fast"},
        "standard": {"trials": None, "timeout": 3600, "folds": 5},
        "full": {"trials": 20, "folds": 5},
    }

    def build(self, params: dict[str, Any]) -> keras.Model:
        return build(params)

    def search_space(self, trial: Any, augment: bool) -> dict[str, Any]:
        """1-2 blocks of 16-48 filters (doubling), 1-2 convs each, stride or maxpool, optional 128C4 and
        dense head, dropout 0-0.5, Adam lr/decay, batch 32-256 (covers Conv32-MaxPool-Dense128 and the recipe)."""
        n_blocks = trial.suggest_int("n_blocks", 1, 2)
        base = trial.suggest_categorical("base_filters", (16, 32, 48))
        params: dict[str, Any] = {
            "filters": [base * 2**i for i in range(n_blocks)],
            "convs_per_block": trial.suggest_int("convs_per_block", 1, 2),
            "downsample": trial.suggest_categorical("downsample", DOWNSAMPLE),
            "final_conv": trial.suggest_categorical("final_conv", (0, 128)),
            "dense_units": trial.suggest_categorical("dense_units", DENSE_UNITS),
            "batchnorm": trial.suggest_categorical("batchnorm", (True, False)),
            "norm_last": trial.suggest_categorical("norm_last", (True, False)),
            **kc.training_space(trial, (3e-4, 3e-3), BATCH_SIZES, epochs=45 if augment else 30, patience=0),
            "schedule": trial.suggest_categorical("schedule", kc.SCHEDULES),
        }
        if augment:
            params.update(augment_space(trial))
        return params

    def default_params(self, augment: bool) -> dict[str, Any]:
        """The public recipe's network with max-pooling, on a one-cycle schedule (see the module docstring);
        `{"downsample": "stride", "dropout": 0.4, "schedule": "exponential", "lr": 1e-3}` over it gives the
        recipe's own."""
        params: dict[str, Any] = {
            "filters": [32, 64],
            "convs_per_block": 2,
            "downsample": "maxpool",
            "final_conv": 128,
            "dense_units": 0,
            "batchnorm": True,
            "norm_last": True,
            "dropout": 0.2,
            "lr": 2e-3,
            "lr_decay": 0.95,  # unused by the one-cycle schedule; the recipe's, should `schedule` be changed
            "batch_size": 64,
            "epochs": 45 if augment else 30,
            "patience": 0,
            "schedule": "onecycle",
        }
        if augment:
            params.update(RECIPE_AUGMENT)
        return params

    def default_suggestions(self, augment: bool) -> dict[str, Any]:
        """default_params as search_space suggests it: the filters as n_blocks and base_filters."""
        suggested: dict[str, Any] = {"n_blocks": 2, "base_filters": 32, "convs_per_block": 2, "downsample": "maxpool"}
        suggested |= {"final_conv": 128, "dense_units": 0, "batchnorm": True, "norm_last": True}
        suggested |= {"dropout": 0.2, "lr": 2e-3, "lr_decay": 0.95, "batch_size": 64, "schedule": "onecycle"}
        return suggested | (RECIPE_AUGMENT if augment else {})


SPEC = CnnSpec()
