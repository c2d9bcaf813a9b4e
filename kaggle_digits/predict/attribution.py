"""Attribution maps: which pixels push a model toward a class, and which push it away.

Two methods, both giving a float32 (28, 28) map per image and class, in units of that class's
probability (positive: the pixel pushes toward the class):

- integrated gradients (Sundararajan et al. 2017) for models that offer gradients (the Keras families,
  through ModelSpec.gradient_fn): the gradient of the class probability averaged along the straight path
  from a blank image to the input, times the input. The map sums to p(input) - p(blank) up to the
  quadrature error; blank pixels get exactly 0.
- occlusion for any model (the scikit-learn MLP, a blended ensemble): a square patch of blank pixels
  slides over the image; each pixel gets the mean drop of the class probability over the patches that
  cover it. Patches that would blank only blank pixels change nothing and are not computed.

SHAP's DeepExplainer and GradientExplainer would be the well-kept library for the first; they are not
used because they do not run on TensorFlow 2.16+ with Keras 3 (shap/shap#3672), which this toolkit
needs, and they would add numba and llvmlite for what is here a few lines of GradientTape. Occlusion
is model-agnostic and needs nothing beyond predict_proba.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from kaggle_digits import IMAGE_SHAPE
from kaggle_digits.models.base import GradientFn, ModelSpec

METHODS = ("auto", "integrated-gradients", "occlusion")
IG_STEPS = 32  # points on the path from the blank image; the midpoint rule keeps the sum close at 32
IG_BATCH = 512  # interpolated images per gradient call: bounds memory for many images
OCCLUSION_PATCH = 4  # about two stroke widths of an MNIST digit
OCCLUSION_STRIDE = 2
OCCLUSION_BATCH = 4096  # occluded images per predict_proba call


@dataclass
class Attribution:
    """Maps of `classes` for a batch of images.

    maps : float32 (n, 28, 28); positive pixels push toward the class, negative ones away from it
    classes : int64 (n,), the class each map is for
    method : "integrated-gradients" or "occlusion"
    """

    maps: np.ndarray
    classes: np.ndarray
    method: str


class Explainable(Protocol):
    """What explain needs: a predictor (a trial, an ensemble, one fitted model)."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    @property
    def gradient_fn(self) -> GradientFn | None: ...


@dataclass
class FittedModel:
    """One fitted model of a family, as an Explainable (e.g. one fold model of a trial)."""

    spec: ModelSpec
    model: Any

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.spec.predict_proba(self.model, X)

    @cached_property
    def gradient_fn(self) -> GradientFn | None:
        return self.spec.gradient_fn(self.model)


