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

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

from . import COMPETITION, __version__, paths, submission
from . import models as families
from .cli import format_seconds
from .errors import UserError
from .io import atomic_path, read_json, write_json

HELP = "run the pipeline as a Kaggle kernel: bundle, push, status [--wait], output"
DATASET_SLUG = "kaggle-digits-src"
DATASET_TITLE = "kaggle-digits source"
KERNEL_SLUG = "kaggle-digits"
KERNEL_TITLE = "kaggle-digits"  # Kaggle derives the slug from the title: keep them equal
RUNNER_NAME = "run_kaggle_digits.py"
RUNNER_SOURCE = paths.PACKAGE_DIR / "kernel_runner.py"
PRESETS = ("quick", "standard", "full")
DEFAULT_PRESET = "standard"
# Only source files are bundled: no data, runs, caches or anything else that may sit in the package folder.
BUNDLED_SUFFIXES = {".py", ".html", ".css", ".js"}
OUTPUT_PATTERN = r"^(submission\.csv|kaggle-digits-run\.json|reports/.+)$"
KERNEL_DONE = {"complete", "error", "cancel_acknowledged"}
STATUS_TIMEOUT = 12 * 3600.0  # Kaggle stops a GPU session after 12 hours
STATUS_POLL = 30.0
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    bundle = actions.add_parser("bundle", help="write the source dataset and the kernel folders")
    push = actions.add_parser("push", help="bundle, create or version the source dataset, push the kernel")
    for sub in (bundle, push):
        sub.add_argument("--out", type=Path, default=Path("build/kernel"), help="bundle folder (default build/kernel)")
        sub.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET, help=f"default {DEFAULT_PRESET}")
        sub.add_argument("--models", help="comma-separated families for the pipeline, e.g. cnn or mlp,dense,cnn")
        sub.add_argument("--augment", action="store_true", help="train with augmentation")
        sub.add_argument("--user", help="Kaggle user name (default: from the credentials)")
    push.add_argument("--poll", type=float, default=10.0, help=argparse.SUPPRESS)  # dataset processing checks
    status = actions.add_parser("status", help="the kernel's status: queued, running, complete, error")
    status.add_argument("--wait", action="store_true", help="poll until the kernel is done")
    status.add_argument("--timeout", type=float, default=STATUS_TIMEOUT, help="seconds --wait waits (default 12 h)")
    status.add_argument("--poll", type=float, default=STATUS_POLL, help="seconds between looks (default 30)")
    output = actions.add_parser("output", help="download the output; copy submission.csv into submissions/")
    output.add_argument("--out", type=Path, default=Path("build/kernel"), help="bundle folder (default build/kernel)")
    for sub in (status, output):
        sub.add_argument("--user", help="Kaggle user name (default: from the credentials)")
    for sub in (bundle, push, status, output):
        _folder_options(sub)


