"""The ensemble manifest: the `.json` beside a submission that names the trials blended into it and
their weights. This module is the one that writes, reads and finds it (docs/file-formats.md), and the
one definition of how a manifest's members combine (`blend`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits.errors import UserError
from kaggle_digits.io import read_json, write_json

KIND = "ensemble"
COMBINE = "weighted mean of each constituent's class probabilities (each the mean over its fold models); the label is the argmax"


def blend(probas: Sequence[np.ndarray] | np.ndarray, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Weighted mean of class probabilities.

    probas : m arrays of shape (n, 10) (or one array (m, n, 10)), one per member
    weights : m non-negative floats with a positive sum (normalised here)
    Returns float32 of shape (n, 10), rows summing to 1.
    """
    w = np.asarray(weights, dtype=np.float64)
    return (np.tensordot(w / w.sum(), np.asarray(probas, dtype=np.float64), axes=1)).astype(np.float32)


@dataclass(frozen=True)
class Member:
    """One trial of an ensemble."""

    name: str  # <study>/trial-<n>
    weight: float
    path: Path | None = None  # the trial folder where it was written
    model: str | None = None
    augment: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    cv_accuracy: float | None = None
    cv_std: float | None = None
    oof_accuracy: float | None = None
    oof_log_loss: float | None = None

    def folder(self, runs_dir: str | os.PathLike) -> Path:
        """The trial folder: where it was written when that still exists, else `<runs_dir>/<name>` (a runs
        folder that moved, passed as --runs-dir)."""
        if self.path is not None and self.path.is_dir():
            return self.path
        return Path(runs_dir) / self.name


@dataclass
class Manifest:
    """A manifest as read: its members, and every other field as written (`info`)."""

    path: Path
    members: list[Member]
    info: dict[str, Any]

    @property
    def submission(self) -> Path:
        """The submission CSV the manifest describes."""
        return self.path.with_name(self.info.get("submission") or self.path.with_suffix(".csv").name)

    @property
    def cv_accuracy(self) -> float | None:
        value = self.info.get("cv_accuracy")
        return None if value is None else float(value)

    @property
    def weights(self) -> np.ndarray:
        return np.asarray([m.weight for m in self.members], dtype=np.float64)


def path_for(submission_csv: str | os.PathLike) -> Path:
    """Where the manifest of a submission CSV lives: beside it, same name, `.json`."""
    return Path(submission_csv).with_suffix(".json")


def write(path: str | os.PathLike, members: Sequence[Member], **info: Any) -> Path:
    """Write a manifest (atomically): `members` with a positive weight, then `info`'s fields (method,
    seed, CV figures, local score, ...) as given."""
    members = [m for m in members if m.weight > 0]
    if not members:
        raise ValueError("an ensemble needs at least one member with a positive weight")
    document = {
        "kind": KIND,
        "combine": COMBINE,
        **info,
        "constituents": [
            {
                "name": m.name,
                "path": None if m.path is None else str(Path(m.path).resolve()),
                "model": m.model,
                "augment": bool(m.augment),
                "params": m.params,
                "weight": float(m.weight),
                "cv_accuracy": m.cv_accuracy,
                "cv_std": m.cv_std,
                "oof_accuracy": m.oof_accuracy,
                "oof_log_loss": m.oof_log_loss,
            }
            for m in members
        ],
    }
    write_json(path, document)
    return Path(path)


def is_manifest(document: Any) -> bool:
    """Whether a parsed JSON document is an ensemble manifest."""
    return (
        isinstance(document, dict) and document.get("kind") == KIND and isinstance(document.get("constituents"), list)
    )


def read(path: str | os.PathLike) -> Manifest:
    """Read and check a manifest. A missing file, another JSON file or a malformed member is a UserError
    of one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        document = read_json(path)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path}: not a JSON file") from None
    if not is_manifest(document):
        raise UserError(f"{path}: not an ensemble's .json (write one with `python scripts/ensemble.py`)")
    members = []
    for item in document["constituents"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "weight" not in item:
            raise UserError(f"{path}: each constituent needs 'name' and 'weight', got {item!r}")
        try:
            weight = float(item["weight"])
        except (TypeError, ValueError):
            raise UserError(f"{path}: constituent {item['name']}: weight {item['weight']!r} is not a number") from None
        members.append(
            Member(
                name=item["name"],
                weight=weight,
                path=Path(item["path"]) if item.get("path") else None,
                model=item.get("model"),
                augment=bool(item.get("augment", False)),
                params=item.get("params") or {},
                cv_accuracy=item.get("cv_accuracy"),
                cv_std=item.get("cv_std"),
                oof_accuracy=item.get("oof_accuracy"),
                oof_log_loss=item.get("oof_log_loss"),
            )
        )
    if not members:
        raise UserError(f"{path}: the ensemble has no constituents")
    weights = [m.weight for m in members]
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError(f"{path}: weights must be non-negative with a positive sum, got {weights}")
    info = {k: v for k, v in document.items() if k != "constituents"}
    return Manifest(path=path, members=members, info=info)


def find(submissions_dir: str | os.PathLike) -> list[Path]:
    """The manifests in a submissions folder, newest first (modification time, then name)."""
    folder = Path(submissions_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        try:
            document = read_json(path)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if is_manifest(document):
            found.append(path)
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def newest(submissions_dir: str | os.PathLike) -> Path | None:
    """The newest manifest in a submissions folder, or None."""
    found = find(submissions_dir)
    return found[0] if found else None
