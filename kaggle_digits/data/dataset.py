"""Read and validate the competition's CSV files; read MNIST IDX files; build the offline mirror."""

from __future__ import annotations

import gzip
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_digits import N_PIXELS
from kaggle_digits.errors import UserError
from kaggle_digits.io import atomic_open, sha256  # noqa: F401  (sha256: data.sha256, the files' fingerprint)

PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]
TRAIN_HEADER = ["label", *PIXEL_COLUMNS]
TEST_HEADER = PIXEL_COLUMNS
SUBMISSION_HEADER = ["ImageId", "Label"]
N_TRAIN = 42_000
N_TEST = 28_000
# The offline mirror shuffles MNIST's 70,000 images with this seed, then takes 42,000 / 28,000.
MIRROR_SEED = 2012
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass
class Dataset:
    """The competition's data as arrays.

    X_train : uint8 array of shape (n_train, 28, 28)
    y_train : uint8 array of shape (n_train,)
    X_test : uint8 array of shape (n_test, 28, 28)
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray


def load_train(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a Kaggle-format train.csv (`label,pixel0..pixel783`).

    Returns X of shape (n, 28, 28) uint8 and y of shape (n,) uint8. Raises UserError naming the
    file, line and column of the first bad value.
    """
    values = _read_csv(Path(path), TRAIN_HEADER)
    labels = values[:, 0]
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        row = int(bad[0])
        raise UserError(f"{path} line {row + 2}, column label: '{labels[row]}' is not a digit 0-9")
    return values[:, 1:].astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def load_test(path: str | os.PathLike) -> np.ndarray:
    """Read a Kaggle-format test.csv (`pixel0..pixel783`) into a uint8 array of shape (n, 28, 28)."""
    return _read_csv(Path(path), TEST_HEADER).astype(np.uint8).reshape(-1, 28, 28)


def load_dataset(data_dir: str | os.PathLike) -> Dataset:
    """Load train.csv and test.csv from `data_dir`, with a hint to download them when missing."""
    data_dir = Path(data_dir)
    for name in ("train.csv", "test.csv"):
        if not (data_dir / name).exists():
            raise UserError(
                f"{data_dir / name} not found: run `python scripts/download.py` first"
                + (" (or pass --data-dir)" if data_dir != Path("data") else "")
            )
    X_train, y_train = load_train(data_dir / "train.csv")
    return Dataset(X_train, y_train, load_test(data_dir / "test.csv"))


# The longest first line read as a header: the train header is under 7,000 bytes; room is left for spaces
# and quotes, and a longer first line (a file with no newline at all, say) is refused before it is read whole.
MAX_HEADER_BYTES = 64 * 1024
# What a file that is not text starts with, and what to tell its owner.
_BINARY_STARTS = {
    b"\x1f\x8b": "gzip-compressed data; decompress it first with gunzip",
    b"PK\x03\x04": "a zip archive; unzip it first, or use `download --source zip --zip FILE`",
}