def blend_gradients(functions: Sequence[GradientFn], weights: Sequence[float]) -> GradientFn:
    """The GradientFn of a weighted mean of models' probabilities (the gradient is linear in them)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()

    def blended(images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        picked = grads = None
        for weight, function in zip(w, functions):
            p, g = function(images, classes)
            picked = weight * p if picked is None else picked + weight * p
            grads = weight * g if grads is None else grads + weight * g
        return np.asarray(picked, dtype=np.float32), np.asarray(grads, dtype=np.float32)

    return blended


def _images(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape (n, 28, 28), got {X.shape}")
    return X.astype(np.float32)


def _classes(classes: np.ndarray | Sequence[int], n: int) -> np.ndarray:
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(classes) != n:
        raise ValueError(f"expected one class per image ({n}), got {len(classes)}")
    return classes


def integrated_gradients(
    gradients: GradientFn, X: np.ndarray, classes: np.ndarray | Sequence[int], steps: int = IG_STEPS
) -> np.ndarray:
    """Integrated gradients from a blank image: float32 (n, 28, 28) for images X (n, 28, 28) in 0-255.

    Every image's `steps` interpolations go through `gradients` in batches of about IG_BATCH images.
    """
    X = _images(X)
    classes = _classes(classes, len(X))
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)  # midpoint rule
    per_call = max(1, IG_BATCH // steps)
    maps = np.empty_like(X)
    for start in range(0, len(X), per_call):
        chunk = X[start : start + per_call]
        path = (alphas[None, :, None, None] * chunk[:, None]).reshape(-1, *IMAGE_SHAPE)
        _, grads = gradients(path, np.repeat(classes[start : start + per_call], steps))
        maps[start : start + len(chunk)] = chunk * grads.reshape(len(chunk), steps, *IMAGE_SHAPE).mean(axis=1)
    return maps


def occlusion(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    classes: np.ndarray | Sequence[int],
    patch: int = OCCLUSION_PATCH,
    stride: int = OCCLUSION_STRIDE,
) -> np.ndarray:
    """Occlusion maps: float32 (n, 28, 28) for images X (n, 28, 28) in 0-255, through predict_proba alone.

    A pixel's value is the mean, over the patch positions covering it, of p(image) - p(image with the
    patch blanked) for its image's class.
    """
    X = _images(X)
    classes = _classes(classes, len(X))
    height, width = IMAGE_SHAPE
    tops = np.unique(np.r_[np.arange(0, height - patch + 1, stride), height - patch])
    lefts = np.unique(np.r_[np.arange(0, width - patch + 1, stride), width - patch])
    positions = [(t, s) for t in tops for s in lefts]
    coverage = np.zeros(IMAGE_SHAPE, dtype=np.float32)
    for t, s in positions:
        coverage[t : t + patch, s : s + patch] += 1

    # Only the patches that blank some ink change the image.
    jobs = [(i, t, s) for i in range(len(X)) for t, s in positions if X[i, t : t + patch, s : s + patch].any()]
    base = _predict_uint8(predict_proba, X)[np.arange(len(X)), classes]
    drops = np.empty(len(jobs), dtype=np.float32)
    for start in range(0, len(jobs), OCCLUSION_BATCH):
        chunk = jobs[start : start + OCCLUSION_BATCH]
        occluded = X[[i for i, _, _ in chunk]].copy()
        for row, (_, t, s) in enumerate(chunk):
            occluded[row, t : t + patch, s : s + patch] = 0
        proba = _predict_uint8(predict_proba, occluded)
        rows = np.array([i for i, _, _ in chunk])
        drops[start : start + len(chunk)] = base[rows] - proba[np.arange(len(chunk)), classes[rows]]
    maps = np.zeros_like(X)
    for (i, t, s), drop in zip(jobs, drops):
        maps[i, t : t + patch, s : s + patch] += drop
    return maps / coverage


def _predict_uint8(predict_proba: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> np.ndarray:
    # The models take uint8 images; occluded pixels are blanked to exactly 0, so nothing is lost.
    return np.asarray(predict_proba(np.clip(np.rint(X), 0, 255).astype(np.uint8)), dtype=np.float32)


def explain(
    model: Explainable,
    X: np.ndarray,
    classes: np.ndarray | Sequence[int],
    method: str = "auto",
    steps: int = IG_STEPS,
) -> Attribution:
    """Maps of `classes` (one per image) for uint8 images X (n, 28, 28).

    method : "auto" (integrated gradients where the model offers gradients, else occlusion),
        "integrated-gradients" (ValueError when the model has none) or "occlusion".
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)}")
    classes = _classes(classes, len(X))
    gradients = model.gradient_fn if method != "occlusion" else None
    if method == "integrated-gradients" and gradients is None:
        raise ValueError("this model offers no gradients: use occlusion")
    if gradients is not None:
        return Attribution(integrated_gradients(gradients, X, classes, steps), classes, "integrated-gradients")
    return Attribution(occlusion(model.predict_proba, X, classes), classes, "occlusion")


def top_classes(proba: np.ndarray, k: int = 2) -> np.ndarray:
    """The k most likely classes of each row of proba (n, 10), most likely first: int64 (n, k)."""
    return np.argsort(-np.asarray(proba), axis=1, kind="stable")[:, :k]