def _folder_options(parser: argparse.ArgumentParser) -> None:
    """Accept the common folder options after the action too (`kernel output --data-dir D`).

    SUPPRESS keeps a value given before the action from being reset by the action's parser.
    """
    group = parser.add_argument_group("folders")
    for option in ("--data-dir", "--runs-dir", "--submissions-dir", "--reports-dir"):
        group.add_argument(option, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return {"bundle": _bundle, "push": _push, "status": _status, "output": _output}[args.action](args)


def resolve_user(user: str | None) -> str:
    """The Kaggle user name from --user, else from the credentials; a clear error when neither exists."""
    from . import kaggle_api

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
    return ",".join(families.parse_families(models))


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
    from . import kaggle_api

    found = kaggle_api.find_credential(folder)
    if found is not None:
        raise UserError(f"{found.relative_to(folder)} would carry a Kaggle credential into the bundle: not written")


def _describe(out: Path, user: str, preset: str, models: str | None, augment: bool) -> None:
    files = sorted(p for p in (out / "dataset").rglob("*") if p.is_file())
    print(f"source dataset {user}/{DATASET_SLUG}: {out / 'dataset'} ({len(files)} files)")
    print(f"kernel {kernel_ref(user)}: {out / 'kernel'} ({RUNNER_NAME}, GPU, no internet, private)")
    models = normalize_models(models)
    extra = (f" --models {models}" if models else "") + (" --augment" if augment else "")
    print(f"the kernel runs: kaggle-digits pipeline --preset {preset}{extra}")


def _bundle(args: argparse.Namespace) -> int:
    user = resolve_user(args.user)
    write_bundle(args.out, user, args.preset, args.models, args.augment)
    _describe(args.out, user, args.preset, args.models, args.augment)
    print(f"wrote {args.out}; upload it with `python scripts/kernel.py push`")
    return 0


# --- push / status / output -------------------------------------------------------------------


def _push(args: argparse.Namespace) -> int:
    from . import kaggle_api

    user = resolve_user(args.user)
    dataset_dir, kernel_dir = write_bundle(args.out, user, args.preset, args.models, args.augment)
    _describe(args.out, user, args.preset, args.models, args.augment)
    ref = f"{user}/{DATASET_SLUG}"
    print(f"uploading the source dataset {ref} ...", flush=True)
    done = kaggle_api.push_dataset(dataset_dir, ref, notes=f"kaggle-digits {__version__}", poll=args.poll)
    print(f"source dataset {ref} {done}", flush=True)
    print(f"pushing the kernel {kernel_ref(user)} ...", flush=True)
    url, version = kaggle_api.push_kernel(kernel_dir)
    print(f"kernel {kernel_ref(user)} version {version or '?'} pushed: {url}")
    print("follow it with `python scripts/kernel.py status --wait`, then `python scripts/kernel.py output`")
    return 0


def _status(args: argparse.Namespace) -> int:
    from . import kaggle_api

    ref = kernel_ref(resolve_user(args.user))
    start = time.monotonic()
    last = None
    polls = 0
    while True:
        status, failure = kaggle_api.kernel_status(ref)
        elapsed = time.monotonic() - start
        if status != last or polls % 10 == 0:
            print(f"{ref}: {status}" + (f"  elapsed {format_seconds(elapsed)}" if args.wait else ""), flush=True)
        last, polls = status, polls + 1
        if not args.wait or status in KERNEL_DONE:
            break
        if elapsed + args.poll > args.timeout:
            raise UserError(f"kernel {ref} still {status} after {format_seconds(elapsed)}: run status again later")
        time.sleep(args.poll)
    if status == "error":
        message = f"kernel {ref} failed" + (f": {failure}" if failure else "")
        if args.wait:
            raise UserError(message + " (its log comes with `python scripts/kernel.py output`)")
        print(message)
    elif status == "complete":
        print("fetch the result with `python scripts/kernel.py output`")
    return 0


def _output(args: argparse.Namespace) -> int:
    from . import kaggle_api
    from .submit import cv_from_name, expected_rows

    ref = kernel_ref(resolve_user(args.user))
    target = Path(args.out) / "output"
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading the output of kernel {ref} ...", flush=True)
    staging = Path(tempfile.mkdtemp(prefix=".output-", dir=target.parent))
    try:
        files = kaggle_api.kernel_output(ref, staging, file_pattern=OUTPUT_PATTERN)
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{len(files)} files in {target}")
    got = target / "submission.csv"
    if not got.is_file():
        raise UserError(
            f"kernel {ref} has no submission.csv in its output (is it complete? `python scripts/kernel.py status`)"
        )
    n_test = expected_rows(args.paths.test_csv)
    labels = submission.read_submission(got, n_test=n_test)
    record_file = target / "kaggle-digits-run.json"
    record = read_json(record_file) if record_file.is_file() else {}
    original = str(record.get("submission", ""))
    cv = cv_from_name(Path(original)) if original else None
    dest = args.paths.submissions_dir / submission.submission_name("kernel", cv)
    if dest.exists():
        raise UserError(f"{dest} already exists: submissions are never overwritten")
    with atomic_path(dest) as tmp:
        shutil.copyfile(got, tmp)
    # No local score: the kernel predicted Kaggle's own test.csv, whose rows the mirror's solution.csv
    # does not describe.
    submission.append_history(
        args.paths.history_csv,
        dest,
        cv_accuracy=cv,
        message=f"from kernel {ref}" + (f" ({original})" if original else ""),
    )
    print(f"wrote {dest} ({len(labels):,} rows, validated)" + (f"; CV {cv:.5f}" if cv is not None else ""))
    print(f"recorded in {args.paths.history_csv}")
    print(f'upload it with `python scripts/submit.py {dest} -m "kernel {KERNEL_SLUG}" --wait`')
    return 0
