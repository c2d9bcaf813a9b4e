"""Predict digits in the user's own images: MNIST-style preprocessing, and a trial or an ensemble as one predictor.

`python scripts/predict.py IMG... [--ensemble SUBMISSION.json | --trial runs/<study>/trial-<n>] [--show OUT.png]
[--explain OUT.png]`
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from kaggle_digits import IMAGE_SHAPE, models
from kaggle_digits.blend import manifest
from kaggle_digits.errors import UserError
from kaggle_digits.models.base import GradientFn
from kaggle_digits.predict import attribution
from kaggle_digits.predict.attribution import blend_gradients
from kaggle_digits.predict.exported import ExportedPredictor, load_exported
from kaggle_digits.search.runs import TrialRun, list_trials, load_trial

# MNIST's recipe: the digit is scaled to fit a 20x20 box (keeping its aspect ratio), then placed in the
# 28x28 field so that its centre of mass is at the centre.
DIGIT_BOX = 20
ACCEPTED_FORMATS = ("PNG", "JPEG")
# A 48-megapixel phone photo is fine; a decompression bomb (a tiny PNG of a huge blank page) is not.
MAX_IMAGE_PIXELS = 50_000_000
# Larger images are shrunk to about this many pixels a side before preprocessing: plenty for a digit that
# ends up 20 pixels tall, and it keeps a 48-megapixel photo to a few MB of memory.
WORKING_SIDE = 1024
# Ink must differ from the paper by at least this fraction of full scale (~50 grey levels), else the
# image counts as empty: JPEG noise and paper texture stay well below it.
MIN_INK_CONTRAST = 0.2
# Below this fraction of the darkest stroke's strength a pixel is paper (shadows, texture, JPEG ringing).
PAPER_FLOOR = 0.25
# The paper's level is measured in cells, about this many a side, and a stroke may fill up to a
# BACKGROUND_WINDOW-cell square (a quarter of the image) before it is taken for shade.
BACKGROUND_CELLS = 32
BACKGROUND_WINDOW = 9
# Paper whose level along the border varies by less than this (a fraction of full scale) is evenly lit.
EVEN_LIGHT = 0.05
# The digit's strokes: pixels above this fraction of the darkest stroke's strength. Ruled lines and
# shadows' edges, fainter than a pen, stay below it.
STROKE_LEVEL = 0.5
# A piece of stroke at least this wide a fraction of the page and this many times longer than thick is a
# line across the page, not part of a digit.
LINE_SPAN = 0.8
LINE_ELONGATION = 8
# Ruled lines are looked for down to this fraction of the darkest stroke's strength.
LINE_LEVEL = 0.1
# Other pieces join the digit when they hold at least MIN_PIECE of its ink and lie within REACH of its
# size from it.
MIN_PIECE = 0.02
REACH = 0.5
# The faint edges and stroke ends around the kept pieces reach at most this fraction of the digit's size
# beyond them (farther: a faint line touches the digit).
TAIL = 0.25
TOP_K = 3
EXPLAINED_CLASSES = 2  # --explain draws the maps of each file's two most likely digits

# --- reading images ---------------------------------------------------------------------------


def read_gray(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Decode a PNG or JPEG (a path or its bytes) as grayscale float32 (h, w) in [0, 1], 1 = white.

    Transparent pixels are flattened onto the colour that contrasts with what is drawn on them, so a
    dark stroke on a transparent sheet reads as dark on white. Raises UserError naming `name` (default:
    the path) when the file is missing, not a PNG/JPEG, too large or damaged.
    """
    if name is None:
        name = "image" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        if not source:
            raise UserError(f"{name}: empty file, expected a PNG or JPEG image")
        fp: Any = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise UserError(f"{name}: file not found")
        if path.is_dir():
            raise UserError(f"{name}: is a folder, expected a PNG or JPEG image")
        if path.stat().st_size == 0:
            raise UserError(f"{name}: empty file, expected a PNG or JPEG image")
        fp = path
    try:
        # Pillow warns about images over its own, higher limit: each such image is refused below in one
        # line that gives our limit, so the warning would only add lines around that message.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
        with image:
            if image.format not in ACCEPTED_FORMATS:
                raise UserError(f"{name}: a {image.format} image, expected PNG or JPEG")
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise UserError(f"{name}: {width}x{height} pixels is too large {_LIMIT}")
            if image.format == "JPEG":  # decode big photos at a fraction of their size: much faster
                image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))
            image.load()
            return _grayscale(_shrink(ImageOps.exif_transpose(image)))
    except UnidentifiedImageError:
        raise UserError(f"{name}: not a PNG or JPEG image") from None
    except Image.DecompressionBombError as exc:  # over Pillow's own limit: refused before the size is known
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "the image"
        raise UserError(f"{name}: {size} is too large {_LIMIT}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{name}: damaged or unreadable image ({exc})") from None


