"""Rotation / zoom / shift augmentation: one affine transform per image, composed and applied once, in-graph.

Three separate resampling passes (Keras' RandomRotation, RandomZoom, RandomTranslation) cost three
interpolations and blur the digit three times; here the three are composed into a single matrix per
image and the batch is resampled once (bilinear, constant fill 0) by TensorFlow's projective-transform
kernel. Only training inputs pass through this (the Keras families' training
step, the mlp's augmented copy): validation and test images are never augmented.
TensorFlow is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kaggle_digits import tflog

# What `--augment` searches (unless a family passes its own ranges to search_space), and the public
# recipe's magnitudes (docs/models.md).
RANGES = {"rotation": (0.0, 15.0), "zoom": (0.0, 0.15), "shift": (0.0, 0.15)}
RECIPE = {"rotation": 10.0, "zoom": 0.1, "shift": 0.1}


def search_space(trial: Any, ranges: dict[str, tuple[float, float]] = RANGES) -> dict[str, float]:
    """Augmentation magnitudes for a family's search space (when --augment is on): uniform in `ranges`
    (name -> (low, high) for rotation, zoom and shift; RANGES unless the family searches its own)."""
    return {name: trial.suggest_float(name, low, high) for name, (low, high) in ranges.items()}


@dataclass(frozen=True)
class Magnitudes:
    """How far to move a digit, each drawn uniformly per image.

    rotation : degrees; angle in [-rotation, +rotation]
    zoom : relative scale; factor in [1 - zoom, 1 + zoom] (> 1 enlarges the digit)
    shift : fraction of the image side; offset in [-shift, +shift] * side, independently along x and y
    """

    rotation: float = 0.0
    zoom: float = 0.0
    shift: float = 0.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Magnitudes:
        """Read `rotation`, `zoom`, `shift` from a model's params (missing = 0 = off)."""
        return cls(**{name: float(params.get(name, 0.0)) for name in cls.__dataclass_fields__})

    @property
    def active(self) -> bool:
        return self.rotation > 0 or self.zoom > 0 or self.shift > 0


def affine_matrices(angle, scale, dx, dy, height: int, width: int):
    """Output-to-input maps for TensorFlow's projective transform, one row of 8 per image.

    angle : radians, (b,) float32; scale : zoom factors (b,); dx, dy : shifts in pixels (b,).
    Pixel coordinates: x = column, y = row (downwards), so a positive angle turns the digit clockwise
    as displayed (angle = pi/2 gives numpy.rot90(image, k=-1)). The forward map moves a pixel p to
        c + scale * R(angle) (p - c) + (dx, dy)        (c: the image centre);
    the kernel wants its inverse (for each output pixel, where to read in the input):
        input = c + R(-angle) (output - c - (dx, dy)) / scale.
    Returns float32 (b, 8): [a0, a1, a2, a3, a4, a5, 0, 0] with input_x = a0 x + a1 y + a2,
    input_y = a3 x + a4 y + a5 in pixel coordinates (x = column, y = row).
    """
    tf = tflog.import_tensorflow()

    cx = (width - 1) / 2.0
    cy = (height - 1) / 2.0
    cos = tf.math.cos(angle) / scale
    sin = tf.math.sin(angle) / scale
    # R(-angle) / scale = [[cos, sin], [-sin, cos]]
    a0, a1, a3, a4 = cos, sin, -sin, cos
    ox = cx + dx  # the output point that the input centre lands on
    oy = cy + dy
    a2 = cx - (a0 * ox + a1 * oy)
    a5 = cy - (a3 * ox + a4 * oy)
    zeros = tf.zeros_like(angle)
    return tf.stack([a0, a1, a2, a3, a4, a5, zeros, zeros], axis=1)


def transform(images, matrices):
    """Resample images float (b, h, w, c) through `matrices` (b, 8): bilinear, constant fill 0, one pass."""
    tf = tflog.import_tensorflow()

    shape = tf.shape(images)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.cast(matrices, tf.float32),
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    out.set_shape(images.shape)  # the kernel's output has the input's shape; keep it known in a graph
    return out


def _uniform(shape, low: float, high: float, seed=None):
    """Uniform draws in [low, high): from the stateless `seed` (int32 (2,)) when given, else from the
    global seed."""
    tf = tflog.import_tensorflow()

    if seed is None:
        return tf.random.uniform(shape, low, high)
    return tf.random.stateless_uniform(shape, seed, low, high)


def random_augment(images, magnitudes: Magnitudes, seed=None):
    """Augment a batch: float images (b, h, w, c) -> same shape and dtype, each moved by its own random
    rotation, zoom and shift (one composed affine transform), as `magnitudes` ask. `seed` is an optional stateless seed (int32 tensor of shape
    (2,)); without it the global TensorFlow seed drives the draws.
    """
    tf = tflog.import_tensorflow()

    if not magnitudes.active:
        return images
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    u = _uniform((4, batch), -1.0, 1.0, seed)
    angle = u[0] * (magnitudes.rotation * math.pi / 180.0)
    scale = 1.0 + u[1] * magnitudes.zoom
    dx = u[2] * (magnitudes.shift * width)
    dy = u[3] * (magnitudes.shift * height)
    dtype = images.dtype
    out = tf.cast(images, tf.float32)
    out = transform(out, affine_matrices(angle, scale, dx, dy, height, width))
    return tf.cast(out, dtype)
