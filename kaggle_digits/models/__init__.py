"""Model families, found by name. Adding a family is one module plus one line in FAMILIES."""

from __future__ import annotations

import importlib

from ..errors import UserError
from .base import FitResult, GradientFn, ModelSpec

# name -> module defining SPEC (a ModelSpec). Modules are imported on first use: Keras is slow to load.
FAMILIES = {
    "mlp": "kaggle_digits.models.mlp",
    "dense": "kaggle_digits.models.dense",
    "cnn": "kaggle_digits.models.cnn",
}


def get(name: str) -> ModelSpec:
    """The ModelSpec registered as `name`; an unknown name is a UserError listing the known ones."""
    if name not in FAMILIES:
        raise UserError(f"unknown model '{name}': choose one of {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name]).SPEC


__all__ = ["FAMILIES", "FitResult", "GradientFn", "ModelSpec", "get"]
