"""The competition's files: where they live (paths), reading and validating the CSVs (dataset), the
bundled MNIST and its Kaggle-format mirror, and getting them (download).

`load_train`, `load_test` and `load_dataset` are the entry points most code needs.
"""

from kaggle_digits.data.dataset import Dataset, load_dataset, load_test, load_train

__all__ = ["Dataset", "load_dataset", "load_test", "load_train"]
