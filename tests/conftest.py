"""Shared fixtures: run the real CLI in-process, and data folders built from the bundled MNIST."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kaggle_digits import cli
from kaggle_digits.blend import submission
from kaggle_digits.data import dataset as data

REPO = Path(__file__).resolve().parents[1]

# Tests never look at a real Kaggle kernel layout or real Kaggle credentials.
os.environ["KAGGLE_DIGITS_KAGGLE_ROOT"] = "/nonexistent-kaggle-root"
os.environ.pop("KAGGLE_KERNEL_RUN_TYPE", None)
for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
    os.environ.pop(name, None)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _no_kaggle_credentials(tmp_path_factory, monkeypatch):
    """Point the Kaggle client at an empty config folder unless a test plants credentials."""
    empty = tmp_path_factory.mktemp("kaggle-config")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def run_cli(capsys):
    """Run `kaggle-digits ARGS...` in this process; return exit code, stdout and stderr."""

    def run(*args: str) -> Result:
        code = cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def mirror_dir(tmp_path_factory) -> Path:
    """The full offline mirror (42,000 / 28,000), built once per session. Treat as read-only."""
    out = tmp_path_factory.mktemp("mirror")
    data.write_mirror(REPO / "data" / "mnist", out)
    return out


def make_slice(out: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A small Kaggle-format data folder: a stratified-ish random slice of the mirror's images."""
    X, y = data.load_mnist(REPO / "data" / "mnist")
    train_idx, test_idx = data.mirror_split(len(X))
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(train_idx, n_train, replace=False))
    te = np.sort(rng.choice(test_idx, n_test, replace=False))
    out.mkdir(parents=True, exist_ok=True)
    data.write_pixel_csv(out / "train.csv", X[tr].reshape(n_train, -1), labels=y[tr])
    data.write_pixel_csv(out / "test.csv", X[te].reshape(n_test, -1))
    ids = np.arange(1, n_test + 1)
    data.write_submission_like(out / "sample_submission.csv", ids, np.zeros(n_test, dtype=int))
    data.write_submission_like(out / "solution.csv", ids, y[te])
    return out


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """1,500 train / 500 test rows in Kaggle format (with solution.csv). Treat as read-only."""
    return make_slice(tmp_path_factory.mktemp("small") / "data", 1500, 500)


@pytest.fixture
def small_data_copy(small_data, tmp_path) -> Path:
    """A private, writable copy of small_data."""
    dest = tmp_path / "data"
    shutil.copytree(small_data, dest)
    return dest


def plant_kaggle_json(username: str, key: str) -> Path:
    """Write kaggle.json (mode 600) into the test's KAGGLE_CONFIG_DIR."""
    path = Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    path.write_text(json.dumps({"username": username, "key": key}))
    path.chmod(0o600)
    return path


@pytest.fixture
def fake_kaggle(monkeypatch):
    """A fake Kaggle server on 127.0.0.1 that the real `kaggle` client talks to, with valid credentials
    for it in KAGGLE_CONFIG_DIR."""
    from kagglesdk import kaggle_env

    from tests.fake_kaggle import FakeKaggle

    server = FakeKaggle(username="kdtester", key="kd-secret-5e1f7c3a9b2d").start()
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD, server.url)
    plant_kaggle_json(server.username, server.key)
    yield server
    server.stop()


@dataclass
class TunedStudy:
    """Real tiny studies and an ensemble of their trials (see `tuned_mlp`)."""

    root: Path  # runs/, submissions/ and reports/ (for a report's own --reports-dir) under it
    data_dir: Path
    runs_dir: Path
    submissions_dir: Path
    best_trial: Path  # runs/mlp/trial-<n> with the best CV accuracy
    ensemble_json: Path  # the .json `ensemble` wrote beside its submission
    tune_out: str  # what `tune --model mlp` printed
    ensemble_out: str  # what `ensemble` printed

    def folders(self) -> list[str]:
        return ["--runs-dir", str(self.runs_dir), "--submissions-dir", str(self.submissions_dir)]


