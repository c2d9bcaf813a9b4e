"""`kernel`: run the pipeline on Kaggle's GPU as a kernel.

    python scripts/kernel.py bundle [--out build/kernel] [--preset P] [--models ...] [--augment] [--user U]
    python scripts/kernel.py push   [same options]       # bundle, create/version the source dataset, push
    python scripts/kernel.py status [--wait]
    python scripts/kernel.py output                      # fetch the output; submission.csv -> submissions/

The bundle is two folders: `dataset/` (the kaggle_digits package + dataset-metadata.json, uploaded as
the dataset `<user>/kaggle-digits-src`) and `kernel/` (the runner + kernel-metadata.json, the kernel
`<user>/kaggle-digits`).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kaggle_digits import COMPETITION, __version__
from kaggle_digits import models as models_registry
from kaggle_digits.blend import submission
from kaggle_digits.data import paths
from kaggle_digits.errors import UserError
from kaggle_digits.io import atomic_path, read_json, write_json
from kaggle_digits.progress import Log, silent
from kaggle_digits.units import format_seconds

DATASET_SLUG = "kaggle-digits-src"
DATASET_TITLE = "kaggle-digits source"
KERNEL_SLUG = "kaggle-digits"
KERNEL_TITLE = "kaggle-digits"  # Kaggle derives the slug from the title: keep them equal
RUNNER_NAME = "run_kaggle_digits.py"
RUNNER_SOURCE = paths.PACKAGE_DIR / "cli" / "kernel_runner.py"  # the kernel's script: a face, like the commands
PRESETS = models_registry.PRESET_NAMES
DEFAULT_PRESET = "standard"
# Only source files are bundled: no data, runs, caches or anything else that may sit in the package folder.
BUNDLED_SUFFIXES = {".py", ".html", ".css", ".js"}
OUTPUT_PATTERN = r"^(submission\.csv|kaggle-digits-run\.json|reports/.+)$"
KERNEL_DONE = {"complete", "error", "cancel_acknowledged"}
STATUS_TIMEOUT = 12 * 3600.0  # Kaggle stops a GPU session after 12 hours
STATUS_POLL = 30.0
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")


def resolve_user(user: str | None) -> str:
    """The Kaggle user name from --user, else from the credentials; a clear error when neither exists."""
    from kaggle_digits.kaggle import api as kaggle_api

    if user is None:
        if not kaggle_api.has_credentials():
            raise UserError(
                f"no Kaggle user name: give --user NAME, or add credentials ({kaggle_api.CREDENTIAL_PLACES})"
            )
        user = kaggle_api.username()
    if not _USER_NAME.match(user):
        raise UserError(f"--user {user!r} is not a Kaggle user name (letters, digits, '-' and '_')")
    return user


def normalize_models(models: str | None) -> str | None:
    """`"cnn, dense"` -> `"cnn,dense"`; None stays None (the pipeline's default families). Checked as the
    pipeline checks it (kaggle_digits.models.parse_families), so a bundle never carries an unknown family."""
    if models is None:
        return None
    return ",".join(models_registry.parse_families(models))


def kernel_ref(user: str) -> str:
    return f"{user}/{KERNEL_SLUG}"


# --- bundle -----------------------------------------------------------------------------------


def write_bundle(
    out: Path, user: str, preset: str = DEFAULT_PRESET, models: str | None = None, augment: bool = False
) -> tuple[Path, Path]:
    """Write `out/dataset` and `out/kernel`; return both folders. Replaces only an earlier bundle."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not _is_bundle(out):
        raise UserError(f"{out} exists and is not a kernel bundle: choose another --out")
    if preset not in PRESETS:
        raise UserError(f"--preset {preset}: choose one of {', '.join(PRESETS)}")
    models = normalize_models(models)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _write_dataset(staging / "dataset", user)
        _write_kernel(staging / "kernel", user, preset, models, augment)
        _refuse_credentials(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "dataset", out / "kernel"


def _is_bundle(folder: Path) -> bool:
    return (folder / "dataset" / "dataset-metadata.json").is_file() and (
        folder / "kernel" / "kernel-metadata.json"
    ).is_file()


def _write_dataset(folder: Path, user: str) -> None:
    package = folder / "kaggle_digits"
    for src in sorted(paths.PACKAGE_DIR.rglob("*")):
        rel = src.relative_to(paths.PACKAGE_DIR)
        if not src.is_file() or src.suffix not in BUNDLED_SUFFIXES:
            continue
        if any(part.startswith((".", "__pycache__")) for part in rel.parts):
            continue
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, package / rel)
    write_json(
        folder / "dataset-metadata.json",
        {
            "title": DATASET_TITLE,
            "id": f"{user}/{DATASET_SLUG}",
            "subtitle": "Source of the kaggle-digits toolkit for its Kaggle kernel",
            "licenses": [{"name": "MIT"}],
        },
    )


def _write_kernel(folder: Path, user: str, preset: str, models: str | None, augment: bool) -> None:
    folder.mkdir(parents=True)
    settings = {"preset": preset, "models": models, "augment": augment, "source_dataset": DATASET_SLUG}
    runner = RUNNER_SOURCE.read_text(encoding="utf-8")
    line = re.compile(r"^SETTINGS = \{.*\}$", re.MULTILINE)
    if len(line.findall(runner)) != 1:
        raise RuntimeError(f"{RUNNER_SOURCE} must hold exactly one `SETTINGS = {{...}}` line")
    (folder / RUNNER_NAME).write_text(line.sub(lambda _: f"SETTINGS = {settings!r}", runner), encoding="utf-8")
    write_json(
        folder / "kernel-metadata.json",
        {
            "id": kernel_ref(user),
            "title": KERNEL_TITLE,
            "code_file": RUNNER_NAME,
            "language": "python",
            "kernel_type": "script",
            "is_private": True,
            "enable_gpu": True,
            "enable_tpu": False,
            "enable_internet": False,
            "dataset_sources": [f"{user}/{DATASET_SLUG}"],
            "competition_sources": [COMPETITION],
            "kernel_sources": [],
            "model_sources": [],
        },
    )


def _refuse_credentials(folder: Path) -> None:
    from kaggle_digits.kaggle import api as kaggle_api

    found = kaggle_api.find_credential(folder)
    if found is not None:
        raise UserError(f"{found.relative_to(folder)} would carry a Kaggle credential into the bundle: not written")


# --- push / status / output -------------------------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    """What `push` uploaded."""

    dataset_ref: str
    dataset_state: str  # "created" or "versioned"
    kernel_ref: str
    url: str
    version: int | None


def push(
    out: Path,
    user: str,
    preset: str = DEFAULT_PRESET,
    models: str | None = None,
    augment: bool = False,
    poll: float = 10.0,
    log: Log = silent,
) -> Pushed:
    """Write the bundle, create or version the source dataset (waiting until Kaggle has processed it), then
    push the kernel."""
    from kaggle_digits.kaggle import api as kaggle_api

    dataset_dir, kernel_dir = write_bundle(out, user, preset, models, augment)
    ref = f"{user}/{DATASET_SLUG}"
    log(f"uploading the source dataset {ref} ...")
    done = kaggle_api.push_dataset(dataset_dir, ref, notes=f"kaggle-digits {__version__}", poll=poll, log=log)
    log(f"source dataset {ref} {done}")
    log(f"pushing the kernel {kernel_ref(user)} ...")
    url, version = kaggle_api.push_kernel(kernel_dir)
    return Pushed(ref, done, kernel_ref(user), url, version)


def status(
    ref: str, wait: bool = False, timeout: float = STATUS_TIMEOUT, poll: float = STATUS_POLL, log: Log = silent
) -> tuple[str, str | None]:
    """The kernel's status and failure message; with `wait`, looked at every `poll` seconds until it is done
    (each change, and every tenth look, goes to `log`). Still running after `timeout`: UserError."""
    from kaggle_digits.kaggle import api as kaggle_api

    start = time.monotonic()
    last = None
    polls = 0
    while True:
        current, failure = kaggle_api.kernel_status(ref)
        elapsed = time.monotonic() - start
        if wait and (current != last or polls % 10 == 0):
            log(f"{ref}: {current}  elapsed {format_seconds(elapsed)}")
        last, polls = current, polls + 1
        if not wait or current in KERNEL_DONE:
            return current, failure
        if elapsed + poll > timeout:
            raise UserError(f"kernel {ref} still {current} after {format_seconds(elapsed)}: run status again later")
        time.sleep(poll)


@dataclass(frozen=True)
class Output:
    """A kernel's output, downloaded, and its submission copied into the submissions folder."""

    folder: Path  # where the output files are
    files: int
    submission: Path  # the copy in the submissions folder
    rows: int
    cv_accuracy: float | None


def fetch_output(ref: str, out: Path, folders: paths.Paths, log: Log = silent) -> Output:
    """Download the kernel's output into `out/output`, validate its submission.csv and copy it to
    folders.submissions_dir (never over an existing file) with a row in history.csv."""
    from kaggle_digits.kaggle import api as kaggle_api

    target = Path(out) / "output"
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"downloading the output of kernel {ref} ...")
    staging = Path(tempfile.mkdtemp(prefix=".output-", dir=target.parent))
    try:
        files = kaggle_api.kernel_output(ref, staging, file_pattern=OUTPUT_PATTERN)
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    got = target / "submission.csv"
    if not got.is_file():
        raise UserError(
            f"kernel {ref} has no submission.csv in its output (is it complete? `python scripts/kernel.py status`)"
        )
    labels = submission.read_submission(got, n_test=submission.expected_rows(folders.test_csv))
    record_file = target / "kaggle-digits-run.json"
    record = read_json(record_file) if record_file.is_file() else {}
    original = str(record.get("submission", ""))
    cv = submission.cv_from_name(Path(original)) if original else None
    dest = folders.submissions_dir / submission.submission_name("kernel", cv)
    if dest.exists():
        raise UserError(f"{dest} already exists: submissions are never overwritten")
    with atomic_path(dest) as tmp:
        shutil.copyfile(got, tmp)
    # No local score: the kernel predicted Kaggle's own test.csv, whose rows the mirror's solution.csv
    # does not describe.
    submission.append_history(
        folders.history_csv,
        dest,
        cv_accuracy=cv,
        message=f"from kernel {ref}" + (f" ({original})" if original else ""),
    )
    return Output(target, len(files), dest, len(labels), cv)