_LIMIT = f"(limit {MAX_IMAGE_PIXELS // 1_000_000} megapixels)"


def _shrink(image: Image.Image) -> Image.Image:
    """Box-average an image larger than WORKING_SIDE down to about that size (the digit ends up 20x20)."""
    factor = math.ceil(max(image.size) / WORKING_SIDE)
    if factor <= 1:
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    return image.reduce(factor)


def _grayscale(image: Image.Image) -> np.ndarray:
    """float32 (h, w) in [0, 1]; alpha flattened onto a contrasting background."""
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit PNGs: scale by their own range
        values = np.asarray(image, dtype=np.float32)
        return np.clip(values / (65535.0 if values.max() > 255 else 255.0), 0, 1)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    rgba = image.convert("RGBA")
    luminance = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32) / 255.0
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    if alpha.sum() == 0:  # fully transparent: nothing drawn
        return np.ones_like(luminance)
    # Whatever is drawn (the opaque part) is the ink: put it on the opposite background.
    drawn = float((luminance * alpha).sum() / alpha.sum())
    background = 1.0 if drawn < 0.5 else 0.0
    return luminance * alpha + background * (1.0 - alpha)


# --- MNIST-style preprocessing ----------------------------------------------------------------


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """Turn a grayscale picture of one digit into an MNIST-style image.

    gray : float array (h, w) in [0, 1], dark ink on light paper or the reverse (detected, see _ink).
    Returns uint8 (28, 28), ink bright on 0: the paper evened out (uneven light, shadows), inverted if
    needed, cropped to the digit's strokes (specks and lines across the page left out), scaled to fit
    20x20 keeping the aspect ratio, centred by centre of mass. UserError when there is no ink.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    ink, strength = _ink(gray)
    if strength < MIN_INK_CONTRAST:
        raise UserError(f"{name}: no ink found (a blank image, or strokes too faint to tell from the paper)")
    cell = _cell_side(gray.shape)
    # The digit's strokes are found on a lightly smoothed copy: camera noise, amplified where the light
    # is dim, would otherwise pass for ink one pixel at a time.
    smooth = ndimage.gaussian_filter(ink, 1.0) if cell > 1 else ink
    ink = np.clip((ink / strength - PAPER_FLOOR) / (1.0 - PAPER_FLOOR), 0.0, 1.0)
    ink *= _digit_region(smooth / float(smooth.max()), ink > 0, cell)
    if not ink.any():
        raise UserError(f"{name}: no digit found, only lines across the page")

    rows, cols = np.nonzero(ink)
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = ink.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Area averaging when shrinking (anti-aliased like MNIST's strokes, no ringing); bilinear when growing.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    patch = np.clip(np.asarray(Image.fromarray(ink).resize(size, resample), dtype=np.float32), 0.0, 1.0)
    if patch.max() <= 0:  # a speck thinner than a pixel after scaling: keep it visible
        patch = np.ones_like(patch)
    patch /= patch.max()  # thin pen strokes shrink to grey; MNIST's strokes reach full intensity

    field_h, field_w = IMAGE_SHAPE
    total = patch.sum()
    centre_row = float(np.arange(patch.shape[0]) @ patch.sum(axis=1)) / total
    centre_col = float(np.arange(patch.shape[1]) @ patch.sum(axis=0)) / total
    # MNIST's centres of mass sit at pixel index (14, 14) (mean 13.99, 14.00 over its images);
    # shift by whole pixels as MNIST did, keeping the digit inside the field.
    top = int(np.clip(round(field_h / 2 - centre_row), 0, field_h - patch.shape[0]))
    left = int(np.clip(round(field_w / 2 - centre_col), 0, field_w - patch.shape[1]))
    out = np.zeros(IMAGE_SHAPE, dtype=np.float32)
    out[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return np.round(out * 255).astype(np.uint8)


def _cell_side(shape: tuple[int, ...]) -> int:
    """Side in pixels of the cells in which the paper's level is measured (BACKGROUND_CELLS a side)."""
    return max(1, math.ceil(max(shape) / BACKGROUND_CELLS))


