"""Drawing attribution maps (kaggle_digits.predict.attribution) with matplotlib: one map over its digit, and the
report's figures of them. Red pushes toward the class, blue away; the digit's outline is drawn over it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from kaggle_digits import N_CLASSES

CMAP = "bwr"  # blue (away from the class) - white (no effect) - red (toward the class)
CAPTION = (
    "Red pixels push the model toward the class named above the map, blue ones away from it; white ones "
    "do not matter. The grey outline is the digit."
)


def symmetric_limit(maps: np.ndarray) -> float:
    """A colour limit for maps shown together: the 99th percentile of |value| (one hot pixel would
    otherwise wash every other one out), never 0."""
    values = np.abs(np.asarray(maps, dtype=np.float64))
    limit = float(np.percentile(values, 99)) if values.size else 0.0
    return limit if limit > 0 else float(values.max()) or 1.0


def draw_map(ax: Any, digit: np.ndarray | None, amap: np.ndarray, limit: float | None = None) -> Any:
    """Draw a (28, 28) map on `ax` with the outline of `digit` (uint8 (28, 28)) over it; returns the image."""
    limit = symmetric_limit(amap) if limit is None else limit
    image = ax.imshow(amap, cmap=CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
    if digit is not None and np.asarray(digit).max() > 0:
        ax.contour(np.asarray(digit, dtype=np.float32), levels=[100.0], colors="0.35", linewidths=0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return image


def plot_class_means(mean_maps: np.ndarray, mean_digits: np.ndarray, counts: np.ndarray, subject: str) -> Figure:
    """Per class: the mean map (toward that class) of its correctly predicted images, over their mean digit.

    mean_maps float32 (10, 28, 28), mean_digits float (10, 28, 28) in 0-255, counts (10,) images averaged.
    """
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    axes = fig.subplots(2, 5).reshape(-1)
    limit = symmetric_limit(mean_maps)
    image = None
    for digit, ax in zip(range(N_CLASSES), axes):
        if counts[digit] == 0:
            ax.axis("off")
            ax.set_title(f"{digit}: no correct image", fontsize=9)
            continue
        image = draw_map(ax, mean_digits[digit], mean_maps[digit], limit)
        ax.set_title(f"toward {digit} (mean of {counts[digit]})", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.7, label="change of the class probability")
    fig.suptitle(f"What {subject} looks at: mean map of correctly predicted digits per class")
    return fig


def plot_error_maps(
    digits: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    maps_pred: np.ndarray,
    maps_true: np.ndarray,
    subject: str,
) -> Figure:
    """For each misclassified digit (k, 28, 28): the digit, its map toward the predicted label and its map
    toward the true label, side by side; two digits per row."""
    per_row = 2
    rows = max(1, math.ceil(len(digits) / per_row))
    fig = Figure(figsize=(11, 2.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, 3 * per_row, squeeze=False).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for i in range(len(digits)):
        limit = symmetric_limit(np.stack([maps_pred[i], maps_true[i]]))
        shown, toward_pred, toward_true = axes[3 * i : 3 * i + 3]
        for ax in (shown, toward_pred, toward_true):
            ax.axis("on")
        shown.imshow(digits[i], cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        shown.set_xticks([])
        shown.set_yticks([])
        shown.grid(False)
        shown.set_title(f"true {truth[i]}, pred {pred[i]} (p = {confidence[i]:.3f})", fontsize=8.5)
        draw_map(toward_pred, digits[i], maps_pred[i], limit)
        toward_pred.set_title(f"toward {pred[i]} (predicted)", fontsize=8.5)
        draw_map(toward_true, digits[i], maps_true[i], limit)
        toward_true.set_title(f"toward {truth[i]} (true)", fontsize=8.5)
    fig.suptitle(f"The most confident mistakes of {subject}: toward the prediction and toward the truth")
    return fig
