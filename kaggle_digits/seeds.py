"""The range of a --seed: what NumPy, scikit-learn and Optuna all accept."""

from __future__ import annotations

from kaggle_digits.errors import UserError

# NumPy's legacy RandomState (scikit-learn, Keras) takes 0..2**32-1, and a fit adds the fold number to the
# seed: half that range leaves room for any number of folds.
MAX_SEED = 2**31 - 1


def check_seed(seed: int | None, option: str = "--seed") -> None:
    """UserError naming the option when `seed` is outside 0..MAX_SEED (None: the default, fine)."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"{option} {seed}: needs a whole number from 0 to {MAX_SEED}")
