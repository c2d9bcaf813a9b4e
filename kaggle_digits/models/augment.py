"""Rotation / zoom / shift augmentation: one affine transform per image, composed and applied once, in-graph;
optionally an elastic distortion (Simard et al. 2003) folded into the same resampling, and random
erasing (Zhong et al. 2017) after it.

Three separate resampling passes (Keras' RandomRotation, RandomZoom, RandomTranslation) cost three
interpolations and blur the digit three times; here the three are composed into a single matrix per
image and the batch is resampled once (bilinear, constant fill 0) by TensorFlow's projective-transform
kernel. An elastic distortion adds a smooth random displacement field to the affine map's source
coordinates, and the batch is still resampled once (bilinear, constant fill 0; `warp` below, since the
projective kernel takes no field). Only training inputs pass through this (the Keras families' training
step, the mlp's augmented copy): validation and test images are never augmented.
TensorFlow is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kaggle_digits import tflog

# What `--augment` searches, in every family, and the public recipe's magnitudes (DESIGN.md).
RANGES = {"rotation": (0.0, 15.0), "zoom": (0.0, 0.15), "shift": (0.0, 0.15)}
RECIPE = {"rotation": 10.0, "zoom": 0.1, "shift": 0.1}


def search_space(trial: Any) -> dict[str, float]:
    """Augmentation magnitudes for a family's search space (when --augment is on): uniform in RANGES."""
    return {name: trial.suggest_float(name, low, high) for name, (low, high) in RANGES.items()}


# The elastic field's smoothing (Simard et al. used sigma 4 px with alpha 34), and the
# erased rectangle's share of the image and aspect ratio (Zhong et al. draw these ranges, 0.4 at most;
# a fifth keeps most of a 28 x 28 digit).
ELASTIC_SIGMA = 4.0
ERASE_AREA = (0.02, 0.2)
ERASE_ASPECT = (0.3, 1 / 0.3)