def _read_csv(path: Path, header: list[str]) -> np.ndarray:
    """Parse a headed CSV of non-negative integers < 256 into an int array (n, len(header))."""
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a CSV file")
    try:
        with open(path, "rb") as f:
            raw_first = f.readline(MAX_HEADER_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    _check_text(path, raw_first)
    if len(raw_first) > MAX_HEADER_BYTES and not raw_first.endswith(b"\n"):
        raise UserError(
            f"{path} line 1: longer than {MAX_HEADER_BYTES // 1024} KB without a line break, no header is that long "
            f"(expected `{','.join(header[:2])},...`)"
        )
    # utf-8-sig: a byte-order mark before the header is accepted, as Kaggle's own parser does.
    first = raw_first.decode("utf-8-sig", "replace").strip()
    if not first:
        raise UserError(f"{path}: file is empty (expected a header line `{','.join(header[:2])},...`)")
    names = [n.strip().strip('"') for n in first.split(",")]
    if names != header:
        if names and names[0].lstrip("-").isdigit():
            raise UserError(f"{path} line 1: missing header (expected `{','.join(header[:2])},...`)")
        if len(names) != len(header):
            raise UserError(
                f"{path} line 1: header has {len(names)} columns, expected {len(header)} "
                f"(`{','.join(header[:2])},...,{header[-1]}`)"
            )
        col = next(i for i, (a, b) in enumerate(zip(names, header)) if a != b)
        raise UserError(f"{path} line 1, column {col + 1}: header '{_shown(names[col])}', expected '{header[col]}'")
    try:
        with warnings.catch_warnings():
            # Mixed types in a column (a stray word among numbers) are reported below, row and column named.
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            frame = pd.read_csv(path, skip_blank_lines=False, engine="c", encoding="utf-8-sig")
    except pd.errors.ParserError as exc:
        raise UserError(_parser_message(path, exc)) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if frame.empty:
        raise UserError(f"{path}: has a header but no rows")
    return _validated_values(path, frame, header)


def _check_text(path: Path, start: bytes) -> None:
    """UserError when the file's first bytes are not text: compressed data, an archive, NUL bytes."""
    for magic, what in _BINARY_STARTS.items():
        if start.startswith(magic):
            raise UserError(f"{path}: not a text CSV file ({what})")
    if b"\x00" in start:
        raise UserError(f"{path}: not a text CSV file (it holds NUL bytes)")


def _parser_message(path: Path, exc: Exception) -> str:
    """pandas' tokenizer error in our words, the file and the line where the fault is named."""
    text = str(exc).strip().splitlines()[-1].split("C error: ")[-1]
    # A quote opened and never closed swallows the lines after it: pandas names where it gave up (the end
    # of the file, or a far line whose field count is off), so name the line the quote is on.
    quote_line = _unclosed_quote_line(path)
    if quote_line is not None:
        return f'{path} line {quote_line}: a quote (") that is never closed on its line'
    # "Expected 785 fields in line 12, saw 786"
    fields = re.match(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if fields:
        expected, line, seen = fields.groups()
        return f"{path} line {line}: has {seen} values, expected {expected}"
    return f"{path}: {text}"


def _unclosed_quote_line(path: Path) -> int | None:
    """The first line (1-based) with an odd number of double quotes, or None."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if line.count(b'"') % 2:
                return number
    return None


def _validated_values(path: Path, frame: pd.DataFrame, header: list[str]) -> np.ndarray:
    n_rows = len(frame)
    # Blank cells and short rows show up as NaN; tell them apart by reading the raw line.
    missing = frame.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing.any(axis=1))[0])
        line = _raw_line(path, row + 2)
        fields = line.split(",") if line.strip() else []
        if not line.strip():
            raise UserError(f"{path} line {row + 2}: blank line")
        if len(fields) != len(header):
            raise UserError(f"{path} line {row + 2}: has {len(fields)} values, expected {len(header)}")
        col = int(np.flatnonzero(missing[row])[0])
        raise UserError(f"{path} line {row + 2}, column {header[col]}: blank value")
    for col, dtype in enumerate(frame.dtypes):
        # int64 holds every plain integer that fits; anything else (3.0, 1e2, a word, a 20-digit number)
        # is found in the column's text as written.
        if dtype != np.int64:
            high = 9 if header[col] == "label" else 255
            what = "a digit 0-9" if high == 9 else "an integer 0-255"
            found = _first_bad_cell(path, header[col], high)
            if found is None:  # pandas and the check below disagree on some cell: still one line
                raise UserError(f"{path} column {header[col]}: holds values that are not {what}")
            row, text = found
            raise UserError(f"{path} line {row + 2}, column {header[col]}: '{text}' is not {what}")
    values = frame.to_numpy(dtype=np.int64)
    highs = np.array([9 if name == "label" else 255 for name in header])
    out_of_range = (values < 0) | (values > highs)
    if out_of_range.any():
        row, col = (int(i) for i in np.argwhere(out_of_range)[0])
        what = "a digit 0-9" if header[col] == "label" else "an integer 0-255"
        raise UserError(f"{path} line {row + 2}, column {header[col]}: '{values[row, col]}' is not {what}")
    assert values.shape == (n_rows, len(header))
    return values


def _first_bad_cell(path: Path, column: str, high: int) -> tuple[int, str] | None:
    """The first row (0-based, after the header) of `column` whose text is not a plain integer 0..high, and
    that text as an error message shows it. Called only when pandas did not read the column as integers."""
    cells = pd.read_csv(path, usecols=[column], dtype=str, keep_default_na=False, engine="c", encoding="utf-8-sig")[
        column
    ]
    for row, cell in enumerate(cells):
        text = cell.strip(" \t")  # only the spaces pandas itself skips around a number, not any Unicode space
        if not (text.isascii() and text.isdigit() and int(text) <= high):
            return row, _shown(text)
    return None


def _shown(text: str, limit: int = 20) -> str:
    """A cell as an error message quotes it: at most `limit` characters, anything unprintable (a NUL, a
    no-break space, a line break) escaped as Python writes it."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _raw_line(path: Path, line_number: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, start=1):
            if i == line_number:
                return line.rstrip("\r\n")
    return ""


# --- MNIST IDX ------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a (gzip) IDX file of unsigned bytes into an array of its stated shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise UserError(f"{path}: IDX header says {expected} bytes of data, file has {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_mnist(mnist_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 MNIST images (train then t10k) as uint8 (70000, 28, 28) and labels (70000,)."""
    mnist_dir = Path(mnist_dir)
    missing = [name for name in MNIST_FILES.values() if not (mnist_dir / name).exists()]
    if missing:
        raise UserError(f"{mnist_dir}: missing MNIST files {', '.join(missing)}")
    arrays = {key: read_idx(mnist_dir / name) for key, name in MNIST_FILES.items()}
    X = np.concatenate([arrays["train_images"], arrays["test_images"]])
    y = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    return X, y


def mirror_split(n_images: int = N_TRAIN + N_TEST, seed: int = MIRROR_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the 70,000 MNIST images for the mirror's train and test rows."""
    order = np.random.default_rng(seed).permutation(n_images)
    return order[:N_TRAIN], order[N_TRAIN:]


def write_mirror(mnist_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write train.csv, test.csv, sample_submission.csv and solution.csv from MNIST.

    Each file is written atomically. Returns the row count of each file written.
    """
    X, y = load_mnist(mnist_dir)
    train_idx, test_idx = mirror_split(len(X))
    out_dir = Path(out_dir)
    flat = X.reshape(len(X), -1)
    write_pixel_csv(out_dir / "train.csv", flat[train_idx], labels=y[train_idx])
    write_pixel_csv(out_dir / "test.csv", flat[test_idx])
    image_ids = np.arange(1, len(test_idx) + 1)
    write_submission_like(out_dir / "sample_submission.csv", image_ids, np.zeros(len(test_idx), dtype=int))
    write_submission_like(out_dir / "solution.csv", image_ids, y[test_idx])
    return {
        "train.csv": len(train_idx),
        "test.csv": len(test_idx),
        "sample_submission.csv": len(test_idx),
        "solution.csv": len(test_idx),
    }


_NUMBER_TEXT = np.array([str(i) for i in range(256)], dtype=object)


def write_pixel_csv(path: str | os.PathLike, pixels: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write rows of 784 uint8 pixels (with a leading label column if given) in Kaggle's CSV format."""
    pixels = np.asarray(pixels, dtype=np.uint8).reshape(len(pixels), -1)
    header = TRAIN_HEADER if labels is not None else TEST_HEADER
    with atomic_open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(",".join(header) + "\n")
        for start in range(0, len(pixels), 2000):
            block = pixels[start : start + 2000]
            text = _NUMBER_TEXT[block]
            if labels is not None:
                text = np.concatenate([_NUMBER_TEXT[np.asarray(labels[start : start + 2000])][:, None], text], axis=1)
            f.write("\n".join(",".join(row) for row in text) + "\n")


def write_submission_like(path: str | os.PathLike, image_ids: np.ndarray, labels: np.ndarray) -> None:
    """Write an `ImageId,Label` CSV atomically: the one writer of that format (submissions, and the
    mirror's sample_submission.csv and solution.csv)."""
    with atomic_open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(",".join(SUBMISSION_HEADER) + "\n")
        f.write("".join(f"{int(i)},{int(label)}\n" for i, label in zip(image_ids, labels)))


def count_rows(path: str | os.PathLike) -> int:
    """Data rows of a CSV file with a header: its lines less the header, a last line without its
    newline included (read in chunks: a full train.csv in well under a second)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(lines + (last != b"\n") - 1, 0)
