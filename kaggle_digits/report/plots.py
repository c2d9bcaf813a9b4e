"""The report's figures: matplotlib (Agg, files only) with seaborn's look. Each function returns a Figure.

Imported only by the report command when it draws, so other commands do not pay for matplotlib and seaborn.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set before seaborn imports pyplot

import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from cycler import cycler  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from kaggle_digits import IMAGE_SHAPE, N_CLASSES

SAMPLES_PER_CLASS = 10  # the sample grid is N_CLASSES rows of this many digits
GRID_COLUMNS = 8  # digits per row in the misclassified and disagreement grids


@contextlib.contextmanager
def theme(dpi: int) -> Iterator[None]:
    """seaborn's whitegrid look for the figures made inside the block; the process's settings come back after."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook")}
    rc["axes.prop_cycle"] = cycler(color=sns.color_palette("deep"))
    rc["figure.dpi"] = dpi
    with matplotlib.rc_context(rc):
        yield


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def plot_sample_grid(X: np.ndarray, y: np.ndarray) -> Figure:
    """A class-by-row mosaic of the first SAMPLES_PER_CLASS images of each label.

    X : uint8 (n, 28, 28); y : (n,) labels 0..9.
    """
    h, w = IMAGE_SHAPE
    gap = 2
    mosaic = np.zeros((N_CLASSES * (h + gap) - gap, SAMPLES_PER_CLASS * (w + gap) - gap), dtype=np.uint8)
    for label in range(N_CLASSES):
        for k, i in enumerate(np.flatnonzero(y == label)[:SAMPLES_PER_CLASS]):
            top, left = label * (h + gap), k * (w + gap)
            mosaic[top : top + h, left : left + w] = X[i]
    fig = _figure(6.2, 6.6)
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([label * (h + gap) + h / 2 for label in range(N_CLASSES)], [str(d) for d in range(N_CLASSES)])
    ax.tick_params(axis="y", length=0)
    ax.set_ylabel("label")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{SAMPLES_PER_CLASS} training digits per class")
    return fig


def plot_class_distribution(counts: np.ndarray) -> Figure:
    """Bar chart of images per label; counts : int (10,)."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    digits = np.arange(N_CLASSES)
    bars = ax.bar(digits, counts, color=sns.color_palette("deep")[0])
    # Counts inside the bars, where the uniform line cannot cross them.
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], label_type="center", color="white", fontsize=9)
    ax.axhline(counts.sum() / N_CLASSES, color="0.3", linestyle="--", linewidth=1, label="uniform")
    ax.set_xticks(digits)
    ax.set_xlabel("label")
    ax.set_ylabel("training images")
    ax.set_ylim(0, counts.max() * 1.12)
    ax.legend(loc="lower right")
    ax.set_title(f"Class distribution of train.csv ({counts.sum():,} images)")
    return fig


def plot_mean_images(X: np.ndarray, y: np.ndarray) -> Figure:
    """Mean image of each label in a 2×5 grid; X : uint8 (n, 28, 28), y : (n,)."""
    fig = _figure(9, 4.4)
    axes = fig.subplots(2, 5)
    for label, ax in enumerate(axes.flat):
        members = X[y == label]
        mean = members.mean(axis=0) if len(members) else np.zeros(IMAGE_SHAPE)
        ax.imshow(mean, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{label}  (n={len(members):,})", fontsize=10)
        ax.axis("off")
    fig.suptitle("Mean training image per class")
    return fig


def _integer_ticks(axis: Axis) -> None:
    """Ticks at whole numbers only (epochs, trials), keeping the axis' own automatic locator."""
    locator = axis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(integer=True)


# How each history.json curve is drawn: training solid, held-out fold dashed, anything else dotted
# (e.g. the mlp's own early-stopping split, carved out of the training fold).
_CURVE_STYLES: dict[str, Any] = {"train": "-", "val": "--", "other": ":"}


def _curve_kind(key: str) -> str:
    if key in ("loss", "accuracy"):
        return "train"
    return "val" if key.startswith("val_") else "other"