@dataclass(frozen=True)
class Magnitudes:
    """How far to move a digit, each drawn uniformly per image.

    rotation : degrees; angle in [-rotation, +rotation]
    zoom : relative scale; factor in [1 - zoom, 1 + zoom] (> 1 enlarges the digit)
    shift : fraction of the image side; offset in [-shift, +shift] * side, independently along x and y
    elastic : Simard's alpha, in pixels: each pixel's displacement is alpha times a uniform [-1, 1] field
        smoothed by a Gaussian of ELASTIC_SIGMA px (alpha 34 moves pixels by about 2 px rms)
    erasing : probability that an image has one random rectangle (ERASE_AREA of the image, aspect
        ERASE_ASPECT) set to 0
    """

    rotation: float = 0.0
    zoom: float = 0.0
    shift: float = 0.0
    elastic: float = 0.0
    erasing: float = 0.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Magnitudes:
        """Read `rotation`, `zoom`, `shift`, `elastic`, `erasing` from a model's params (missing = 0 = off)."""
        return cls(**{name: float(params.get(name, 0.0)) for name in cls.__dataclass_fields__})

    @property
    def affine(self) -> bool:
        return self.rotation > 0 or self.zoom > 0 or self.shift > 0

    @property
    def active(self) -> bool:
        return self.affine or self.elastic > 0 or self.erasing > 0

    def to_params(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


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


def _uniform(shape, low: float, high: float, seed=None, stream: int = 0):
    """Uniform draws in [low, high): from the stateless `seed` (int32 (2,)) offset by `stream`, so that
    each kind of draw of one seeded call has its own numbers; without a seed, from the global seed."""
    tf = tflog.import_tensorflow()

    if seed is None:
        return tf.random.uniform(shape, low, high)
    return tf.random.stateless_uniform(shape, seed + tf.constant([0, stream], seed.dtype), low, high)


def source_coordinates(matrices, height: int, width: int):
    """Where each output pixel reads in the input under `matrices` (b, 8) from affine_matrices:
    float32 (b, h, w, 2), (x, y) in pixel coordinates (x = column, y = row)."""
    tf = tflog.import_tensorflow()

    y, x = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    m = tf.cast(matrices, tf.float32)[:, :, None, None]
    return tf.stack([m[:, 0] * x + m[:, 1] * y + m[:, 2], m[:, 3] * x + m[:, 4] * y + m[:, 5]], axis=-1)


def warp(images, coordinates):
    """Resample float32 images (b, h, w, c) at `coordinates` (b, h, w, 2) as source_coordinates gives
    them: bilinear, 0 outside the image (the projective kernel's CONSTANT fill), one pass."""
    tf = tflog.import_tensorflow()

    shape = tf.shape(images)
    batch, height, width, channels = shape[0], images.shape[1], images.shape[2], shape[3]
    # A border of zeros, and source points clipped onto it: whatever lies outside reads 0.
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    x = tf.clip_by_value(coordinates[..., 0] + 1.0, 0.0, width + 1.0)
    y = tf.clip_by_value(coordinates[..., 1] + 1.0, 0.0, height + 1.0)
    x0, y0 = tf.floor(x), tf.floor(y)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    x0 = tf.cast(x0, tf.int32)
    y0 = tf.cast(y0, tf.int32)
    x1 = tf.minimum(x0 + 1, width + 1)
    y1 = tf.minimum(y0 + 1, height + 1)
    flat = tf.reshape(padded, [-1, channels])
    base = (tf.range(batch) * (height + 2) * (width + 2))[:, None, None]

    def at(yi, xi):
        return tf.gather(flat, base + yi * (width + 2) + xi)

    top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


def elastic_field(batch, height: int, width: int, alpha: float, seed=None, stream: int = 0):
    """Simard's displacement field: uniform [-1, 1] noise (b, h, w, 2) smoothed by a Gaussian of
    ELASTIC_SIGMA px (zero padding), times alpha pixels."""
    tf = tflog.import_tensorflow()

    noise = _uniform(tf.stack([batch, height, width, 2]), -1.0, 1.0, seed, stream)
    radius = int(math.ceil(4 * ELASTIC_SIGMA))  # as scipy.ndimage.gaussian_filter truncates
    taps = tf.exp(-0.5 * (tf.range(-radius, radius + 1, dtype=tf.float32) / ELASTIC_SIGMA) ** 2)
    taps = taps / tf.reduce_sum(taps)
    rows = tf.tile(tf.reshape(taps, [-1, 1, 1, 1]), [1, 1, 2, 1])  # depthwise: both components alike
    cols = tf.reshape(rows, [1, -1, 2, 1])
    smooth = tf.nn.depthwise_conv2d(noise, rows, [1, 1, 1, 1], "SAME")
    smooth = tf.nn.depthwise_conv2d(smooth, cols, [1, 1, 1, 1], "SAME")
    return alpha * smooth


def erase(images, probability: float, seed=None, stream: int = 0):
    """Random erasing: with `probability`, one rectangle of each image (ERASE_AREA of it, aspect ratio
    ERASE_ASPECT, centred anywhere, clipped to the frame) is set to 0. Same shape and dtype."""
    tf = tflog.import_tensorflow()

    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    u = _uniform((5, batch), 0.0, 1.0, seed, stream)
    area = (ERASE_AREA[0] + u[0] * (ERASE_AREA[1] - ERASE_AREA[0])) * (height * width)
    aspect = tf.exp(math.log(ERASE_ASPECT[0]) + u[1] * (math.log(ERASE_ASPECT[1]) - math.log(ERASE_ASPECT[0])))
    half_h = tf.sqrt(area * aspect) / 2.0
    half_w = tf.sqrt(area / aspect) / 2.0
    cy = u[2] * height
    cx = u[3] * width
    on = tf.cast(u[4] < probability, tf.float32)
    rows = tf.range(height, dtype=tf.float32)[None, :, None] + 0.5
    cols = tf.range(width, dtype=tf.float32)[None, None, :] + 0.5
    inside = (tf.abs(rows - cy[:, None, None]) < half_h[:, None, None]) & (
        tf.abs(cols - cx[:, None, None]) < half_w[:, None, None]
    )
    keep = 1.0 - tf.cast(inside, tf.float32) * on[:, None, None]
    return images * tf.cast(keep[..., None], images.dtype)


def random_augment(images, magnitudes: Magnitudes, seed=None):
    """Augment a batch: float images (b, h, w, c) -> same shape and dtype, each moved by its own random
    rotation, zoom and shift (one composed affine transform), distorted by its own elastic field and
    partly erased, as `magnitudes` ask. `seed` is an optional stateless seed (int32 tensor of shape
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
    matrices = affine_matrices(angle, scale, dx, dy, height, width)
    if magnitudes.elastic > 0:
        field = elastic_field(batch, height, width, magnitudes.elastic, seed, stream=1)
        out = warp(out, source_coordinates(matrices, height, width) + field)
    elif magnitudes.affine:
        out = transform(out, matrices)
    if magnitudes.erasing > 0:
        out = erase(out, magnitudes.erasing, seed, stream=2)
    return tf.cast(out, dtype)
