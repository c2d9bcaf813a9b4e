"""`kernel`: run the pipeline on Kaggle's GPUs (or CPU) as a kernel.

    python scripts/kernel.py bundle [--out build/kernel] [--preset P] [--models ...] [--augment] [--user U]
                                    [--accelerator gpu|none]
    python scripts/kernel.py push   [same options]       # quota check, bundle, source dataset, push
    python scripts/kernel.py status [--wait]             # --wait shows the kernel's log as it comes
    python scripts/kernel.py logs [--follow]
    python scripts/kernel.py output [--submit -m MSG]    # fetch the output; submission.csv -> submissions/

The bundle is two folders: `dataset/` (the kaggle_digits package + dataset-metadata.json, uploaded as
the dataset `<user>/kaggle-digits-src`) and `kernel/` (the runner + kernel-metadata.json, the kernel
`<user>/kaggle-digits`), beside a record of what was written (kaggle_digits.written): a later bundle
replaces those two folders only when they are the toolkit's, and leaves anything else in the folder.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kaggle_digits import COMPETITION, __version__, written
from kaggle_digits import models as models_registry
from kaggle_digits.blend import submission
from kaggle_digits.data import paths
from kaggle_digits.errors import UserError
from kaggle_digits.io import atomic_path, read_json, write_json
from kaggle_digits.kaggle import api as kaggle_api
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
BUNDLED_SUFFIXES = {".py", ".html", ".css", ".js", ".json"}
OUTPUT_PATTERN = r"^(submission\.csv|kaggle-digits-run\.json|reports/.+)$"
KERNEL_DONE = {"complete", "error", "cancel_acknowledged"}
# --accelerator: the machine shape asked for in kernel-metadata.json. `gpu` is Kaggle's default GPU
# machine, two T4s; `none` runs on CPU. The toolkit trains with TensorFlow on CPU or GPU only.
ACCELERATORS: dict[str, str | None] = {"gpu": "NvidiaTeslaT4", "none": None}
DEFAULT_ACCELERATOR = "gpu"
BUNDLE_FOLDERS = ("dataset", "kernel")
STATUS_TIMEOUT = 12 * 3600.0  # Kaggle stops a GPU session after 12 hours
STATUS_POLL = 30.0
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")


def resolve_user(user: str | None) -> str:
    """The Kaggle user name from --user, else from the credentials; a clear error when neither exists."""
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


def check_accelerator(name: str) -> str:
    """`name` as --accelerator takes it (gpu or none); a TPU, a retired GPU (the P100) or anything else is
    a UserError saying why, before anything is sent."""
    chosen = name.strip().lower()
    if chosen in ACCELERATORS:
        return chosen
    if "tpu" in chosen:
        why = "the toolkit trains with TensorFlow on CPU or GPU only, not on a TPU"
    elif "p100" in chosen:
        why = "Kaggle retired the P100 (its GPU machine is now two T4s)"
    else:
        why = "not an accelerator the toolkit asks Kaggle for"
    raise UserError(f"--accelerator {name}: {why}; choose gpu (Kaggle's two T4s) or none (CPU)")


def planned_seconds(preset: str, models: str | None, augment: bool) -> float | None:
    """How long the kernel's pipeline is planned to run (its preset's budget), or None when the run is not
    a budget plan (families other than the cnn alone: each family's tune preset, of no set length)."""
    from kaggle_digits import pipeline

    return pipeline.preset_budget(pipeline.PipelineOptions(preset=preset, models=models, augment=augment))


# --- bundle -----------------------------------------------------------------------------------


def write_bundle(
    out: Path,
    user: str,
    preset: str = DEFAULT_PRESET,
    models: str | None = None,
    augment: bool = False,
    accelerator: str = DEFAULT_ACCELERATOR,
) -> tuple[Path, Path]:
    """Write `out/dataset` and `out/kernel`; return both folders.

    An existing `out` that is not empty must hold a bundle the toolkit wrote (its record, unchanged, and
    nothing else in those two folders): only those two folders are replaced, anything beside them stays.
    Anything else is a UserError and nothing is touched.
    """
    out = Path(out)
    accelerator = check_accelerator(accelerator)
    if preset not in PRESETS:
        raise UserError(f"--preset {preset}: choose one of {', '.join(PRESETS)}")
    models = normalize_models(models)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder: choose another --out")
    if out.exists() and any(out.iterdir()):
        _check_own_bundle(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out))
    done = False
    try:
        _write_dataset(staging / "dataset", user)
        _write_kernel(staging / "kernel", user, preset, models, augment, accelerator)
        _refuse_credentials(staging)
        old = staging / "replaced"
        old.mkdir()
        for name in BUNDLE_FOLDERS:
            if (out / name).exists():
                (out / name).replace(old / name)
            (staging / name).replace(out / name)
        written.record(out, _recorded_files(out))
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done:
            shutil.rmtree(out, ignore_errors=True)  # the folder this call made, holding nothing else
    return out / "dataset", out / "kernel"


