"""The only module that imports `kaggle`. Imported lazily: `import kaggle` authenticates at import time."""

from __future__ import annotations

import os
from pathlib import Path

CREDENTIAL_PLACES = (
    "the KAGGLE_API_TOKEN or KAGGLE_USERNAME/KAGGLE_KEY environment variables, "
    "~/.kaggle/access_token, or kaggle.json in $KAGGLE_CONFIG_DIR or ~/.kaggle"
)


def config_dir() -> Path:
    """Where the Kaggle client looks for kaggle.json / access_token."""
    return Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle").expanduser()


def has_credentials() -> bool:
    """True when the Kaggle client would find credentials (token, env vars or kaggle.json)."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    return any((config_dir() / name).is_file() for name in ("kaggle.json", "access_token"))


def download_competition_zip(dest_dir: Path, force: bool = False) -> Path:
    """Download digit-recognizer.zip into dest_dir with the official client; return its path."""
    raise NotImplementedError
