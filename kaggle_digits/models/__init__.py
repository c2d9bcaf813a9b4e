"""Model families, found by name. Adding a family is one module plus one line in FAMILIES."""

from __future__ import annotations

import importlib

from kaggle_digits.errors import UserError
from kaggle_digits.models.base import FitResult, GradientFn, ModelSpec, uses_tensorflow

# name -> module defining SPEC (a ModelSpec). Modules are imported on first use: Keras is slow to load.
FAMILIES = {
    "mlp": "kaggle_digits.models.mlp",
    "dense": "kaggle_digits.models.dense",
    "cnn": "kaggle_digits.models.cnn",
    "simplecnn": "kaggle_digits.models.simplecnn",
}

# quick: minutes; standard: about an hour per family on a 2-core CPU; full: hours. Each family says what
# they mean for it (its SPEC.presets).
PRESET_NAMES = ("quick", "standard", "full")


def names() -> tuple[str, ...]:
    """The registered family names."""
    return tuple(FAMILIES)


def get(name: str) -> ModelSpec:
    """The ModelSpec registered as `name`; an unknown name is a UserError listing the known ones."""
    if name not in FAMILIES:
        raise UserError(f"unknown model '{name}': choose one of {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name]).SPEC


def parse_families(text: str, option: str = "--models") -> list[str]:
    """`"cnn, dense"` -> ["cnn", "dense"]: known family names, each once, in the order given; a UserError
    naming the option for an empty list or an unknown name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError(f"{option} {text!r}: name at least one of {', '.join(FAMILIES)}")
    for name in names:
        if name not in FAMILIES:
            raise UserError(f"{option}: unknown model '{name}', choose from {', '.join(FAMILIES)}")
    return list(dict.fromkeys(names))


__all__ = [
    "FAMILIES",
    "PRESET_NAMES",
    "FitResult",
    "GradientFn",
    "ModelSpec",
    "get",
    "names",
    "parse_families",
    "uses_tensorflow",
]