def _ink(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """How much ink each pixel holds, float32 (h, w) >= 0 on the image's 0-1 scale, 0 on the paper, and
    the darkest stroke's level on that scale.

    Evenly lit paper (its level along the border varies by less than EVEN_LIGHT) has the border's median
    as its level everywhere, and the ink is on whichever side deviates most from it. Otherwise the
    paper's level is estimated across the image, and the ink is on whichever side deviates most from
    the paper around it. Light falls on paper and ink alike, so dark ink is measured as the fraction of
    the local paper's light it absorbs, scaled to the brightest paper (the page as if lit like its
    brightest part); light ink (chalk, a drawing on a black canvas) as its excess over the background.
    The darkest stroke is then judged on a lightly smoothed copy, above the noise of dimly lit paper.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    dark_ink = paper - float(gray.min()) >= float(gray.max()) - paper
    background = _background(gray, dark_ink)
    edge = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    if float(edge.max() - edge.min()) < EVEN_LIGHT:
        ink = np.clip(paper - gray if dark_ink else gray - paper, 0.0, None)
        return ink, float(ink.max())
    if _dark_ink_locally(gray) != dark_ink:
        dark_ink = not dark_ink
        background = _background(gray, dark_ink)
    if dark_ink:
        ink = np.clip(1.0 - gray / np.maximum(background, 1.0 / 255), 0.0, None) * float(background.max())
    else:
        ink = np.clip(gray - background, 0.0, None)
    return ink, float(ndimage.gaussian_filter(ink, 1.0).max())


def _cell_levels(gray: np.ndarray, percentile: float) -> np.ndarray:
    """The given percentile of each cell's pixels, float32 (rows, cols) of cells _cell_side() a side."""
    cell = _cell_side(gray.shape)
    height, width = gray.shape
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    padded = np.pad(gray, ((0, rows * cell - height), (0, cols * cell - width)), mode="edge")
    blocks = padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    return np.percentile(blocks, percentile, axis=2).astype(np.float32)


def _dark_ink_locally(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper around it: the paper being most of any neighbourhood,
    the strokes are the cells' extremes furthest from their neighbourhood's median."""
    levels = _cell_levels(gray, 50)
    window = min(2 * BACKGROUND_WINDOW - 1, 2 * max(levels.shape) - 1)
    local_paper = ndimage.median_filter(levels, size=window, mode="nearest")
    darker = float((local_paper - _cell_levels(gray, 2)).max())
    lighter = float((_cell_levels(gray, 98) - local_paper).max())
    return darker >= lighter


def _background(gray: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The paper's level under each pixel, float32 (h, w): the image with the strokes taken out.

    Each cell's paper level is a high (dark ink) or low (light ink) percentile of its pixels; a grey
    closing (opening for light ink) over BACKGROUND_WINDOW cells then replaces the cells that the strokes
    fill, and a blur joins the cells smoothly. Evenly lit paper comes out flat, at the paper's level.
    """
    cell = _cell_side(gray.shape)
    height, width = gray.shape
    levels = _cell_levels(gray, 90 if dark_ink else 10)
    # Beyond the image the light is taken to go on changing as it does at the edge (an odd reflection):
    # a gradient stays a straight line up to the edge instead of bending where the window leaves it.
    pad = BACKGROUND_WINDOW // 2 + 4
    rows, cols = levels.shape
    extended = np.clip(np.pad(levels, pad, mode="reflect", reflect_type="odd"), levels.min(), levels.max())
    if dark_ink:
        extended = ndimage.grey_closing(extended, size=(BACKGROUND_WINDOW, BACKGROUND_WINDOW), mode="nearest")
    else:
        extended = ndimage.grey_opening(extended, size=(BACKGROUND_WINDOW, BACKGROUND_WINDOW), mode="nearest")
    extended = ndimage.gaussian_filter(extended, 1.0, mode="nearest")
    levels = extended[pad : pad + rows, pad : pad + cols]
    if cell == 1:
        return levels
    # Upsampled to the pixels, each cell's level placed at its centre.
    return (_linear(height, rows, cell) @ levels @ _linear(width, cols, cell).T).astype(np.float32)


def _linear(size: int, cells: int, cell: int) -> np.ndarray:
    """float32 (size, cells): linear interpolation from cells `cell` pixels wide to their pixels."""
    position = np.clip((np.arange(size) + 0.5) / cell - 0.5, 0, cells - 1)
    below = np.minimum(position.astype(int), cells - 1)
    above = np.minimum(below + 1, cells - 1)
    weights = np.zeros((size, cells), dtype=np.float32)
    fraction = (position - below).astype(np.float32)
    np.add.at(weights, (np.arange(size), below), 1 - fraction)
    np.add.at(weights, (np.arange(size), above), fraction)
    return weights


def _digit_region(ink: np.ndarray, faint: np.ndarray, cell: int) -> np.ndarray:
    """Where the digit is: bool (h, w), the digit's strokes with their soft edges.

    ink : float (h, w), 1 at the darkest stroke; faint : bool (h, w), every pixel above the paper floor.
    The strokes are the pixels above STROKE_LEVEL, split into connected pieces. A piece that runs thin
    across most of the page's width is a ruled line; the piece with the most ink is the digit, and it
    takes in each other piece holding at least MIN_PIECE of its ink within reach of it (a broken stroke,
    the separate bar of a 5). Specks and anything further away are left out. The kept pieces then grow
    into the faint pixels around them, to keep their anti-aliased edges and tapering ends.
    """
    strokes = ink > STROKE_LEVEL
    labels, count = ndimage.label(strokes, structure=np.ones((3, 3)))
    boxes = ndimage.find_objects(labels)
    masses = ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1))
    height, width = ink.shape
    candidates = []
    for index, (box, mass) in enumerate(zip(boxes, masses), start=1):
        box_height, box_width = box[0].stop - box[0].start, box[1].stop - box[1].start
        if box_width >= LINE_SPAN * width and box_width >= LINE_ELONGATION * box_height:
            continue  # a ruled line, or the edge of a sheet, across the page
        candidates.append((float(mass), index, box))
    if not candidates:
        return np.zeros_like(faint)
    candidates.sort(reverse=True)
    main_mass, main_index, main_box = candidates[0]
    top, bottom = main_box[0].start, main_box[0].stop
    left, right = main_box[1].start, main_box[1].stop
    reach = REACH * max(bottom - top, right - left)
    kept = [main_index]
    for mass, index, box in candidates[1:]:
        if mass < MIN_PIECE * main_mass:
            break
        gap_rows = max(top - box[0].stop, box[0].start - bottom, 0)
        gap_cols = max(left - box[1].stop, box[1].start - right, 0)
        if max(gap_rows, gap_cols) <= reach:
            kept.append(index)
    region = np.isin(labels, kept)
    # The faint pixels joined to the kept pieces: their soft edges and tapering stroke ends. On ruled
    # paper (faint lines across the page), not the lines running off a stroke: faint pixels away from
    # the strokes' edges in a band thinner than an edge is wide. When they still reach far beyond the
    # pieces, or out to an edge of the image the pieces do not touch, something else is attached: grow
    # by the width of an edge only.
    edge = max(1, cell // 4)
    labels, _ = ndimage.label(faint | region, structure=np.ones((3, 3)))
    joined = np.unique(labels[region])
    grown = np.isin(labels, joined)
    if edge > 1 and _has_lines(ink, region, edge):
        thick = ndimage.binary_opening(grown, structure=np.ones((2 * edge + 1, 1), dtype=bool))
        near = ndimage.binary_dilation(region, iterations=edge, mask=grown)
        grown = _joined(grown & (thick | near | region), region)
    if _within(grown, region, TAIL, cell):
        return grown
    return ndimage.binary_dilation(region, iterations=max(2, edge), mask=faint) | region


def _has_lines(ink: np.ndarray, region: np.ndarray, edge: int) -> bool:
    """Whether faint ink away from `region` runs thin across most of the page's width: ruled paper.

    The ink is blurred along the rows first, so a faint line broken by noise reads as one piece."""
    along_rows = ndimage.uniform_filter1d(ink, 8 * edge + 1, axis=1) > LINE_LEVEL
    labels, _ = ndimage.label(along_rows & ~region, structure=np.ones((3, 3)))
    width = ink.shape[1]
    for box in ndimage.find_objects(labels):
        box_height, box_width = box[0].stop - box[0].start, box[1].stop - box[1].start
        if box_width >= LINE_SPAN * width and box_width >= LINE_ELONGATION * box_height:
            return True
    return False


def _joined(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The parts of `mask` (bool (h, w)) connected to a pixel of `seeds`."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    return np.isin(labels, np.unique(labels[seeds & mask]))


def _within(grown: np.ndarray, region: np.ndarray, tail: float, cell: int) -> bool:
    """Whether `grown` stays within `tail` of the region's size (plus a cell) around `region`'s bounding
    box, and reaches no edge of the image that `region` does not reach."""
    rows, cols = np.nonzero(region)
    grown_rows, grown_cols = np.nonzero(grown)
    margin = tail * max(np.ptp(rows), np.ptp(cols)) + cell
    height, width = region.shape
    beyond = (
        (rows.min() - grown_rows.min(), rows.min()),
        (grown_rows.max() - rows.max(), height - 1 - rows.max()),
        (cols.min() - grown_cols.min(), cols.min()),
        (grown_cols.max() - cols.max(), width - 1 - cols.max()),
    )
    return all(reach <= margin and (reach == 0 or reach < room) for reach, room in beyond)


def prepare(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """read_gray + to_mnist: a PNG/JPEG (path or bytes) -> uint8 (28, 28). UserError on any bad input."""
    if name is None:
        name = "image" if isinstance(source, bytes) else str(source)
    return to_mnist(read_gray(source, name), name)


# --- predictors -------------------------------------------------------------------------------


@dataclass
class TrialPredictor:
    """One trial's fold models, averaged: predict_proba(X uint8 (n, 28, 28)) -> float32 (n, 10)."""

    trial: TrialRun
    fold_models: list[Any] = field(repr=False)

    kind = "trial"

    @classmethod
    def load(cls, trial: TrialRun) -> TrialPredictor:
        paths = trial.fold_model_paths()
        if not paths:
            raise UserError(
                f"{trial.path}: no saved fold models (fold-<k>.keras, fold-<k>.joblib, ...); "
                "tuning keeps them for the best trials: pick one of those"
            )
        spec = models.get(trial.model)
        return cls(trial, [spec.load(p) for p in paths])

    @property
    def name(self) -> str:
        return self.trial.name

    @property
    def source(self) -> Path:
        return self.trial.path

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Mean of the fold models' probabilities: float32 (n, 10)."""
        spec = models.get(self.trial.model)
        return np.mean([spec.predict_proba(m, X) for m in self.fold_models], axis=0).astype(np.float32)

    @cached_property
    def gradient_fn(self) -> GradientFn | None:
        """Gradients of the fold models' mean probability, or None when the family offers none."""
        spec = models.get(self.trial.model)
        functions = [spec.gradient_fn(m) for m in self.fold_models]
        present = [f for f in functions if f is not None]
        if len(present) < len(functions):
            return None
        return blend_gradients(present, [1.0] * len(present))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.source),
            "model": self.trial.model,
            "folds": len(self.fold_models),
            "cv_accuracy": self.trial.cv_accuracy,
        }


@dataclass
class EnsemblePredictor:
    """A weighted blend of trials, as written beside a submission by `ensemble`."""

    source: Path
    members: list[TrialPredictor] = field(repr=False)
    weights: np.ndarray
    cv_accuracy: float | None = None

    kind = "ensemble"

    @property
    def name(self) -> str:
        return self.source.name

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Weighted mean of the members' probabilities: float32 (n, 10)."""
        return manifest.blend([m.predict_proba(X) for m in self.members], self.weights)

    @cached_property
    def gradient_fn(self) -> GradientFn | None:
        """Gradients of the blend, or None when any member offers none (maps then use occlusion)."""
        functions = [m.gradient_fn for m in self.members]
        present = [f for f in functions if f is not None]
        if len(present) < len(functions):
            return None
        return blend_gradients(present, [float(w) for w in self.weights])

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.source),
            "members": [m.name for m in self.members],
            "weights": [float(w) for w in self.weights],
            "cv_accuracy": self.cv_accuracy,
        }


