"""What the Keras families (dense, cnn, simplecnn) share: input pipeline, training loop, LR schedule, early stopping,
the on_epoch bridge, seeding, save and load.

The input path: the uint8 training images stay resident in one tensor; each epoch shuffles indices and
gathers whole batches from it (no per-epoch Python copy) and casts them to float. The dataset repeats
once per epoch and fit runs a fixed number of steps per epoch, so one iterator serves the whole fit: Keras otherwise
builds a new iterator every epoch, which stalls that epoch's first step. Augmentation (kaggle_digits.models.augment, one random affine transform per
image) runs inside the compiled training step, in a layer wrapped around the model for fit only: the
returned and saved model never holds it, and validation, prediction and test images never pass
through it. Batch-norm moving statistics are re-estimated on training images before each validation
and at the end of a fit (batchnorm.py). The model itself scales pixels to [0, 1]
(a Rescaling layer), so a saved model takes raw 0-255 pixels. Keras and TensorFlow are imported only
here and in the family modules, after the thread environment is set.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits import IMAGE_SHAPE, N_CLASSES, tflog
from kaggle_digits.io import atomic_path
from kaggle_digits.models import augment, hardware
from kaggle_digits.models.base import KERAS_SUFFIX, EpochCallback, FitResult, GradientFn

hardware.set_thread_env()
tflog.import_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from kaggle_digits.models.batchnorm import BatchNorm, BatchNormStatistics  # noqa: E402, F401  (BatchNorm: the families' layer)

# Each fit builds a fresh model, so TensorFlow's "retracing" warnings are expected noise here.
tf.get_logger().setLevel("ERROR")

INPUT_SHAPE = (*IMAGE_SHAPE, 1)
EVAL_BATCH = 1024  # validation and prediction: no gradients, so bigger batches are simply faster
# XLA trained the cnn slower on a CPU, so it is off. A few training steps per call into the compiled
# graph beat one step per call and beat more steps per call (docs/experiments.md, "Speed on a 2-core CPU").
# See steps_per_execution for why it must divide the steps of an epoch.
STEPS_PER_EXECUTION = 4
JIT_COMPILE = False


def images_in(inputs: keras.KerasTensor) -> keras.KerasTensor:
    """The common model entrance: raw 0-255 pixels (b, 28, 28, 1) -> float in [0, 1]."""
    return keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)


def classifier_out(x: keras.KerasTensor) -> keras.KerasTensor:
    """Logits -> softmax probabilities, always float32 (mixed precision would otherwise give bf16/fp16)."""
    x = keras.layers.Dense(N_CLASSES, name="logits")(x)
    return keras.layers.Activation("softmax", dtype="float32", name="proba")(x)


def model_input() -> keras.KerasTensor:
    return keras.Input(shape=INPUT_SHAPE, name="pixels")


@keras.saving.register_keras_serializable(package="kaggle_digits")
class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam's update (same formula, bias correction and epsilon) in one TensorFlow
    kernel per variable, ResourceApplyAdam, instead of a dozen element-wise ops and assignments.

    Keras 3 writes Adam as separate subtract/multiply/square/sqrt/divide ops plus three assignments per
    variable, each a kernel launch, which a profile of the cnn's step showed. AMSGrad falls back to Keras' own update."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )


class _RandomAugment(keras.layers.Layer):
    """Training-only augmentation inside the training step (never part of a returned or saved model).

    Running it in the step beat running it in a parallel tf.data map: on a few shared cores the map's
    threads competed with the step's (docs/experiments.md, "Speed on a 2-core CPU")."""

    def __init__(self, magnitudes: augment.Magnitudes, **kwargs: Any) -> None:
        super().__init__(dtype="float32", **kwargs)
        self.magnitudes = magnitudes

    def call(self, inputs, training=None):
        return augment.random_augment(inputs, self.magnitudes) if training else inputs


