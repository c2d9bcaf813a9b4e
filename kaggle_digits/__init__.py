"""kaggle-digits: cross-validated, tuned and ensembled models for Kaggle's Digit Recognizer."""

__version__ = "0.1.0"

N_CLASSES = 10
IMAGE_SHAPE = (28, 28)
N_PIXELS = 28 * 28
COMPETITION = "digit-recognizer"