Predictor = TrialPredictor | EnsemblePredictor | ExportedPredictor


def load_ensemble(path: str | os.PathLike, runs_dir: str | os.PathLike) -> EnsemblePredictor:
    """An ensemble manifest (beside its submission .csv) as one predictor; its trials are loaded now.

    A constituent's folder is taken as written in the manifest when it exists, else as
    `<runs_dir>/<study>/trial-<n>` (so a moved runs folder works with --runs-dir).
    """
    read = manifest.read(path)
    members = []
    for member in read.members:
        folder = member.folder(runs_dir)
        if not folder.is_dir():
            raise UserError(
                f"{read.path}: constituent {member.name} not found at {member.path or folder}"
                + (f" nor {folder}" if member.path is not None else "")
                + " (pass --runs-dir if the runs folder moved)"
            )
        members.append(TrialPredictor.load(load_trial(folder)))
    return EnsemblePredictor(read.path, members, read.weights, read.cv_accuracy)


def load_predictor(
    runs_dir: str | os.PathLike,
    submissions_dir: str | os.PathLike,
    ensemble: str | os.PathLike | None = None,
    trial: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
) -> Predictor:
    """The predictor asked for (an ensemble, a trial or an exported model file), else the newest ensemble in
    submissions_dir, else the best trial that kept its fold models in runs_dir. None of them: UserError
    saying how to make one."""
    if model is not None:
        return load_exported(model)
    if ensemble is not None:
        return load_ensemble(ensemble, runs_dir)
    if trial is not None:
        return TrialPredictor.load(load_trial(trial))
    newest = manifest.newest(submissions_dir)
    if newest is not None:
        return load_ensemble(newest, runs_dir)
    for run in list_trials(runs_dir):
        if run.fold_model_paths():
            return TrialPredictor.load(run)
    raise UserError(
        f"no model to predict with: no ensemble .json in {submissions_dir}/ and no trial with saved fold "
        f"models in {runs_dir}/; make one with `python scripts/tune.py` (then `python scripts/ensemble.py`)"
    )


