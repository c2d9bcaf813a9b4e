"""The pruner's step: where in a trial an epoch's validation accuracy is reported.

One counter across folds, fold * STEP_STRIDE + epoch, puts the same fold and epoch of every trial on the
same step, so the pruner compares like with like (no fit runs STEP_STRIDE epochs).
"""

from __future__ import annotations

STEP_STRIDE = 1000


def pruner_step(fold: int, epoch: int) -> int:
    """The step a fold's epoch (both 0-based) is reported at."""
    return fold * STEP_STRIDE + epoch


def step_position(step: int) -> tuple[int, int]:
    """(fold, epoch) of a reported step: pruner_step's inverse."""
    return divmod(step, STEP_STRIDE)
