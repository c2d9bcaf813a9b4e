"""From trials to a submission: ensemble weights chosen on out-of-fold predictions (ensemble) and the
submission files with their local score and history (submission)."""