def plot_training(history: list[dict[str, Any]], title: str) -> Figure:
    """Loss and accuracy per epoch for each fold; history is runs.py's history.json (a list of fold dicts).

    Every list-valued key whose name contains "loss" goes to the left panel, "accuracy" to the right.
    """
    fig = _figure(12.5, 4.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    palette = sns.color_palette("deep", max(len(history), 1))
    used: dict[str, set[str]] = {}  # kind -> curve names drawn in that style
    for ax, word in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        drawn = False
        for k, fold in enumerate(history):
            for key, values in fold.items():
                if word not in key or not isinstance(values, list):
                    continue
                values = [v for v in values if v is not None]
                if not values:
                    continue
                kind = _curve_kind(key)
                used.setdefault(kind, set()).add(key)
                ax.plot(
                    np.arange(1, len(values) + 1),
                    values,
                    color=palette[k],
                    linestyle=_CURVE_STYLES[kind],
                    marker="o" if len(values) <= 20 else None,
                    markersize=3.5,
                )
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, f"no {word} recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.set_ylabel(word)
        ax.set_title(word.capitalize())
        _integer_ticks(ax.xaxis)
    handles = [
        Line2D([], [], color=palette[k], label=f"fold {fold.get('fold', k) + 1}") for k, fold in enumerate(history)
    ]
    names = {"train": "training", "val": "held-out fold"}
    for kind, keys in used.items():
        label = names.get(kind) or ", ".join(sorted(k.replace("_", " ") for k in keys))
        handles.append(Line2D([], [], color="0.2", linestyle=_CURVE_STYLES[kind], label=label))
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    fig.suptitle(title)
    return fig


def plot_confusion(truth: np.ndarray, pred: np.ndarray, subject: str) -> Figure:
    """Counts and row-normalised confusion matrices side by side; truth, pred : int (n,)."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(truth, pred, labels=np.arange(N_CLASSES))
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    fig = _figure(16, 7)
    ax_counts, ax_norm = fig.subplots(1, 2)
    sns.heatmap(matrix, ax=ax_counts, annot=True, fmt="d", cmap="Blues", cbar=True, square=True, annot_kws={"size": 9})
    sns.heatmap(
        normalised,
        ax=ax_norm,
        annot=True,
        fmt=".3f",
        cmap="Blues",
        vmin=0,
        vmax=1,
        square=True,
        annot_kws={"size": 8},
    )
    for ax, title in ((ax_counts, "counts"), (ax_norm, "normalised by true label (rows sum to 1)")):
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.set_title(title)
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle(f"Out-of-fold confusion matrix — {subject}")
    return fig


def plot_digit_grid(images: np.ndarray, titles: list[str], title: str) -> Figure:
    """Images uint8 (k, 28, 28) in rows of GRID_COLUMNS, each with its (one- or two-line) title."""
    rows = max(1, math.ceil(len(images) / GRID_COLUMNS))
    fig = _figure(GRID_COLUMNS * 1.55, rows * 1.8 + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, GRID_COLUMNS)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, image, text in zip(axes, images, titles):
        ax.axis("on")
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for spine in ax.spines.values():  # a light frame shows where each 28×28 image ends
            spine.set_edgecolor("0.8")
        ax.set_title(text, fontsize=8.5)
    fig.suptitle(title)
    return fig


def plot_per_class(report: dict[str, Any]) -> Figure:
    """Grouped bars of precision, recall and F1 per class."""
    fig = _figure(11, 4.8)
    ax = fig.add_subplot()
    digits = np.arange(N_CLASSES)
    metrics = ("precision", "recall", "f1-score")
    values = np.array([[report[str(d)][m] for d in digits] for m in metrics])
    width = 0.27
    for j, (metric, row) in enumerate(zip(metrics, values)):
        ax.bar(digits + (j - 1) * width, row, width, label=metric.replace("-score", ""))
    low = float(values.min())
    ax.set_ylim(max(0.0, low - (1 - low) * 0.25 - 0.005), 1.0)
    ax.set_xticks(digits)
    ax.set_xlabel("label")
    ax.set_ylabel("score")
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    ax.set_title(f"Per-class precision, recall and F1 (accuracy {report['accuracy']:.5f})")
    return fig


def plot_optimization_history(trials: list[Any], maximize: bool, name: str) -> Figure:
    """Objective per trial, best so far, and pruned trials at their last reported value."""
    from optuna.trial import TrialState

    fig = _figure(10, 4.8)
    ax = fig.add_subplot()
    palette = sns.color_palette("deep")
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    x = [t.number for t in done]
    values = [t.value for t in done]
    ax.scatter(x, values, color=palette[0], s=28, zorder=3, label="complete trial")
    best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
    ax.step(x, best, where="post", color=palette[3], linewidth=2, label="best so far")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="0.45", s=30, label="pruned (last report)")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective: mean fold accuracy")
    _integer_ticks(ax.xaxis)
    # Below the axes: inside, it would cover trials or the best-so-far line whatever corner it took.
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    ax.set_title(f"Optimisation history — {name}")
    return fig


def plot_importances(importances: dict[str, float], name: str) -> Figure:
    """Horizontal bars of Optuna's parameter importances (largest on top)."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = _figure(8, 1.2 + 0.45 * len(items))
    ax = fig.add_subplot()
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color=sns.color_palette("deep")[0])
    ax.bar_label(bars, labels=[f"{v:.2f}" for _, v in items], padding=3, fontsize=9)
    ax.set_xlim(0, max(v for _, v in items) * 1.15 or 1)
    ax.set_xlabel("importance (fANOVA, sums to 1)")
    ax.set_title(f"Hyperparameter importances — {name}")
    return fig


