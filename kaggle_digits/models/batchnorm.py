"""The Keras families' batch-norm layer (fused kernel) and the re-estimation of its moving statistics.

Why re-estimate: during training the moving mean and variance follow the batches with momentum 0.99,
so they need a few hundred steps to forget their initial values (0 and 1) and they lag weights that
are still changing. After a short fit (a quick try, a small --subsample, the pruner's first epochs)
the network would predict with the statistics of a network that no longer exists, and on held-out rows
it can answer one class for everything. So BatchNormStatistics sets them afresh before each
validation and at the end of every fit: a forward pass over a few training batches with every other
layer in inference (no dropout, no augmentation), each batch-norm layer normalising by its batch's own
statistics exactly as in training, and the moving statistics set to the average of those batches'
statistics ("precise batch norm"). For a long fit this is what the moving averages approximate; for a
short one it is what they have not reached yet. It costs one forward pass over at most ESTIMATE_IMAGES
images, and at most a quarter of the training images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaggle_digits import tflog
from kaggle_digits.models import hardware

hardware.set_thread_env()
tflog.import_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

# Images per re-estimation, in batches of ESTIMATE_BATCH: enough for per-channel means and variances
# to settle, and a small fraction of a training epoch on the full data. On a small training set at most
# 1/ESTIMATE_SHARE of it (but one batch), so that a forward pass without gradients stays a small part
# of an epoch whatever the run's size.
ESTIMATE_IMAGES = 2048
ESTIMATE_BATCH = 256
ESTIMATE_SHARE = 4


@keras.saving.register_keras_serializable(package="kaggle_digits")
class BatchNorm(keras.layers.Layer):
    """keras.layers.BatchNormalization's arithmetic (same momentum, epsilon, biased moving variance) on
    TensorFlow's fused kernel (FusedBatchNormV3, oneDNN on x86).

    Keras 3 builds batch norm from a dozen separate element-wise ops, and under mixed_bfloat16 adds
    casts to float32 and back around them, each a kernel launch over the whole activation. The fused kernel takes bfloat16 activations directly (statistics in float32).
    Works on (b, h, w, c) and (b, c) inputs; normalises over the last axis.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        # True only while BatchNormStatistics.estimate runs: normalise by the batch and add its statistics
        # to the moving ones (read when a function is traced; only estimate's function traces with it set).
        self._estimating = False

    def build(self, input_shape) -> None:
        channels = (input_shape[-1],)
        # Scale, offset and moving statistics stay float32 whatever the compute dtype (autocast=False).
        self.gamma = self.add_weight(shape=channels, initializer="ones", name="gamma", autocast=False)
        self.beta = self.add_weight(shape=channels, initializer="zeros", name="beta", autocast=False)
        self.moving_mean = self.add_weight(
            shape=channels, initializer="zeros", name="moving_mean", trainable=False, autocast=False
        )
        self.moving_variance = self.add_weight(
            shape=channels, initializer="ones", name="moving_variance", trainable=False, autocast=False
        )

    def call(self, inputs, training=None):
        x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]])
        if training or self._estimating:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
            )
            # The kernel returns the unbiased (n - 1) variance; Keras averages the biased one.
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
            variance = variance * (n - 1.0) / n
            if self._estimating:
                self.moving_mean.assign_add(mean)
                self.moving_variance.assign_add(variance)
            else:
                self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
                self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x,
                self.gamma,
                self.beta,
                self.moving_mean,
                self.moving_variance,
                epsilon=self.epsilon,
                is_training=False,
            )
        return y if len(inputs.shape) == 4 else tf.reshape(y, tf.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def batchnorm_layers(model: keras.Model) -> list[BatchNorm]:
    """The BatchNorm layers anywhere inside `model`."""
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, BatchNorm)]


class BatchNormStatistics(keras.callbacks.Callback):
    """Re-estimates the moving statistics of `network`'s BatchNorm layers from training images X, uint8
    (n, 28, 28, 1): before each validation of a fit (so per-epoch validation figures, and the pruner
    that hears them, judge the weights of that epoch) and at the end of the fit. See the module docstring.
    A network without BatchNorm layers is left alone, at no cost."""

    def __init__(self, network: keras.Model, X: np.ndarray, seed: int = 0) -> None:
        super().__init__()
        self._network = network  # not `self.model`: Keras sets that to the trained (maybe wrapped) model
        self._layers = batchnorm_layers(network)
        self._images = X
        self._rng = np.random.default_rng(seed)
        self._forward: Any = None
        self._current = False  # the statistics belong to the current weights

    def estimate(self) -> None:
        """Set every BatchNorm layer's moving mean and variance to their averages over a few batches of
        training images, the rest of the network in inference."""
        if not self._layers or not len(self._images):
            return
        n = len(self._images)
        batch = min(ESTIMATE_BATCH, n)
        n_batches = max(1, min(ESTIMATE_IMAGES, n // ESTIMATE_SHARE) // batch)
        rows = self._rng.choice(len(self._images), n_batches * batch, replace=False).reshape(n_batches, batch)
        if self._forward is None:
            self._forward = tf.function(lambda x: self._network(x, training=False))
        for layer in self._layers:
            layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
            layer.moving_variance.assign(tf.zeros_like(layer.moving_variance))
            layer._estimating = True
        try:
            for indices in rows:
                self._forward(self._images[np.sort(indices)].astype(np.float32))
        finally:
            for layer in self._layers:
                layer._estimating = False
        for layer in self._layers:
            layer.moving_mean.assign(layer.moving_mean / n_batches)
            layer.moving_variance.assign(layer.moving_variance / n_batches)
        self._current = True

    def ensure_current(self) -> None:
        """Estimate the statistics unless they already belong to the current weights."""
        if not self._current:
            self.estimate()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current = False

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.ensure_current()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.ensure_current()