def _check_images(X: np.ndarray, what: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 2 and X.shape[1] == IMAGE_SHAPE[0] * IMAGE_SHAPE[1]:
        X = X.reshape(len(X), *IMAGE_SHAPE)
    if X.shape[1:] not in (IMAGE_SHAPE, INPUT_SHAPE):
        raise ValueError(f"{what}: expected images of shape (n, 28, 28), got {X.shape}")
    return X.reshape(len(X), *INPUT_SHAPE)


def _fixed() -> tf.data.Options:
    """Dataset options without tf.data's autotuning. Our pipelines are a gather and a cast with a fixed
    prefetch, so there is nothing to tune; and waiting for the autotuner's background thread held up the
    deletion of a fit's iterator, the end of the fit, in fold processes running side by side
    (docs/experiments.md, "A fit's end held up")."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def train_dataset(X: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epochs: int) -> tf.data.Dataset:
    """`epochs` passes of shuffled training batches (float32 (b, 28, 28, 1) in 0-255, int32 (b,)),
    reshuffled each pass.

    Finite on purpose, and without tf.data's autotuning (see _fixed): an endless dataset keeps its
    prefetching thread on a pass nobody will read when the fit ends."""
    images = tf.constant(_check_images(X, "X"))  # uint8, resident for the whole fit
    labels = tf.constant(np.asarray(y, dtype=np.int32))
    n = len(labels)

    def batch(indices):
        x = tf.cast(tf.gather(images, indices), tf.float32)
        return x, tf.gather(labels, indices)

    return (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(batch)  # a gather and a cast: cheap enough to run inline
        .repeat(epochs)  # one iterator for the whole fit; each pass reshuffles (see fit's steps_per_epoch)
        .prefetch(2)
        .with_options(_fixed())
    )


def eval_dataset(X: np.ndarray, y: np.ndarray | None = None) -> tf.data.Dataset:
    """Unaugmented batches of EVAL_BATCH images (float32 in 0-255), with labels when given."""
    images = tf.constant(_check_images(X, "X"))
    ds = tf.data.Dataset.from_tensor_slices(images if y is None else (images, np.asarray(y, dtype=np.int32)))

    def cast(x, *label):
        return (tf.cast(x, tf.float32), *label) if label else tf.cast(x, tf.float32)

    return ds.batch(EVAL_BATCH).map(cast).prefetch(2).with_options(_fixed())


class _EpochBridge(keras.callbacks.Callback):
    """Hands each epoch's metrics to the caller's on_epoch (which may raise optuna.TrialPruned)."""

    def __init__(self, on_epoch: EpochCallback):
        super().__init__()
        self._on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._on_epoch(epoch, {k: float(v) for k, v in (logs or {}).items()})


class _StopBy(keras.callbacks.Callback):
    """Ends a fit by `stop_by` (a time.time()): after each epoch, the epochs that still fit at the pace of
    those run (the first, which also builds the graph, counted only until there are others) become the
    fit's length, from the epochs done up to those planned, and the schedule is fitted to it
    (FittedSchedule.fit_to). A length cut after a slow first epoch grows back when the next are faster."""

    def __init__(self, stop_by: float, epochs: int, schedule: FittedSchedule) -> None:
        super().__init__()
        self.stop_by, self.planned, self.epochs, self.schedule = stop_by, epochs, epochs, schedule
        self.durations: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._began = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.time()
        self.durations.append(now - self._began)
        done = epoch + 1
        pace = float(np.median(self.durations[1:] or self.durations))
        length = max(done, min(self.planned, done + int((self.stop_by - now) // pace)))
        if length != self.epochs:
            self.epochs = length
            self.schedule.fit_to(length)
        if done >= self.epochs:
            self.model.stop_training = True


# One-cycle: the rate climbs linearly from lr / ONECYCLE_START to lr over the first ONECYCLE_WARMUP of
# the steps, then follows a cosine down to lr * ONECYCLE_END at the last step.
ONECYCLE_WARMUP = 0.2
ONECYCLE_START = 10.0
ONECYCLE_END = 1e-3
SCHEDULES = ("exponential", "onecycle")


@keras.saving.register_keras_serializable(package="kaggle_digits")
class FittedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The params' learning-rate schedule fitted to the epochs a fit runs: "exponential" (lr * decay**epoch,
    a staircase stepped once per epoch) or "onecycle" (a linear warm-up from lr / ONECYCLE_START to lr
    over ONECYCLE_WARMUP of the steps, then a cosine to lr * ONECYCLE_END at the last step).

    The exponential staircase is made for its full length (the recipe: x0.95 per epoch over 45 epochs ends
    at 0.1x the first rate); a fit that runs fewer epochs (a cap, a plan) keeping x0.95 would stop at a high
    rate, before the annealing that gives the last accuracy, so the same total decay is spread over the
    epochs run: decay ** (planned / epochs) per epoch.

    The epochs it is fitted to live in a variable: a fit that must end sooner (fit's stop_by) calls
    `fit_to`, and the rest of its steps follow the schedule of the shorter fit, so it still ends annealed.
    """

    def __init__(self, kind: str, lr: float, steps_per_epoch: int, epochs: float, planned: int, decay: float) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {kind!r}")
        self.kind, self.lr, self.steps_per_epoch = kind, float(lr), int(steps_per_epoch)
        self.planned, self.decay = int(planned), float(decay)
        self.epochs = keras.Variable(float(epochs), dtype="float32", trainable=False, name="schedule_epochs")

    def fit_to(self, epochs: int) -> None:
        """Fit the steps still to come to a fit of `epochs` epochs (at most those it was made for)."""
        self.epochs.assign(float(epochs))

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        if self.kind == "exponential":
            # the decay spread over the epochs run when they are fewer than planned
            exponent = ops.where(self.epochs < self.planned, self.planned / self.epochs, 1.0)
            rate = ops.power(self.decay, exponent)
            return self.lr * ops.power(rate, ops.floor(step / self.steps_per_epoch))
        steps = ops.maximum(1.0, ops.round(self.epochs * self.steps_per_epoch))
        warmup = ops.floor(ONECYCLE_WARMUP * steps)
        start = self.lr / ONECYCLE_START
        rising = start + (self.lr - start) * step / ops.maximum(warmup, 1.0)
        progress = ops.minimum(1.0, (step - warmup) / ops.maximum(steps - warmup, 1.0))
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        falling = self.lr * ((1.0 - ONECYCLE_END) * cosine + ONECYCLE_END)
        return ops.where(step < warmup, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "lr": self.lr,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": float(self.epochs.numpy()),
            "planned": self.planned,
            "decay": self.decay,
        }


def learning_rate_schedule(params: dict[str, Any], steps_per_epoch: int, epochs: int | None = None) -> FittedSchedule:
    """The params' `schedule` ("exponential", the default, or "onecycle"; FittedSchedule) over the epochs
    that run: params' `epochs`, or `epochs` when fewer."""
    planned = int(params["epochs"])
    run = planned if epochs is None else min(planned, int(epochs))
    kind = params.get("schedule", "exponential")
    return FittedSchedule(kind, float(params["lr"]), steps_per_epoch, run, planned, float(params.get("lr_decay", 1.0)))


def steps_per_execution(steps_per_epoch: int) -> int:
    """The most training steps per graph call, up to STEPS_PER_EXECUTION, that divide an epoch's steps.

    Keras runs every call's steps in full; on the repeated training dataset a call that crossed the end
    of an epoch would take the next epoch's batches, and epochs (and the per-epoch learning rate) would
    drift off the passes over the data."""
    return next(k for k in range(STEPS_PER_EXECUTION, 0, -1) if steps_per_epoch % k == 0)


def compile_model(
    model: keras.Model, params: dict[str, Any], steps_per_epoch: int, epochs: int | None = None
) -> FittedSchedule:
    """Adam (FusedAdam) on the params' learning_rate_schedule, cross-entropy on the integer labels,
    steps_per_execution(steps_per_epoch) train steps per graph call. Returns the schedule."""
    schedule = learning_rate_schedule(params, steps_per_epoch, epochs)
    model.compile(
        optimizer=FusedAdam(learning_rate=schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution(steps_per_epoch),
        jit_compile=JIT_COMPILE,
    )
    return schedule


# Training levers measured and not adopted, which the toolkit no longer has, at their off values: older
# trials' params.json may hold them so (docs/experiments.md, "Levers tried").
RETIRED = {"ema": 0.0, "label_smoothing": 0.0, "snapshots": 1, "elastic": 0.0, "erasing": 0.0}


def check_retired(params: dict[str, Any]) -> None:
    """Refuse params that turn on a retired lever (RETIRED); its off value is accepted."""
    for name, off in RETIRED.items():
        if name in params and float(params[name]) != off:
            raise ValueError(f"params {name}={params[name]!r}: that lever was removed; only {off} (off) is accepted")


def fit(
    build,
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
    """Train `build(params)` (an uncompiled keras.Model) on X uint8 (n, 28, 28), y (n,) 0..9.

    params: lr, lr_decay, batch_size, epochs, optional patience (early stopping on val_accuracy with
    the best weights restored; 0 = off), rotation/zoom/shift (augmentation of training batches,
    augment.Magnitudes), schedule (learning_rate_schedule). Keys of RETIRED at their off value are
    accepted and ignored (older trials' params.json hold them); any other value is refused.
    The BatchNorm layers' moving statistics are re-estimated on training images before each validation
    and at the end (batchnorm.BatchNormStatistics), so a fit of any length predicts with its own.
    stop_by: a time (time.time()) by which training should end: the fit runs the epochs that still fit
    at the pace of its own, its learning-rate schedule fitted to them (_StopBy); at least one.
    """
    check_retired(params)
    hardware.ensure_configured()
    keras.utils.set_random_seed(seed)
    epochs = int(params["epochs"]) if max_epochs is None else min(int(params["epochs"]), int(max_epochs))
    batch_size = int(params["batch_size"])
    steps_per_epoch = math.ceil(len(X) / batch_size)
    model = build(params)
    magnitudes = augment.Magnitudes.from_params(params)
    trainer = model
    if magnitudes.active:
        trainer = keras.Sequential([model_input(), _RandomAugment(magnitudes), model])
    schedule = compile_model(trainer, params, steps_per_epoch, epochs)

    # First, so that validation, early stopping and on_epoch see the re-estimated statistics.
    statistics = BatchNormStatistics(model, _check_images(X, "X"), seed)
    callbacks: list[keras.callbacks.Callback] = [statistics]
    validation = None
    if X_val is not None and y_val is not None:
        validation = eval_dataset(X_val, y_val)
        patience = int(params.get("patience", 0))
        if patience > 0:
            callbacks.append(
                keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=patience, restore_best_weights=True)
            )
    if stop_by is not None:
        callbacks.append(_StopBy(stop_by, epochs, schedule))
    if on_epoch is not None:
        callbacks.append(_EpochBridge(on_epoch))
    history = trainer.fit(
        train_dataset(X, y, batch_size, seed, epochs),
        validation_data=validation,
        epochs=epochs,
        callbacks=callbacks,
        steps_per_epoch=steps_per_epoch,  # one pass over the repeated dataset
        shuffle=False,  # the dataset reshuffles itself each epoch
        verbose=2 if verbose else 0,
    )
    curves = {k: [float(v) for v in values] for k, values in history.history.items() if k != "learning_rate"}
    return FitResult(model=model, history=curves, epochs=len(curves.get("loss", [])))


def predict_proba(model: keras.Model, X: np.ndarray) -> np.ndarray:
    """Class probabilities float32 (n, 10), rows summing to 1, for uint8 images (n, 28, 28)."""
    if len(X) <= EVAL_BATCH:
        # One batch (a drawing, a few files): predict_on_batch skips model.predict's per-call setup (a
        # tf.data pipeline and a predict loop), which costs far more than the prediction itself.
        images = _check_images(X, "X").astype(np.float32)
        proba = np.asarray(model.predict_on_batch(images), dtype=np.float32)
    else:
        proba = model.predict(eval_dataset(X), verbose=0).astype(np.float32)
    return proba / proba.sum(axis=1, keepdims=True)


def gradient_fn(model: keras.Model) -> GradientFn:
    """The gradient of each image's class probability with respect to its pixels, through one compiled
    function: images float32 (m, 28, 28) in 0-255, classes int (m,) -> (float32 (m,), float32 (m, 28, 28)).

    The model runs in inference mode (batch norm's moving statistics, no dropout), so the images of a
    batch do not influence each other and one gradient of the summed probabilities gives every image's."""

    @tf.function(
        input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32), tf.TensorSpec([None], tf.int32)],
        reduce_retracing=True,
    )
    def gradients(images, classes):
        with tf.GradientTape() as tape:
            tape.watch(images)
            proba = tf.cast(model(tf.expand_dims(images, -1), training=False), tf.float32)
            picked = tf.gather(proba, classes, axis=1, batch_dims=1)
        return picked, tape.gradient(picked, images)

    def call(images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        picked, grads = gradients(
            tf.convert_to_tensor(np.asarray(images, dtype=np.float32).reshape(-1, *IMAGE_SHAPE)),
            tf.convert_to_tensor(np.asarray(classes, dtype=np.int32)),
        )
        return picked.numpy(), grads.numpy()

    return call


def save(model: keras.Model, path: Path) -> None:
    """Write `model` to `path` (.keras) atomically: a temporary .keras beside it, then a rename."""
    with atomic_path(path, suffix=".keras") as tmp:  # Keras insists on the .keras ending
        model.save(tmp)


def load(path: Path) -> keras.Model:
    """Read a model written by save (ready for predict_proba)."""
    return keras.models.load_model(Path(path), compile=False)


def training_space(
    trial: Any,
    lr: tuple[float, float],
    batch_sizes: tuple[int, ...],
    epochs: int,
    patience: int,
    *,
    dropout: bool = True,
) -> dict[str, Any]:
    """The search space the Keras families share: dropout (unless `dropout` is False: a net without
    any), Adam's learning rate and its per-epoch decay, the batch size; epochs and early-stopping
    patience are fixed."""
    return {
        **({"dropout": trial.suggest_float("dropout", 0.0, 0.5)} if dropout else {}),
        "lr": trial.suggest_float("lr", *lr, log=True),
        "lr_decay": trial.suggest_float("lr_decay", 0.85, 1.0),
        "batch_size": trial.suggest_categorical("batch_size", batch_sizes),
        "epochs": epochs,
        "patience": patience,
    }


class KerasSpec:
    """Shared ModelSpec methods; a family adds name, build, search_space and default_params."""

    name = "keras"
    model_suffix = KERAS_SUFFIX

    def build(self, params: dict[str, Any]) -> keras.Model:  # pragma: no cover - defined by each family
        raise NotImplementedError

    def fit(
        self, params: dict[str, Any], X: np.ndarray, y: np.ndarray, X_val=None, y_val=None, **options: Any
    ) -> FitResult:
        """ModelSpec.fit: `fit` (above) with this family's network; options: max_epochs, seed, on_epoch, verbose,
        stop_by."""
        return fit(self.build, params, X, y, X_val, y_val, **options)

    def predict_proba(self, model: keras.Model, X: np.ndarray) -> np.ndarray:
        return predict_proba(model, X)

    def gradient_fn(self, model: keras.Model) -> GradientFn:
        return gradient_fn(model)

    def save(self, model: keras.Model, path: Path) -> None:
        save(model, path)

    def load(self, path: Path) -> keras.Model:
        return load(path)