def plot_intermediate(trials: list[Any], name: str, position: Callable[[int], tuple[int, int]]) -> Figure:
    """Each trial's intermediate values, fold after fold; pruned trials in red ending in a cross.

    position : a reported step -> (fold, epoch), both 0-based (kaggle_digits.search.steps.step_position).
    Folds are laid side by side on the x axis, one slot per epoch, and a line never joins the last epoch
    of a fold to the first of the next.
    """
    from optuna.trial import TrialState

    fig = _figure(10.5, 4.8)
    ax = fig.add_subplot()
    palette = sns.color_palette("deep")
    reported = [t for t in trials if t.intermediate_values]
    width = 1 + max(position(s)[1] for t in reported for s in t.intermediate_values)
    n_folds = 1 + max(position(s)[0] for t in reported for s in t.intermediate_values)
    kinds = {"complete": 0, "pruned": 0, "other": 0}
    for t in reported:
        if t.state == TrialState.PRUNED:
            style, kind = {"color": palette[3], "alpha": 0.85, "linewidth": 1.3, "marker": "."}, "pruned"
        elif t.state == TrialState.COMPLETE:
            style, kind = {"color": palette[0], "alpha": 0.6, "linewidth": 1.2, "marker": "."}, "complete"
        else:
            style, kind = {"color": "0.6", "alpha": 0.7, "linewidth": 1, "linestyle": ":"}, "other"
        kinds[kind] += 1
        steps = sorted(t.intermediate_values)
        for fold in sorted({position(s)[0] for s in steps}):
            in_fold = [s for s in steps if position(s)[0] == fold]
            x = [fold * width + position(s)[1] + 1 for s in in_fold]
            ax.plot(x, [t.intermediate_values[s] for s in in_fold], **style)
        if kind == "pruned":
            last = steps[-1]
            x_last = position(last)[0] * width + position(last)[1] + 1
            ax.scatter([x_last], [t.intermediate_values[last]], marker="x", color=palette[3], s=55, zorder=3)
    for fold in range(1, n_folds):
        ax.axvline(fold * width + 0.5, color="0.75", linewidth=1)
    ax.set_xlim(0.5, n_folds * width + 0.5)
    if n_folds > 1:
        centres = [fold * width + (width + 1) / 2 for fold in range(n_folds)]
        ax.set_xticks(centres, [f"fold {fold + 1}" for fold in range(n_folds)])
        ax.grid(False, axis="x")
        ax.set_xlabel(f"epochs 1–{width} of each fold, fold after fold" if width > 1 else "fold")
    else:  # a study that reports plain steps (one fold, or not tune's)
        _integer_ticks(ax.xaxis)
        ax.xaxis.set_major_formatter(lambda x, _: f"{int(x) - 1}")
        ax.set_xlabel("step reported to the pruner")
    handles = [
        Line2D([], [], color=palette[0], marker=".", label=f"complete ({kinds['complete']})"),
        Line2D([], [], color=palette[3], marker="x", label=f"pruned ({kinds['pruned']})"),
    ]
    if kinds["other"]:
        handles.append(Line2D([], [], color="0.6", linestyle=":", label=f"failed or running ({kinds['other']})"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    ax.set_ylabel("held-out fold accuracy" if n_folds > 1 else "intermediate value")
    ax.set_title(f"Intermediate values — {name}")
    return fig


def plot_weights(labels: list[str], weights: np.ndarray) -> Figure:
    """Horizontal bars of each constituent's normalised weight."""
    fig = _figure(8, 1.4 + 0.6 * len(labels))
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    bars = ax.barh(y, weights, color=sns.color_palette("deep")[2])
    ax.bar_label(bars, labels=[f"{w:.3f}" for w in weights], padding=3, fontsize=9)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, max(weights.max() * 1.18, 0.05))
    ax.set_xlabel("weight (sums to 1)")
    ax.set_title("Ensemble weights")
    return fig


def plot_ensemble_scores(labels: list[str], cvs: np.ndarray, ensemble_cv: float, local: float | None) -> Figure:
    """CV accuracy of each constituent and of the ensemble (and its local score), zoomed to their range."""
    names = [*labels, "ensemble (CV)"] + (["ensemble\n(local leaderboard)"] if local is not None else [])
    values = np.array([*cvs, ensemble_cv] + ([local] if local is not None else []))
    palette = sns.color_palette("deep")
    colors = [palette[0]] * len(labels) + [palette[3]] + ([palette[1]] if local is not None else [])
    fig = _figure(8.5, 1.4 + 0.6 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    bars = ax.barh(y, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.5f}" for v in values], padding=3, fontsize=9)
    ax.set_yticks(y, names, fontsize=9)
    span = max(values.max() - values.min(), 0.002)
    ax.set_xlim(max(0.0, values.min() - span * 1.2), values.max() + span * 0.3)
    ax.set_xlabel("accuracy")
    ax.set_title("Constituents vs ensemble")
    return fig
