"""TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing) stay off the terminal unless asked for."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from kaggle_digits import tflog
from tests.conftest import REPO

# What TensorFlow writes to stderr when it loads and first looks for a GPU.
TENSORFLOW_LINES = re.compile(r"absl::InitializeLog|oneDNN|cuInit|cuda drivers|^[IWE]\d{4} \d\d:\d\d", re.M)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any TensorFlow log setting of the user's or ours."""
    names = (tflog.LEVEL_ENV, tflog.OUR_LEVEL_ENV, tflog.VERBOSE_ENV)
    return {**{k: v for k, v in os.environ.items() if k not in names}, **extra}


def test_a_real_command_writes_no_tensorflow_lines(small_data, tmp_path):
    command = [sys.executable, "scripts/tune.py", "--model", "dense", "--trials", "1", "--folds", "2"]
    command += ["--epochs", "1", "--subsample", "300", "--data-dir", small_data, "--runs-dir", tmp_path / "runs"]
    done = subprocess.run(command, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "trial 0 fold 2/2 epoch 1/1" in done.stdout, "TensorFlow was loaded and trained a model"
    assert not TENSORFLOW_LINES.search(done.stderr + done.stdout), done.stderr
    assert "Traceback" not in done.stderr


# Loads TensorFlow as a fold's process does (`configure` first), looks for a GPU, and prints the oneDNN
# setting and the speed cache's key for this machine.
PROBE = (
    "import os; from kaggle_digits import speed, tflog; from kaggle_digits.models import hardware; "
    "hardware.configure('float32'); tflog.import_tensorflow().config.list_physical_devices('GPU'); "
    "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], speed.machine_key('float32'))"
)


@pytest.mark.parametrize(
    "asked, onednn",
    [({tflog.VERBOSE_ENV: "1"}, None), ({tflog.LEVEL_ENV: "0"}, "0")],
    ids=["--verbose, oneDNN unset", "their own TF_CPP_MIN_LOG_LEVEL, oneDNN turned off"],
)
def test_the_lines_come_back_when_the_user_asks_and_onednn_is_on_unless_turned_off(asked, onednn):
    """The lines come back with --verbose or the user's own log level. TensorFlow turns its oneDNN kernels on
    by itself only on the newest CPUs; we turn them on everywhere (it says so in its own log line), also
    where `configure` is the first to load TensorFlow (a fold's process), a user's setting wins, and a
    speed measured with them is never used to plan without them."""
    env = clean_env(**asked)
    env.pop(tflog.ONEDNN_ENV, None)
    if onednn is not None:
        env[tflog.ONEDNN_ENV] = onednn
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert TENSORFLOW_LINES.search(done.stderr), done.stderr
    setting, key = done.stdout.strip().split(" ", 1)
    if onednn is None:
        assert setting == "1" and "| oneDNN |" in key
        assert "oneDNN custom operations are on" in done.stderr, done.stderr
    else:
        assert setting == "0" and "| no oneDNN |" in key
        assert "oneDNN custom operations are on" not in done.stderr, done.stderr


def test_other_lines_written_while_tensorflow_loads_are_passed_on():
    code = (
        "import os, sys; from kaggle_digits import tflog\n"
        "with tflog._native_stderr_filtered():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:1796062910.590637   19811 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "    os.write(2, b'something TensorFlow could not do\\n')\n"
        "    print('a Python warning', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["something TensorFlow could not do", "a Python warning"]


def test_verbose_is_an_option_of_every_command(run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv(tflog.VERBOSE_ENV, "0")  # (so that monkeypatch restores it afterwards)
    monkeypatch.setenv(tflog.VERBOSE_ENV, "0")
    before = run_cli("--verbose", "submit", "--list", "--submissions-dir", tmp_path)  # before the command's name
    assert "unrecognized arguments" not in before.err and os.environ.get(tflog.VERBOSE_ENV) == "1"
    monkeypatch.setenv(tflog.VERBOSE_ENV, "0")
    result = run_cli("submit", "--verbose", "--list", "--submissions-dir", tmp_path)
    assert "unrecognized arguments" not in result.err
    assert os.environ.get(tflog.VERBOSE_ENV) == "1", "worker processes inherit it"