def top_k(proba: np.ndarray, k: int = TOP_K) -> list[tuple[int, float]]:
    """The k most likely digits of one (10,) probability row, most likely first."""
    order = np.argsort(-proba, kind="stable")[:k]
    return [(int(d), float(proba[d])) for d in order]


# --- the command ------------------------------------------------------------------------------


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files as given; a folder becomes its files (not hidden, not recursive), sorted by name."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not inside:
                raise UserError(f"{path}: folder has no files")
            files += inside
        else:
            files.append(path)
    return files


@dataclass
class Outcome:
    """One input file: its MNIST-style image and probabilities, or the reason it failed."""

    path: Path
    gray: np.ndarray | None = None
    digit: np.ndarray | None = None
    proba: np.ndarray | None = None
    error: str | None = None
    maps: np.ndarray | None = None  # float32 (k, 28, 28): attribution maps toward map_classes
    map_classes: np.ndarray | None = None  # int64 (k,): the k most likely digits, most likely first


def predict_files(predictor: Predictor, files: Sequence[Path]) -> list[Outcome]:
    """Preprocess every file (failures recorded, not raised) and predict the good ones in one batch."""
    outcomes = []
    for path in files:
        outcome = Outcome(path)
        try:
            outcome.gray = read_gray(path)
            outcome.digit = to_mnist(outcome.gray, str(path))
        except UserError as exc:
            outcome.error = str(exc)
        outcomes.append(outcome)
    good = [o for o in outcomes if o.error is None]
    if good:
        proba = predictor.predict_proba(np.stack([_digit(o) for o in good]))
        for outcome, row in zip(good, proba):
            outcome.proba = row
    return outcomes


