"""`kernel`: parse the action and its options, call kaggle_digits.kaggle.kernel, print what it did."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaggle_digits.cli.options import check_wait_options
from kaggle_digits.cli.output import say
from kaggle_digits.errors import UserError
from kaggle_digits.kaggle import kernel
from kaggle_digits.kaggle import upload as kaggle_upload
from kaggle_digits.kaggle.kernel import (
    ACCELERATORS,
    DATASET_SLUG,
    DEFAULT_ACCELERATOR,
    DEFAULT_PRESET,
    KERNEL_SLUG,
    PRESETS,
    RUNNER_NAME,
    STATUS_POLL,
    STATUS_TIMEOUT,
    kernel_ref,
    normalize_models,
    resolve_user,
)

HELP = "run the pipeline as a Kaggle kernel: bundle, push, status [--wait], logs [--follow], output [--submit]"


def _accelerator(value: str) -> str:
    """--accelerator's value, refused in one line (argparse's, exit 2) when it is not gpu or none."""
    try:
        return kernel.check_accelerator(value)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--accelerator {value}: ")) from None


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
        sub.add_argument(
            "--accelerator",
            type=_accelerator,
            default=DEFAULT_ACCELERATOR,
            metavar="{" + ",".join(ACCELERATORS) + "}",
            help="gpu: Kaggle's default GPU machine, two T4s, one fold process per GPU (default); none: CPU",
        )
    push.add_argument("--poll", type=float, default=10.0, help=argparse.SUPPRESS)  # dataset processing checks
    status = actions.add_parser("status", help="the kernel's status: queued, running, complete, error")
    status.add_argument("--wait", action="store_true", help="poll until the kernel is done, showing its log")
    status.add_argument("--timeout", type=float, default=STATUS_TIMEOUT, help="seconds --wait waits (default 12 h)")
    status.add_argument("--poll", type=float, default=STATUS_POLL, help="seconds between looks (default 30)")
    logs = actions.add_parser("logs", help="the running (or last) kernel session's log")
    logs.add_argument("--follow", action="store_true", help="show each line as the session writes it, until it ends")
    output = actions.add_parser("output", help="download the output; copy submission.csv into submissions/")
    output.add_argument("--out", type=Path, default=Path("build/kernel"), help="bundle folder (default build/kernel)")
    output.add_argument(
        "--submit", action="store_true", help="then upload the submission to Kaggle, as `submit` does (needs -m)"
    )
    output.add_argument("-m", "--message", help="the submission's description on Kaggle (with --submit)")
    for sub in (status, logs, output):
        sub.add_argument("--user", help="Kaggle user name (default: from the credentials)")
    for sub in (bundle, push, status, logs, output):
        _folder_options(sub)


def _folder_options(parser: argparse.ArgumentParser) -> None:
    """Accept the common folder options after the action too (`kernel output --data-dir D`).

    SUPPRESS keeps a value given before the action from being reset by the action's parser.
    """
    group = parser.add_argument_group("folders")
    for option in ("--data-dir", "--runs-dir", "--submissions-dir", "--reports-dir"):
        group.add_argument(option, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    actions = {"bundle": _bundle, "push": _push, "status": _status, "logs": _logs, "output": _output}
    return actions[args.action](args)


def _describe(out: Path, user: str, preset: str, models: str | None, augment: bool, accelerator: str) -> None:
    files = sorted(p for p in (out / "dataset").rglob("*") if p.is_file())
    shape = ACCELERATORS[accelerator]
    machine = f"GPU {shape} (two T4s)" if shape else "CPU"
    print(f"source dataset {user}/{DATASET_SLUG}: {out / 'dataset'} ({len(files)} files)")
    print(f"kernel {kernel_ref(user)}: {out / 'kernel'} ({RUNNER_NAME}, {machine}, no internet, private)")
    models = normalize_models(models)
    extra = (f" --models {models}" if models else "") + (" --augment" if augment else "")
    print(f"the kernel runs: kaggle-digits pipeline --preset {preset}{extra}")


def _bundle(args: argparse.Namespace) -> int:
    user = resolve_user(args.user)
    kernel.write_bundle(args.out, user, args.preset, args.models, args.augment, args.accelerator)
    _describe(args.out, user, args.preset, args.models, args.augment, args.accelerator)
    print(f"wrote {args.out}; upload it with `python scripts/kernel.py push`")
    return 0


def _push(args: argparse.Namespace) -> int:
    user = resolve_user(args.user)
    pushed = kernel.push(
        args.out, user, args.preset, args.models, args.augment, poll=args.poll, log=say, accelerator=args.accelerator
    )
    _describe(args.out, user, args.preset, args.models, args.augment, args.accelerator)
    print(f"kernel {pushed.kernel_ref} version {pushed.version or '?'} pushed: {pushed.url}")
    print(
        "follow it with `python scripts/kernel.py status --wait` (or `logs --follow`), then `python scripts/kernel.py output`"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    check_wait_options(args, "the kernel's status")
    ref = kernel_ref(resolve_user(args.user))
    status, failure = kernel.status(ref, wait=args.wait, timeout=args.timeout, poll=args.poll, log=say)
    if not args.wait:
        print(f"{ref}: {status}")
    if status == "error":
        message = f"kernel {ref} failed" + (f": {failure}" if failure else "")
        if args.wait:
            raise UserError(message + " (its log: `python scripts/kernel.py logs`)")
        print(message)
    elif status == "complete":
        print("fetch the result with `python scripts/kernel.py output`")
    return 0


def _logs(args: argparse.Namespace) -> int:
    ref = kernel_ref(resolve_user(args.user))
    for line in kernel.follow_log(ref, follow=args.follow):
        print(line, flush=True)
    return 0


def _output(args: argparse.Namespace) -> int:
    if not args.submit and args.message is not None:
        raise UserError("-m is the submission's description for --submit: add --submit, or leave -m out")
    if args.submit and not (args.message or "").strip():
        raise UserError('--submit needs -m "message": it is the submission\'s description on Kaggle')
    ref = kernel_ref(resolve_user(args.user))
    got = kernel.fetch_output(ref, args.out, args.paths, log=say)
    print(f"{got.files} files in {got.folder}")
    cv = f"; CV {got.cv_accuracy:.5f}" if got.cv_accuracy is not None else ""
    print(f"wrote {got.submission} ({got.rows:,} rows, validated){cv}")
    print(f"recorded in {args.paths.history_csv}")
    if args.submit:
        # The kernel predicted Kaggle's own test.csv, whose row order the mirror's solution.csv does not follow.
        kaggle_upload.upload(args.paths, got.submission, args.message, score_locally=False, log=say)
        return 0
    print(f'upload it with `python scripts/kernel.py output --submit -m "kernel {KERNEL_SLUG}"` or')
    print(f'`python scripts/submit.py {got.submission} -m "kernel {KERNEL_SLUG}" --wait`')
    return 0