@pytest.fixture(scope="session")
def tuned_mlp(tmp_path_factory, small_data) -> TunedStudy:
    """Real `tune` runs on small_data, built once per session (treat as read-only): study mlp (3 trials,
    2 folds, 10 epochs) and study mlp-sub (1 trial on a 1,000-row subsample, so its OOF rows differ), then
    `ensemble --studies mlp --top 2 --method mean` (after 10 epochs the mean of two trials beats the better
    one on OOF, so the ensemble keeps two constituents to disagree)."""
    from threadpoolctl import threadpool_limits

    from kaggle_digits.search import runs

    root = tmp_path_factory.mktemp("tuned-mlp")
    folders = ["--data-dir", str(small_data), "--runs-dir", str(root / "runs")]
    folders += ["--submissions-dir", str(root / "submissions")]
    common = [*folders, "--model", "mlp", "--folds", "2", "--epochs", "10"]
    printed = io.StringIO()
    # Tiny fits: one BLAS thread is faster, and far faster when other work keeps both cores busy.
    with threadpool_limits(1), contextlib.redirect_stdout(printed):
        assert cli.main(["tune", *common, "--trials", "3"]) == 0
        tune_out = printed.getvalue()
        assert cli.main(["tune", *common, "--study", "mlp-sub", "--subsample", "1000", "--trials", "1"]) == 0
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["ensemble", *folders, "--studies", "mlp", "--top", "2", "--method", "mean"]) == 0
    best = runs.list_trials(root / "runs", ["mlp"])[0]
    (ensemble_json,) = (root / "submissions").glob("*.json")
    return TunedStudy(
        root, small_data, root / "runs", root / "submissions", best.path, ensemble_json, tune_out, printed.getvalue()
    )


class FailingFile:
    """A file opened for writing whose first write fails with `error` (default: ENOSPC without a file name,
    as on a full disk), after writing the first `written` share of what it was given."""

    def __init__(self, file, error: BaseException | None = None, written: float = 0.0) -> None:
        self._file, self._written = file, written
        self._error = error if error is not None else OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(self, data) -> int:
        self._file.write(data[: int(len(data) * self._written)])
        raise self._error

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


@pytest.fixture
def policies_given(monkeypatch) -> list:
    """The precision policy each search.processes.run call of the test is given (None: the children configure
    none), in order; the processes still run for real."""
    from kaggle_digits.search import processes

    given: list = []
    real_run = processes.run

    def run(tasks, jobs, on_report=None, policy=None, **kwargs):
        given.append(policy)
        return real_run(tasks, jobs, on_report, policy, **kwargs)

    monkeypatch.setattr(processes, "run", run)
    return given


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(folder): from now on, files opened for writing under `folder` fail on their first write
    the way they do on a full disk (OSError ENOSPC without a file name). No root or real mount needed."""

    def install(folder: Path) -> None:
        folder = Path(folder).resolve()
        real_open = builtins.open

        def open_(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            writing = any(flag in mode for flag in "wax+")
            if writing and isinstance(file, (str, os.PathLike)) and folder in Path(file).resolve().parents:
                return FailingFile(handle)
            return handle

        monkeypatch.setattr(builtins, "open", open_)

    return install


def assert_one_line_error(result, *words: str) -> None:
    """A command's user error: exit code 2, one `error: ` line naming each of `words`, no traceback."""
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    for word in words:
        assert word in result.err, result.err


N_WRONG = 7  # labels changed from the truth in `folders`' submission: accuracy (500 - 7) / 500 = 0.986


@pytest.fixture
def folders(small_data_copy, tmp_path):
    """For the submit tests: (data dir with 500 test rows and solution.csv, submissions dir, a valid submission file)."""
    truth = submission.read_submission(small_data_copy / "solution.csv")
    labels = truth.copy()
    labels[:N_WRONG] = (labels[:N_WRONG] + 1) % 10
    subs = tmp_path / "submissions"
    subs.mkdir()
    path = submission.write_submission(subs / "20260101-120000-blend-cv0.98765.csv", labels)
    return small_data_copy, subs, path


def common(folders) -> list:
    """The data and submissions options of `folders`."""
    d, subs, _ = folders
    return ["--data-dir", d, "--submissions-dir", subs]


def user_image(digit: np.ndarray, fmt: str) -> bytes:
    """A 28x28 MNIST digit as a user might photograph it: scaled x3, shifted off-centre on a padded page,
    dark ink on white paper, saved as PNG or JPEG."""
    big = Image.fromarray(digit).resize((84, 84), Image.Resampling.BICUBIC)
    page = Image.new("L", (260, 200), 0)
    page.paste(big, (151, 23))  # far right and high: preprocessing must find and centre it
    page = Image.eval(page, lambda v: 255 - v)
    out = io.BytesIO()
    if fmt == "JPEG":
        page.convert("RGB").save(out, "JPEG", quality=85)
    else:
        page.save(out, "PNG")
    return out.getvalue()


def correlation_up_to_a_pixel(a: np.ndarray, b: np.ndarray) -> float:
    """Best pixel correlation over shifts of at most one pixel (MNIST rounded its centring shifts too)."""
    return max(
        np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel().astype(float), b.ravel().astype(float))[0, 1]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
