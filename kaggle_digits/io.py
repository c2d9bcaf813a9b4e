"""Atomic writes: an interrupted command never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from kaggle_digits.errors import UserError


class DiskFull(UserError):
    """A write failed because the disk is full; names the folder being written (the OS error names none)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        super().__init__(f"{self.folder}: the disk is full (no space left on device); nothing half-written was kept")


def is_disk_full(exc: BaseException) -> bool:
    """True for a full disk or an exhausted quota, also from libraries that only say so in the message
    (NumPy's short write: "280000 requested and 239584 written", no errno)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc) or bool(_SHORT_WRITE.search(str(exc)))


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


@contextlib.contextmanager
def writing_to(folder: str | os.PathLike) -> Iterator[None]:
    """Report a full disk in the block as DiskFull(folder): the folder the user chose, not a temporary one."""
    try:
        yield
    except DiskFull:
        raise DiskFull(folder) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(folder) from None
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    suffix : the temporary file's ending (a writer that goes by the name's suffix, such as Keras' `.keras`).
    The file gets the usual mode of a new file (0666 less the umask), not mkstemp's private 0600, so a
    runs folder shared by a team stays readable by all of it.
    """
    path = Path(path)
    if path.is_dir():
        # os.replace would fail later and name the temporary file instead.
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(path.parent) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces `path` when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save one array as .npy, atomically."""
    with atomic_open(path, "wb") as f:
        np.save(f, array)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