def _recorded_files(out: Path) -> list[Path]:
    """The bundle's files the record names (their names are unique in the bundle)."""
    return [
        out / "dataset" / "dataset-metadata.json",
        out / "kernel" / "kernel-metadata.json",
        out / "kernel" / RUNNER_NAME,
    ]


def _check_own_bundle(out: Path) -> None:
    """A UserError unless `out`'s dataset/ and kernel/ are a bundle the toolkit wrote, unchanged: the
    recorded files as written, and nothing else there but the package's source files."""
    recorded = _recorded_files(out)
    if not all(path.is_file() for path in recorded):
        raise UserError(f"{out} exists and is not a kernel bundle: choose another --out")
    changed = written.foreign(out, recorded)
    if changed:
        raise UserError(
            f"{changed[0]} was not written by kaggle-digits (or was changed since): the bundle in {out} is not "
            "replaced; choose another --out or move it away"
        )
    package = out / "dataset" / "kaggle_digits"
    for folder in (out / name for name in BUNDLE_FOLDERS):
        for path in sorted(folder.rglob("*")):
            if path in recorded or path == package or (path.is_dir() and package in path.parents):
                continue
            ours = package in path.parents and path.is_file() and path.suffix in BUNDLED_SUFFIXES
            if not ours or path.is_symlink():
                raise UserError(
                    f"{path} was not written by kaggle-digits: the bundle in {out} is not replaced; "
                    "choose another --out or move the file away"
                )


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


def _write_kernel(folder: Path, user: str, preset: str, models: str | None, augment: bool, accelerator: str) -> None:
    folder.mkdir(parents=True)
    settings = {"preset": preset, "models": models, "augment": augment, "source_dataset": DATASET_SLUG}
    runner = RUNNER_SOURCE.read_text(encoding="utf-8")
    line = re.compile(r"^SETTINGS = \{.*\}$", re.MULTILINE)
    if len(line.findall(runner)) != 1:
        raise RuntimeError(f"{RUNNER_SOURCE} must hold exactly one `SETTINGS = {{...}}` line")
    (folder / RUNNER_NAME).write_text(line.sub(lambda _: f"SETTINGS = {settings!r}", runner), encoding="utf-8")
    shape = ACCELERATORS[accelerator]
    metadata = {
        "id": kernel_ref(user),
        "title": KERNEL_TITLE,
        "code_file": RUNNER_NAME,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": shape is not None,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [f"{user}/{DATASET_SLUG}"],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }
    if shape is not None:
        metadata["machine_shape"] = shape
    write_json(folder / "kernel-metadata.json", metadata)


def _refuse_credentials(folder: Path) -> None:
    found = kaggle_api.find_credential(folder)
    if found is not None:
        raise UserError(f"{found.relative_to(folder)} would carry a Kaggle credential into the bundle: not written")


# --- push / status / output -------------------------------------------------------------------


def quota_line(quota: kaggle_api.GpuQuota | str, now: datetime | None = None) -> str:
    """One line for the weekly GPU quota, or for why it is not known (a str)."""
    if isinstance(quota, str):
        return f"GPU quota left this week: unknown ({quota})"
    line = f"GPU quota left this week: {format_seconds(quota.left)} of {format_seconds(quota.allowed)}"
    if quota.reserved:
        line += f" ({format_seconds(quota.reserved)} held by sessions running now)"
    if quota.refresh is not None:
        now = now or datetime.now(timezone.utc)
        wait = max(0.0, (quota.refresh - now).total_seconds())
        line += f"; refreshes {quota.refresh:%Y-%m-%d %H:%M} UTC, in {format_seconds(wait)}"
    return line


def read_quota() -> kaggle_api.GpuQuota | str:
    """The weekly GPU quota, or why it cannot be read (a str)."""
    try:
        return kaggle_api.gpu_quota()
    except kaggle_api.QuotaUnavailable as exc:
        return str(exc)


def check_quota(preset: str, models: str | None, augment: bool, log: Log = silent) -> None:
    """Log the weekly GPU hours left; a UserError when the kernel's plan does not fit in them (or none are
    left). A quota that cannot be read is logged as unknown, and the push goes on."""
    quota = read_quota()
    log(quota_line(quota))
    if isinstance(quota, str):
        return
    planned = planned_seconds(preset, models, augment)
    if quota.left > 0 and (planned is None or planned <= quota.left):
        return
    needs = f"the kernel's plan (--preset {preset}) runs {format_seconds(planned)}" if planned else "a GPU kernel"
    refresh = f" (it refreshes {quota.refresh:%Y-%m-%d %H:%M} UTC)" if quota.refresh is not None else ""
    raise UserError(
        f"{needs} but {format_seconds(quota.left)} of GPU time is left this week{refresh}: nothing was uploaded; "
        "choose a shorter --preset or --accelerator none"
    )


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
    accelerator: str = DEFAULT_ACCELERATOR,
) -> Pushed:
    """Check the GPU quota (for `gpu`), write the bundle, create or version the source dataset (waiting until
    Kaggle has processed it), then push the kernel."""
    accelerator = check_accelerator(accelerator)
    if ACCELERATORS[accelerator] is not None:
        check_quota(preset, normalize_models(models), augment, log=log)
    dataset_dir, kernel_dir = write_bundle(out, user, preset, models, augment, accelerator)
    ref = f"{user}/{DATASET_SLUG}"
    log(f"uploading the source dataset {ref} ...")
    done = kaggle_api.push_dataset(dataset_dir, ref, notes=f"kaggle-digits {__version__}", poll=poll, log=log)
    log(f"source dataset {ref} {done}")
    log(f"pushing the kernel {kernel_ref(user)} ...")
    url, version = kaggle_api.push_kernel(kernel_dir)
    return Pushed(ref, done, kernel_ref(user), url, version)


