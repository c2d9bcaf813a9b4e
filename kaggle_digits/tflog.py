"""Keep TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing) off the user's terminal.

TensorFlow writes them straight to file descriptor 2 while it loads (`WARNING: All log messages before
absl::InitializeLog() ...`, `oneDNN custom operations are on ...`, `Could not find cuda drivers ...`) and,
on a machine without a GPU, `E0000 ... failed call to cuInit` at its first device query; a new user
reads them as failures. `import_tensorflow()` loads TensorFlow with TF_CPP_MIN_LOG_LEVEL=3 (its later
log lines) and descriptor 2 pointed at a temporary file during the import; what the import wrote there is
passed on, less those known lines. Nothing is hidden when the user set TF_CPP_MIN_LOG_LEVEL themselves or
gave `--verbose` (the environment variable KAGGLE_DIGITS_VERBOSE=1, which worker processes inherit).

Every first import of TensorFlow or Keras in this package goes through `import_tensorflow()`, which also
turns on TensorFlow's oneDNN kernels (ONEDNN_ENV) unless the user set them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

VERBOSE_ENV = "KAGGLE_DIGITS_VERBOSE"
LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# The level this module set (so that a child process tells it from a level the user chose).
OUR_LEVEL_ENV = "KAGGLE_DIGITS_TF_LOG_LEVEL"
# TensorFlow's oneDNN kernels. Its x86 builds turn them on by themselves only on CPUs with AVX-512 VNNI
# and newer; on an AVX2 CPU they trained the cnn faster and predicted faster than its default kernels
# (docs/experiments.md, "oneDNN everywhere"), so they are on wherever the user did not choose.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
QUIET_LEVEL = "3"  # errors too: the cuInit line is an error, and real failures raise Python exceptions
# Lines TensorFlow's native code writes while it loads: absl's notice, then glog-style INFO/WARNING lines
# (`I0000 00:00:...`), the CPU-instruction notice and its continuation line, and the CUDA probing error.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} \d\d:\d\d:[\d.]+ "
    r"|E\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+\] failed call to cuInit"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|This TensorFlow binary is optimized)"
)


def set_verbose(verbose: bool) -> None:
    """`--verbose`: show TensorFlow's own lines, in this process and the processes it starts."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"


def wants_tensorflow_lines() -> bool:
    """Whether the user asked for TensorFlow's lines: --verbose, or a TF_CPP_MIN_LOG_LEVEL of their own."""
    if os.environ.get(VERBOSE_ENV) == "1":
        return True
    level = os.environ.get(LEVEL_ENV)
    return level is not None and level != os.environ.get(OUR_LEVEL_ENV)


def onednn() -> bool:
    """Whether TensorFlow's oneDNN kernels are asked for (ONEDNN_ENV; import_tensorflow's default)."""
    return os.environ.get(ONEDNN_ENV, "").strip().lower() in ("1", "true")


def import_tensorflow() -> ModuleType:
    """`import tensorflow` (and keras), without TensorFlow's start-up lines unless the user wants them, and
    with oneDNN's kernels on unless the user set ONEDNN_ENV."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault(ONEDNN_ENV, "1")
    if wants_tensorflow_lines():
        import tensorflow

        return tensorflow
    os.environ[LEVEL_ENV] = os.environ[OUR_LEVEL_ENV] = QUIET_LEVEL
    with _native_stderr_filtered():
        import keras  # noqa: F401  (Keras loads TensorFlow's native libraries too)
        import tensorflow
    return tensorflow


@contextlib.contextmanager
def _native_stderr_filtered() -> Iterator[None]:
    """Point descriptor 2 at a temporary file for the block; then write its lines, less NOISE, to stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines() if not NOISE.match(line)]
            if kept:  # what TensorFlow wrote to descriptor 2 and is not noise goes back where it was going
                os.write(2, ("\n".join(kept) + "\n").encode())
