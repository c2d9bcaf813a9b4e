"""What this machine can do, and how Keras should use it: precision policy and TensorFlow's thread pools.

`configure(precision)` is called once per process before the first Keras model is built (the Keras
families call `ensure_configured()` themselves; a `--precision` option calls `configure` first).
Thread settings must reach the environment before TensorFlow starts its runtime, so `set_thread_env()`
runs when the Keras modules are imported, before `import tensorflow`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kaggle_digits import tflog

# auto and fast: mixed precision wherever the hardware computes it natively (mixed_float16 on a GPU,
# mixed_bfloat16 on an AVX512_BF16/AMX CPU), else float32. Both names stay: `auto` is the default, and bf16
# is its choice on such a CPU because the cnn trained as accurately in it as in float32, in less time
# (docs/experiments.md, "Levers tried").
PRECISIONS = ("auto", "fast", "float32", "mixed_bfloat16", "mixed_float16")

# Threads this process may use, when it must not take every usable core: `tune --jobs N` runs N worker
# processes with cores / N threads each (so N workers never oversubscribe the machine); `--threads` too.
THREADS_ENV = "KAGGLE_DIGITS_THREADS"
# The thread pools of numpy's BLAS, OpenMP and MKL read these when they load.
POOL_ENVS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# The variable that decides which GPUs a CUDA process sees, and where the NVIDIA driver lists the GPUs.
CUDA_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
NVIDIA_GPUS = "/proc/driver/nvidia/gpus"

_configured: str | None = None


@dataclass(frozen=True)
class Hardware:
    """The facts `configure` decides from."""

    cores: int
    gpus: int
    cpu_flags: frozenset[str]

    @property
    def cpu_bf16(self) -> bool:
        """Native bfloat16 matrix instructions: AVX512_BF16 or AMX-BF16."""
        return bool({"avx512_bf16", "amx_bf16"} & self.cpu_flags)

    def describe(self) -> str:
        simd = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in self.cpu_flags]
        return f"{self.cores} cores, {self.gpus} GPU(s), CPU flags: {', '.join(simd) or 'no AVX-512'}"


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> frozenset[str]:
    """The `flags` of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_budget() -> int:
    """Threads this process should use: KAGGLE_DIGITS_THREADS when set (see limit_threads), else the
    usable cores."""
    value = os.environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


def limit_threads(threads: int) -> None:
    """Use at most `threads` threads in this process: TensorFlow's pools (sized by `configure` from
    thread_budget), oneDNN/OpenMP/BLAS pools that load later (environment), and BLAS/OpenMP pools
    already loaded (threadpoolctl). Call before the first model is built."""
    threads = max(1, int(threads))
    os.environ[THREADS_ENV] = str(threads)
    for name in POOL_ENVS:
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # scikit-learn brings threadpoolctl; without it only later pools are limited
        pass


def thread_env(threads: int) -> dict[str, str]:
    """Environment entries that give a child process `threads` threads (before anything loads)."""
    threads = max(1, int(threads))
    return {THREADS_ENV: str(threads), **{name: str(threads) for name in POOL_ENVS}}


def detect() -> Hardware:
    """Cores this process may use (thread_budget), GPUs (as TensorFlow sees them) and CPU flags."""
    tf = tflog.import_tensorflow()

    return Hardware(thread_budget(), len(tf.config.list_physical_devices("GPU")), cpu_flags())


def choose_policy(precision: str, hardware: Hardware) -> str:
    """The Keras dtype policy for `precision` on `hardware` (`auto` and `fast`: mixed_float16 on a GPU,
    mixed_bfloat16 on a bf16 CPU, else float32)."""
    if precision not in PRECISIONS:
        from kaggle_digits.errors import UserError

        raise UserError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision not in ("auto", "fast"):
        return precision
    if hardware.gpus:
        return "mixed_float16"
    if hardware.cpu_bf16:
        return "mixed_bfloat16"
    return "float32"


def set_thread_env(cores: int | None = None) -> None:
    """Environment for TensorFlow's threads, set before it loads (explicit user settings win; its log
    level is tflog's).

    TensorFlow's oneDNN kernels run on its own intra-op pool (sized by `configure`), not OpenMP;
    OMP_NUM_THREADS is set to the thread budget only so that any OpenMP code in the process (NumPy's
    BLAS, scikit-learn) does not start more threads than there are cores. Called by the Keras modules
    before `import tensorflow`.
    """
    cores = cores or thread_budget()
    os.environ.setdefault("OMP_NUM_THREADS", str(cores))


def _set_tf_threads(cores: int) -> None:
    """One intra-op and one inter-op thread per core of the budget: fewer intra-op threads than cores left
    the train step slower, and a second inter-op thread helped (docs/experiments.md, "Speed on a 2-core CPU")."""
    tf = tflog.import_tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:
        # TensorFlow's runtime already started (e.g. someone ran an op first): its pools stay as they are.
        pass


def configure(precision: str = "auto") -> str:
    """Set Keras' global dtype policy for `precision` and, the first time, TensorFlow's thread pools.

    precision : auto | fast | float32 | mixed_bfloat16 | mixed_float16 (a bad value is a UserError).
    Returns the policy name now in force. Safe to call again (e.g. to change the precision).
    """
    global _configured
    hardware = detect()
    policy = choose_policy(precision, hardware)
    if _configured is None:
        _set_tf_threads(hardware.cores)
    tflog.import_tensorflow()
    import keras

    keras.mixed_precision.set_dtype_policy(policy)
    _configured = policy
    return policy


def is_configured() -> bool:
    """Whether this process has chosen a precision already."""
    return _configured is not None


def default_fold_jobs(folds: int | None) -> int:
    """Folds to fit at once by default: on a CPU one process per core of the thread budget (two processes
    of one thread train faster than one of two; docs/experiments.md, "Folds in parallel"), at most `folds`;
    with GPUs one process per GPU, each with its device to itself (search.processes gives each child one).
    The GPUs are those the launcher hands out (gpu_devices): read without loading TensorFlow, so a run of
    a family without Keras never loads it."""
    gpus = len(gpu_devices())
    if gpus:
        return max(1, min(gpus, folds or gpus))
    return max(1, min(thread_budget(), folds or thread_budget()))


def gpu_devices(driver_dir: str | os.PathLike = NVIDIA_GPUS) -> list[str]:
    """The GPUs this process may hand to its child processes, as CUDA_VISIBLE_DEVICES names them: that
    variable's entries when it is set (CUDA stops at the first negative one), else one per GPU the NVIDIA
    driver lists. Read without importing TensorFlow (a child must get its device before it imports it)."""
    visible = os.environ.get(CUDA_DEVICES_ENV)
    if visible is not None:
        devices: list[str] = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry.startswith("-"):
                break
            devices.append(entry)
        return devices
    try:
        return [str(i) for i in range(sum(1 for _ in Path(driver_dir).iterdir()))]
    except OSError:  # no NVIDIA driver
        return []


def current_policy() -> str | None:
    """The policy this process configured, or None before `configure`."""
    return _configured


def ensure_configured() -> str:
    """`configure("auto")` unless the process already chose a precision; returns the policy in force."""
    return _configured if _configured is not None else configure("auto")