def _digit(outcome: Outcome) -> np.ndarray:
    """The 28x28 version of an outcome that was read without an error."""
    assert outcome.digit is not None, outcome.path
    return outcome.digit


def explain_outcomes(predictor: Predictor, outcomes: Sequence[Outcome], k: int = EXPLAINED_CLASSES) -> str | None:
    """Fill in the maps of each predicted outcome's k most likely digits; returns the method used."""
    good = [o for o in outcomes if o.proba is not None]
    if not good:
        return None
    classes = attribution.top_classes(np.stack([o.proba for o in good if o.proba is not None]), k)
    result = attribution.explain(predictor, np.repeat(np.stack([_digit(o) for o in good]), k, axis=0), classes.ravel())
    for outcome, row, maps in zip(good, classes, result.maps.reshape(len(good), k, *IMAGE_SHAPE)):
        outcome.map_classes, outcome.maps = row, maps
    return result.method


def summary(predictor: Predictor) -> str:
    """One line naming the predictor: kind, path, size and CV accuracy."""
    info = predictor.describe()
    cv = f", CV accuracy {info['cv_accuracy']:.5f}" if info.get("cv_accuracy") is not None else ""
    if info["kind"] == "exported":
        return f"exported model {info['path']} ({info['format']})"
    if info["kind"] == "ensemble":
        return f"ensemble {info['path']} ({len(info['members'])} trials{cv})"
    return f"trial {info['path']} ({info['model']}, {info['folds']} fold models{cv})"
