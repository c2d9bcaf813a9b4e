"""Which files in a folder this toolkit wrote: a manifest of their SHA-256, so that a command rewrites
its own earlier output but never a file of the user's that happens to have the same name."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kaggle_digits.io import read_json, sha256, write_json

MANIFEST = ".kaggle-digits-written.json"  # {file name: sha256 of what was written}


def _recorded(folder: Path) -> dict[str, str]:
    try:
        files = read_json(folder / MANIFEST)
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def foreign(folder: Path, files: Iterable[Path]) -> list[Path]:
    """Those of `files` (in `folder`) that exist but were not written by the toolkit, or changed since."""
    recorded = _recorded(Path(folder))
    return [p for p in files if p.is_file() and recorded.get(p.name) != sha256(p)]


def record(folder: Path, files: Iterable[Path]) -> None:
    """Note `files` (just written into `folder`) as the toolkit's own; earlier entries of files still
    present stay."""
    folder = Path(folder)
    recorded = {name: digest for name, digest in _recorded(folder).items() if (folder / name).is_file()}
    recorded.update({p.name: sha256(p) for p in files})
    write_json(folder / MANIFEST, recorded)
