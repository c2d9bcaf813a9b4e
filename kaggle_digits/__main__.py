"""`python -m kaggle_digits <command>`: the same as `kaggle-digits <command>` (how `tune --jobs` starts its workers)."""

from kaggle_digits.cli import main_entry

if __name__ == "__main__":
    main_entry()
