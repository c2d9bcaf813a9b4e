"""Runs the kaggle-digits pipeline inside a Kaggle kernel.

`kaggle-digits kernel bundle` writes this file, with SETTINGS filled in, as the kernel's code file.
On Kaggle the source dataset is mounted under /kaggle/input (the package folder, unpacked by Kaggle, or
still a zip) and the competition's files under /kaggle/input/digit-recognizer (read-only). The pipeline
reads the CSVs where they are mounted (`--data-dir`: copies would become the kernel's output) and writes
to /kaggle/working; the chosen submission is copied to /kaggle/working/submission.csv and the report on
the run (plots and index.html) is written to /kaggle/working/reports/.
Extra command-line arguments go to the pipeline unchanged. KAGGLE_DIGITS_KAGGLE_ROOT moves /kaggle.

This file imports nothing from kaggle_digits at module level: it has to find the package first.
"""

import importlib.util
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

SETTINGS = {"preset": "quick", "models": None, "augment": False, "source_dataset": "kaggle-digits-src"}

COMPETITION_DIR = "digit-recognizer"
# Third-party modules the pipeline needs; Kaggle's Python image has them, and the kernel has no internet.
REQUIRED_MODULES = ("numpy", "pandas", "sklearn", "tensorflow", "keras", "optuna")
SEARCH_DEPTH = 4  # how deep under /kaggle/input the mounted source and data may sit


def _walk(top: Path, depth: int = SEARCH_DEPTH):
    """Paths under `top`, breadth first, at most `depth` levels down, in a stable order."""
    level = [top]
    for _ in range(depth):
        children = []
        for folder in level:
            try:
                children.extend(sorted(folder.iterdir()))
            except OSError:
                continue
        yield from children
        level = [child for child in children if child.is_dir()]


def find_source(input_dir: Path, working: Path) -> Path:
    """The folder to put on sys.path so that `import kaggle_digits` finds the bundled package."""
    candidates = [p for p in _walk(input_dir) if p.name == "kaggle_digits" and (p / "__init__.py").is_file()]
    # Prefer the copy inside the source dataset when several are mounted.
    candidates.sort(key=lambda p: SETTINGS["source_dataset"] not in p.parts)
    if candidates:
        return candidates[0].parent
    for archive in _walk(input_dir):
        if archive.name == "kaggle_digits.zip" and zipfile.is_zipfile(archive):
            # Kaggle left the uploaded folder zipped: its members are the package's files.
            target = working / ".kaggle-digits-src" / "kaggle_digits"
            shutil.rmtree(target, ignore_errors=True)
            with zipfile.ZipFile(archive) as z:
                z.extractall(target)
            return target.parent
    raise SystemExit(
        f"error: the kaggle_digits package was not found under {input_dir}: "
        f"add the dataset <user>/{SETTINGS['source_dataset']} to the kernel's inputs"
    )


def find_competition_files(input_dir: Path) -> Path:
    """The mounted folder holding the competition's train.csv and test.csv (input/digit-recognizer first).

    The pipeline reads them there: nothing is copied into /kaggle/working, whose files are the kernel's output.
    """
    usual = input_dir / COMPETITION_DIR
    if (usual / "train.csv").is_file() and (usual / "test.csv").is_file():
        return usual
    for train in _walk(input_dir):
        if train.name == "train.csv" and (train.parent / "test.csv").is_file():
            return train.parent
    raise SystemExit(f"error: the competition's train.csv/test.csv were not found under {input_dir}")


def main(argv: list) -> int:
    root = Path(os.environ.get("KAGGLE_DIGITS_KAGGLE_ROOT", "/kaggle"))
    input_dir, working = root / "input", root / "working"
    working.mkdir(parents=True, exist_ok=True)
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: this kernel's Python lacks {', '.join(missing)} (and has no internet)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(find_source(input_dir, working)))

    from kaggle_digits.errors import UserError

    try:
        return _run(argv, input_dir, working)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(argv: list, input_dir: Path, working: Path) -> int:
    import kaggle_digits
    from kaggle_digits import cli, io, pipeline, tflog
    from kaggle_digits.blend import submission
    from kaggle_digits.cli import pipeline as pipeline_face
    from kaggle_digits.cli.output import say
    from kaggle_digits.data import paths
    from kaggle_digits.errors import UserError
    from kaggle_digits.models import hardware

    print(f"kaggle-digits {kaggle_digits.__version__} from {Path(kaggle_digits.__file__).parent}", flush=True)
    gpus = hardware.gpu_devices()
    # The pipeline fits one fold process per GPU (hardware.default_fold_jobs), each seeing its own device.
    print(f"GPUs: {', '.join(gpus)}" if gpus else "no GPU: the pipeline trains on the CPU", flush=True)
    data_dir = find_competition_files(input_dir)
    command = ["pipeline", "--preset", str(SETTINGS["preset"])]
    if SETTINGS["models"]:
        command += ["--models", str(SETTINGS["models"])]
    if SETTINGS["augment"]:
        command.append("--augment")
    command += ["--data-dir", str(data_dir), *argv]
    print("running: kaggle-digits " + " ".join(command), flush=True)
    try:
        args = cli.build_parser().parse_args(command)
    except cli.UsageError as exc:
        raise UserError(str(exc)) from None
    tflog.set_verbose(args.verbose or args.verbose_first)
    folders = paths.resolve(
        data_dir=args.data_dir,
        runs_dir=args.runs_dir,
        submissions_dir=args.submissions_dir,
        reports_dir=args.reports_dir,
    )
    start = time.monotonic()
    try:  # the library's run, printed as the pipeline command prints it
        result = pipeline.run(pipeline_face.options_from(args), folders, log=say, events=pipeline_face.Printer(folders))
    except pipeline.Interrupted:
        return 130
    except OSError as exc:  # a folder that cannot be written: one line, as the command says it
        message = cli.os_error_message(exc)
        if message is None:
            raise
        raise UserError(message) from None
    pipeline_face.print_summary(result, folders)
    chosen = result.submission
    submission.read_submission(chosen, n_test=submission.expected_rows(folders.test_csv))
    with io.atomic_path(working / "submission.csv") as tmp:
        shutil.copyfile(chosen, tmp)
    # The plots of the run, in working/reports/ (what `kernel.py output` brings back with the submission).
    # The submission is already safe: a failing report is a warning, not a failed kernel.
    reports = working / "reports"
    report = ["report", "--submission", str(chosen), "--out", str(reports), "--data-dir", str(data_dir)]
    print("running: kaggle-digits " + " ".join(report), flush=True)
    try:
        if cli.main(report) != 0:
            print("warning: the report failed; the submission is written", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - any plotting failure must not lose the kernel's result
        print(f"warning: the report failed ({type(exc).__name__}: {exc}); the submission is written", file=sys.stderr)
    record = {
        "submission": chosen.name,
        "version": kaggle_digits.__version__,
        "settings": SETTINGS,
        "pipeline_args": argv,
        "seconds": round(time.monotonic() - start, 1),
    }
    io.write_json(working / "kaggle-digits-run.json", record)
    print(f"wrote {working / 'submission.csv'} (from {chosen.name}) in {record['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