class _LogReader:
    """The lines of a running kernel's log not shown yet, for `status --wait`: its live stream followed until
    the session ends (Kaggle replays a stream from the start: the lines already shown are skipped). A log
    that cannot be read is said once, and not asked for again."""

    def __init__(self, ref: str, log: Log) -> None:
        self.ref, self.log, self.shown, self.readable = ref, log, 0, True

    def show_new(self) -> None:
        if not self.readable:
            return
        try:
            for index, line in enumerate(kaggle_api.follow_kernel_log(self.ref)):
                if index >= self.shown:
                    self.log(line)
                    self.shown = index + 1
        except UserError as exc:
            self.readable = False
            self.log(f"the kernel's log is not shown: {exc}")


def status(
    ref: str,
    wait: bool = False,
    timeout: float = STATUS_TIMEOUT,
    poll: float = STATUS_POLL,
    log: Log = silent,
    show_log: bool = True,
) -> tuple[str, str | None]:
    """The kernel's status and failure message; with `wait`, looked at every `poll` seconds until it is done:
    each change, and every tenth look, goes to `log`, and (with `show_log`) while the session runs, its log
    lines as they come. Still running after `timeout`: UserError."""
    if not wait:
        return kaggle_api.kernel_status(ref)
    reader = _LogReader(ref, log) if show_log else None
    last: str | None = None
    looks = 0
    current = "unknown"

    def look(elapsed: float) -> tuple[str, str] | None:
        nonlocal last, looks, current
        current, failure = kaggle_api.kernel_status(ref)
        if current != last or looks % 10 == 0:
            log(f"{ref}: {current}  elapsed {format_seconds(elapsed)}")
        last, looks = current, looks + 1
        if current in KERNEL_DONE:
            return current, failure
        if reader is not None and current == "running":
            reader.show_new()
        return None

    def timed_out(elapsed: float) -> str:
        return f"kernel {ref} still {current} after {format_seconds(elapsed)}: run status again later"

    return kaggle_api.wait_until(look, timeout, poll, timed_out)


def follow_log(ref: str, follow: bool = False) -> Iterator[str]:
    """The kernel's log lines: those logged so far, or (`follow`) each as the running session writes it,
    until the session ends."""
    if follow:
        yield from kaggle_api.follow_kernel_log(ref)
    else:
        yield from kaggle_api.kernel_log(ref)


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
