"""`simplecnn`: the simple nets of An et al. 2020 (arXiv 2008.10400) — unpadded convolutions with batch
norm and ReLU, no pooling and no dropout, then one Dense(10) with batch norm before the softmax. `kernel`
picks M3, M5 or M7; `width` scales every layer's channels, for a member a CPU can afford. Trained as
their code trains it: Adam 1e-3, x0.98 an epoch, batch 120, rotation 20 degrees and translation 0.2.
docs/models.md gives the values and where this differs from their code."""

from __future__ import annotations

from typing import Any

from kaggle_digits import N_CLASSES
from kaggle_digits.models import keras_common as kc
from kaggle_digits.models.augment import search_space as augment_space
from kaggle_digits.models.keras_common import keras

# kernel size -> the channels of its convolutions (M3, M5, M7): each valid conv takes kernel - 1 pixels
# off the side, 28 -> 8 for M3 and M5, 28 -> 4 for M7.
CHANNELS = {
    3: (32, 48, 64, 80, 96, 112, 128, 144, 160, 176),
    5: (32, 64, 96, 128, 160),
    7: (48, 96, 144, 192),
}
WIDTHS = (0.25, 0.5, 0.75, 1.0)
BATCH_SIZES = (32, 64, 120, 256)
# Their augmentation (a rotation, then a translation, both uniform per image), and what --augment
# searches for this family: up to theirs, which lie beyond the shared augment.RANGES.
PAPER_AUGMENT = {"rotation": 20.0, "zoom": 0.0, "shift": 0.2}
AUGMENT_RANGES = {"rotation": (0.0, 20.0), "zoom": (0.0, 0.15), "shift": (0.0, 0.2)}


def channels(params: dict[str, Any]) -> list[int]:
    """The convolutions' channels: those of the `kernel`'s net scaled by `width` (at least 1 each)."""
    kernel = int(params["kernel"])
    if kernel not in CHANNELS:
        raise ValueError(f"params kernel={params['kernel']!r}: choose one of {', '.join(map(str, CHANNELS))}")
    width = float(params.get("width", 1.0))
    if width <= 0:
        raise ValueError(f"params width={params['width']!r}: a multiplier of the channels must be above 0")
    return [max(1, round(c * width)) for c in CHANNELS[kernel]]


def build(params: dict[str, Any]) -> keras.Model:
    """[conv kxk (valid, no bias) -> BatchNorm -> ReLU] per channel count, flatten ("features"), then
    Dense(10, no bias) -> BatchNorm -> softmax. Their code scales pixels to [-1, 1]; ours to [0, 1]
    (kc.images_in): the batch norm after the first conv takes out the difference."""
    kernel = int(params["kernel"])
    inputs = kc.model_input()
    x = kc.images_in(inputs)
    for filters in channels(params):
        x = keras.layers.Conv2D(filters, kernel, padding="valid", use_bias=False)(x)
        x = kc.BatchNorm()(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.Flatten(name="features")(x)
    x = keras.layers.Dense(N_CLASSES, use_bias=False, name="logits")(x)
    x = kc.BatchNorm(name="logits_norm")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="proba")(x)
    return keras.Model(inputs, outputs, name="simplecnn")


class SimpleCnnSpec(kc.KerasSpec):
    name = "simplecnn"
    # M5 at full width costs several times the cnn per image: quick trains it on a subsample in `fast`
    # precision; standard and full as the cnn's (a search that can also pick narrower nets).
    presets = {
        "quick": {"trials": 1, "folds": 2, "epochs": 5, "subsample": 10000, "precision": "fast"},
        "standard": {"trials": None, "timeout": 3600, "folds": 5},
        "full": {"trials": 20, "folds": 5},
    }

    def build(self, params: dict[str, Any]) -> keras.Model:
        return build(params)

    def search_space(self, trial: Any, augment: bool) -> dict[str, Any]:
        """M3, M5 or M7 at a quarter to full width, Adam lr/decay, exponential or one-cycle schedule, batch
        32-256 (with their 120), and with --augment rotation 0-20 degrees, zoom 0-0.15, shift 0-0.2."""
        params: dict[str, Any] = {
            "kernel": trial.suggest_categorical("kernel", tuple(CHANNELS)),
            "width": trial.suggest_categorical("width", WIDTHS),
            **kc.training_space(
                trial, (3e-4, 3e-3), BATCH_SIZES, epochs=45 if augment else 30, patience=0, dropout=False
            ),
            "schedule": trial.suggest_categorical("schedule", kc.SCHEDULES),
        }
        if augment:
            params.update(augment_space(trial, AUGMENT_RANGES))
        return params

    def default_params(self, augment: bool) -> dict[str, Any]:
        """M5 at full width, Adam 1e-3 x0.98 an epoch, batch 120; with augment their rotation and shift."""
        params: dict[str, Any] = {
            "kernel": 5,
            "width": 1.0,
            "lr": 1e-3,
            "lr_decay": 0.98,
            "batch_size": 120,
            "epochs": 45 if augment else 30,
            "patience": 0,
            "schedule": "exponential",
        }
        if augment:
            params.update(PAPER_AUGMENT)
        return params

    def default_suggestions(self, augment: bool) -> dict[str, Any]:
        """default_params as search_space suggests it (epochs and patience are fixed, not suggested)."""
        params = self.default_params(augment)
        return {name: value for name, value in params.items() if name not in ("epochs", "patience")}


SPEC = SimpleCnnSpec()
