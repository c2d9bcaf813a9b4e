"""The pages of `predict --show` and `predict --explain` (PNG, JPEG, PDF or SVG, as the file name's suffix
says): a grid of at most PAGE_SIZE files per page.

A PNG page carries a text entry saying which command wrote it; a page of another format is noted in its
folder's `written.py` record. An existing file is replaced only when it is such a page, so a user's
own picture (an input image, say) is never overwritten, and a later run over the same folder leaves the
pages out of its inputs.
"""

from __future__ import annotations

import math
import os
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kaggle_digits import N_CLASSES, written
from kaggle_digits.errors import UserError
from kaggle_digits.io import atomic_path

PAGE_SIZE = 25  # files per page: a 5 x 5 grid
MAX_COLUMNS = 5
WRITER_KEY = "Written-By"  # PNG tEXt keyword of the pages this module writes
WRITER = "kaggle-digits predict"
DPI = 100
# The page formats, by file name suffix (no suffix: PNG).
FORMATS = {"": "png", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}


def page_paths(out: Path, n_files: int) -> list[Path]:
    """Where the pages for n_files go: OUT itself for one page, else OUT-1.png, OUT-2.png, ... beside it."""
    pages = max(1, math.ceil(n_files / PAGE_SIZE))
    if pages == 1:
        return [out]
    suffix = out.suffix or ".png"
    return [out.with_name(f"{out.stem}-{k}{suffix}") for k in range(1, pages + 1)]


def page_format(option: str, out: Path) -> str:
    """The format the page file's suffix names (matplotlib's name for it); UserError for any other suffix."""
    found = FORMATS.get(out.suffix.lower())
    if found is None:
        raise UserError(f"{option} {out}: a page is written as .png, .jpg, .pdf or .svg, not {out.suffix}")
    return found


def is_page(path: Path) -> bool:
    """Whether `path` is a page this module wrote (and nobody changed since)."""
    return path.is_file() and (written_here(path) or not written.foreign(path.parent, [path]))


def written_here(path: Path) -> bool:
    """Whether `path` is a PNG page written by this module (it carries the WRITER_KEY text entry)."""
    try:
        with warnings.catch_warnings():
            # Only the header is read: a huge image is no bomb here (predict reports it on its own).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.format == "PNG" and image.info.get(WRITER_KEY) == WRITER
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def check_pages(option: str, given: str | os.PathLike, n_files: int, inputs: Sequence[Path]) -> list[Path]:
    """The page paths for `option` (e.g. "--show") given as `given`, or UserError when it names a folder (one
    that exists, or any name ending in a slash), a format with no writer, or when a page is one of the input
    files, or exists and was not written by this module. Checked before anything is done."""
    out = Path(given)
    if str(given).endswith(("/", os.sep)) or out.is_dir():
        raise UserError(f"{option} {given}: is a folder, expected a file name such as {out / 'predictions.png'}")
    page_format(option, out)
    pages = page_paths(out, n_files)
    for page in pages:
        if page.is_dir():
            raise UserError(f"{option} {out}: {page} is a folder")
        if not page.exists():
            continue
        for source in inputs:
            if source.exists() and os.path.samefile(page, source):
                raise UserError(f"{option} {out}: {page} is one of the input images; choose another file name")
        if not is_page(page):
            raise UserError(
                f"{option} {out}: {page} exists and was not written by kaggle-digits; "
                "choose another file name or remove it"
            )
    return pages


def write_pages(cells: Sequence[Any], pages: Sequence[Path], title: str, kind: str) -> list[Path]:
    """Draw `cells` (predict.Outcome) on len(pages) pages of at most PAGE_SIZE and write each atomically.

    kind : "show" (the input, its 28x28 version and ten bars) or "explain" (the input, its 28x28 version
    and the maps of its top two classes).
    """
    done = []
    for number, page in enumerate(pages):
        chunk = list(cells)[number * PAGE_SIZE : (number + 1) * PAGE_SIZE]
        suffix = f" (page {number + 1} of {len(pages)})" if len(pages) > 1 else ""
        figure = _page(chunk, f"{title}{suffix}", kind)
        fmt = page_format("page", page)
        with atomic_path(page) as tmp:
            metadata = {WRITER_KEY: WRITER} if fmt == "png" else None
            figure.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata)
        if fmt != "png":  # a PNG page carries its own mark; other formats are noted in the folder's record
            written.record(page.parent, [page])
        done.append(page)
    return done


def _page(cells: Sequence[Any], title: str, kind: str) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(MAX_COLUMNS, max(1, math.ceil(math.sqrt(len(cells)))))
    rows = max(1, math.ceil(len(cells) / columns))
    ratios = [1, 1, 1.7] if kind == "show" else [1, 1, 1, 1]
    cell_width, cell_height = 1.25 * sum(ratios) + 0.4, 1.9
    figure = Figure(figsize=(columns * cell_width, rows * cell_height + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    outer = figure.add_gridspec(rows, columns)
    for index, outcome in enumerate(cells):
        inner = outer[index // columns, index % columns].subgridspec(1, len(ratios), width_ratios=ratios)
        axes = [figure.add_subplot(inner[0, j]) for j in range(len(ratios))]
        _cell(axes, outcome, kind)
    figure.suptitle(title, fontsize=11)
    if kind == "explain":
        figure.supxlabel("maps: red pushes toward the class, blue away from it", fontsize=9)
    return figure


def _cell(axes: list[Any], outcome: Any, kind: str) -> None:
    original, small, *rest = axes
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    original.set_title(_shorten(outcome.path.name), fontsize=8)
    if outcome.gray is not None:
        original.imshow(_thumbnail(outcome.gray), cmap="gray", vmin=0, vmax=1)
    else:
        original.axis("off")
    if outcome.digit is not None:
        small.imshow(outcome.digit, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        small.set_title("28x28", fontsize=8)
    else:
        small.axis("off")
    if outcome.proba is None:
        for ax in rest:
            ax.axis("off")
        reason = (outcome.error or "").removeprefix(f"{outcome.path}: ")  # the cell's title names the file
        rest[0].text(0, 0.5, textwrap.fill(reason, 30), fontsize=7, color="firebrick", va="center")
        return
    if kind == "show":
        _bars(rest[0], outcome.proba)
        return
    from kaggle_digits.report.attribution_plots import draw_map, symmetric_limit

    limit = symmetric_limit(outcome.maps)
    for ax, digit, amap in zip(rest, outcome.map_classes, outcome.maps):
        draw_map(ax, outcome.digit, amap, limit)
        ax.set_title(f"toward {digit} ({outcome.proba[digit]:.1%})", fontsize=8)


def _bars(ax: Any, proba: np.ndarray) -> None:
    label = int(np.argmax(proba))
    colours = ["tab:blue" if d == label else "lightgray" for d in range(N_CLASSES)]
    ax.bar(range(N_CLASSES), proba, color=colours)
    ax.set_xticks(range(N_CLASSES))
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=6)
    ax.set_title(f"label {label} ({proba[label]:.1%})", fontsize=8)


def _thumbnail(gray: np.ndarray, size: int = 160) -> np.ndarray:
    if max(gray.shape) <= size:
        return gray
    image = Image.fromarray(np.asarray(gray, dtype=np.float32))
    image.thumbnail((size, size), Image.Resampling.BOX)
    return np.asarray(image)


def _shorten(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
