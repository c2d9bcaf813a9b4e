"""How fast this machine trains and predicts with a member (the cnn, or another family a plan may
choose): a short calibration (in as many processes as the folds run in), kept per machine in a cache file
and updated with the speeds planned runs saw. The plan itself is kaggle_digits.planner's arithmetic over
this speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from kaggle_digits import tflog
from kaggle_digits.io import write_json
from kaggle_digits.planner import DEFAULT_MEMBER, Speed
from kaggle_digits.progress import Log, silent

# Images per calibration epoch, and its epochs (the first, which builds the graph, is not timed). Timed
# epochs of a few seconds each: a single short timed epoch overstated the speed the folds then trained
# at (docs/benchmarks.md).
CALIBRATION_IMAGES = 6144
CALIBRATION_EPOCHS = 3
# With several processes: how long after they are started they all begin measuring (their imports fit).
SYNC_SECONDS = 20.0
# The training speeds of the last planned runs (and the measurement before them) whose median the next
# plan uses: remember.
RECENT_SPEEDS = 5
CACHE_ENV = "KAGGLE_DIGITS_CACHE_DIR"
CACHE_FILE = "speed.json"
# Under the runs folder: where speeds are kept when the cache folder cannot be written (search.storage keeps
# its downloaded trials in the same hidden folder, never a study name).
FALLBACK_DIR = ".cache"


def machine_key(policy: str, jobs: int = 1, model: str = DEFAULT_MEMBER) -> str:
    """The CPU model, the cores this process may use, TensorFlow's version, the dtype policy, whether
    oneDNN's kernels are on, the calibration's size, the network it times (the family `model`'s default:
    network_tag) and the processes sharing the cores."""
    from kaggle_digits import models
    from kaggle_digits.models import hardware

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tf = tflog.import_tensorflow()

    key = f"{cpu} | {hardware.thread_budget()} cores | tensorflow {tf.__version__} | {policy}"
    key += " | oneDNN" if tflog.onednn() else " | no oneDNN"
    key += f" | {CALIBRATION_EPOCHS} x {CALIBRATION_IMAGES} images"  # another measurement, another entry
    key += f" | {model} {network_tag(models.get(model).default_params(augment=True))}"  # another recipe, another entry
    return key if jobs == 1 else f"{key} | {jobs} processes in step"


def network_tag(params: dict) -> str:
    """Eight hex digits that change with any of the recipe params the calibration trains with, so that a
    speed measured for one network is never used to plan another."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def cache_file() -> Path:
    """Where measured speeds are kept: $KAGGLE_DIGITS_CACHE_DIR, else ~/.cache/kaggle-digits."""
    folder = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kaggle-digits"
    return Path(folder) / CACHE_FILE


def cache_files(fallback: str | os.PathLike | None = None) -> list[Path]:
    """Where speeds are looked for and kept, in order: cache_file(), then `fallback` (the runs folder:
    FALLBACK_DIR under it), which keeps them when the first cannot be written (HOME read-only, or a file)."""
    files = [cache_file()]
    if fallback is not None:
        files.append(Path(fallback) / FALLBACK_DIR / CACHE_FILE)
    return files


def speed(
    precision: str = "fast",
    log: Log = silent,
    jobs: int = 1,
    fallback: str | os.PathLike | None = None,
    model: str = DEFAULT_MEMBER,
) -> Speed:
    """This machine's speed with the family `model` in `precision` with `jobs` processes at once: from the
    cache, else measured now (and cached: in the first of cache_files(fallback) that can be written)."""
    from kaggle_digits.models import hardware

    policy = hardware.configure(precision)
    key = machine_key(policy, jobs, model)
    entry = _read_cache(fallback).get(key)
    if isinstance(entry, dict) and entry.get("train_per_s", 0) > 0 and entry.get("predict_per_s", 0) > 0:
        return Speed(float(entry["train_per_s"]), float(entry["predict_per_s"]), policy, key, jobs=jobs, model=model)
    place, problems = _writable_file(fallback)
    if problems:
        instead = f": keeping them in {place}" if place else ""
        log(f"cannot keep measured speeds in {' or '.join(problems)}{instead}")
    how = f"{policy}, {jobs} processes at once" if jobs > 1 else policy
    kept = f"kept in {place}" if place else "not kept"
    log(f"measuring this machine's {model} speed ({how}; once per machine, {kept}) ...")
    measured = calibrate(policy, key, jobs, model=model)
    _write_cache(measured, fallback, log)
    return measured


def remember(speed: Speed, train_per_s: float, fallback: str | os.PathLike | None = None, log: Log = silent) -> Speed:
    """Add `train_per_s`, the training speed a planned run's folds saw (images per second of one of
    speed.jobs processes), to this machine's recent speeds in the cache; the next plan uses their median
    (the last RECENT_SPEEDS, the measurement among them until runs replace it). So a machine that
    slowed down or sped up since it was measured is planned for as it is now, while one run that shared
    the machine with other work does not shrink the next plan. Returns the speed the next plan gets."""
    if not train_per_s > 0:
        return speed
    entry = _read_cache(fallback).get(speed.machine)
    recent = entry.get("recent") if isinstance(entry, dict) else None
    if not isinstance(recent, list) or not all(isinstance(v, (int, float)) and v > 0 for v in recent):
        recent = [speed.train_per_s]
    recent = [*recent, float(train_per_s)][-RECENT_SPEEDS:]
    kept = replace(speed, train_per_s=float(np.median(recent)), seconds=0.0)
    _write_cache(kept, fallback, log, recent=recent)
    return kept


def _read(path: Path) -> dict:
    try:
        cached = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cached = {}
    return cached if isinstance(cached, dict) else {}


def _read_cache(fallback: str | os.PathLike | None = None) -> dict:
    """Every kept speed: the fallback's entries, overridden by the cache file's own."""
    merged: dict = {}
    for path in reversed(cache_files(fallback)):
        merged.update(_read(path))
    return merged


def _cannot_write(path: Path) -> str | None:
    """Why `path` cannot be written (its folder cannot be made, or is not writable); None when it can."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "not writable"
    return None


def _writable_file(fallback: str | os.PathLike | None) -> tuple[Path | None, list[str]]:
    """The first of cache_files(fallback) that can be written (None: none can), and why each one before
    it cannot."""
    problems: list[str] = []
    for path in cache_files(fallback):
        why = _cannot_write(path)
        if why is None:
            return path, problems
        problems.append(f"{path} ({why})")
    return None, problems


def _write_cache(speed: Speed, fallback: str | os.PathLike | None, log: Log, **more: object) -> None:
    """Keep `speed` in the first of cache_files(fallback) that takes it. A cache that cannot be written
    anywhere only costs the next run a measurement: said in a line, not raised."""
    entry = {**asdict(speed), **more}
    for path in cache_files(fallback):
        if _cannot_write(path) is not None:
            continue
        try:
            write_json(path, {**_read(path), speed.machine: entry})
            return
        except OSError as exc:
            log(f"cannot keep measured speeds in {path} ({exc.strerror or exc})")
    log("this machine's speed was not kept: the next run measures it again")


def calibrate(policy: str, key: str, jobs: int = 1, changes: dict | None = None, model: str = "cnn") -> Speed:
    """Time the default cnn (with augmentation) on CALIBRATION_IMAGES synthetic images: the epochs after
    the first of CALIBRATION_EPOCHS (the first builds the graph), then two predictions of the same images
    (the second timed).
    With jobs > 1, in that many processes at once (as the folds run), averaging their speeds.
    changes : params that replace the default's (benchmarks time other networks with them).
    model : the family whose default is timed (the plans time each member they weigh)."""
    started = time.monotonic()
    images = CALIBRATION_IMAGES  # read here: a child process has its own module
    if jobs <= 1:
        train_per_s, predict_per_s = measure(changes, model, images)
    else:
        from kaggle_digits.search import processes

        # Every process starts its measurement at one moment (after its imports), so that the processes
        # share the cores the whole time as the folds do; one that measured while another was still
        # starting would measure a machine to itself.
        start_at = time.time() + SYNC_SECONDS
        tasks = [
            processes.Task(_measure_in_process, (start_at, changes, model, images), f"speed measurement {k + 1}")
            for k in range(jobs)
        ]
        from kaggle_digits import models

        # A family that is not Keras's (the mlp) gets no policy: its processes never load TensorFlow.
        child_policy = policy if models.uses_tensorflow(models.get(model)) else None
        measured = processes.run(tasks, jobs, policy=child_policy)
        train_per_s = float(np.mean([m[0] for m in measured]))
        predict_per_s = float(np.mean([m[1] for m in measured]))
    return Speed(train_per_s, predict_per_s, policy, key, time.monotonic() - started, jobs, model)


def _measure_in_process(start_at: float, changes: dict | None, model: str, images: int, report) -> tuple[float, float]:
    from kaggle_digits import models

    models.get(model)  # TensorFlow and Keras loaded before the wait
    time.sleep(max(0.0, start_at - time.time()))
    return measure(changes, model, images)


def measure(changes: dict | None = None, model: str = DEFAULT_MEMBER, images: int | None = None) -> tuple[float, float]:
    """(training, prediction) images per second of the default of the family `model` (the cnn), with
    `changes` to its params, in this process, on `images` images (CALIBRATION_IMAGES; see calibrate)."""
    images = CALIBRATION_IMAGES if images is None else images
    from kaggle_digits import models

    spec = models.get(model)

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (images, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, images).astype(np.uint8)
    ends: list[float] = []
    params = {**spec.default_params(augment=True), **(changes or {}), "epochs": CALIBRATION_EPOCHS}
    began = time.monotonic()
    fitted = spec.fit(
        params,
        X,
        y,
        max_epochs=CALIBRATION_EPOCHS,
        on_epoch=lambda epoch, metrics: ends.append(time.monotonic()),
        verbose=False,
    )
    if len(ends) >= 2:
        train_per_s = images * (len(ends) - 1) / max(ends[-1] - ends[0], 1e-6)
    else:  # a family that reports no epochs without held-out rows (the mlp): the whole fit
        train_per_s = images * CALIBRATION_EPOCHS / max(time.monotonic() - began, 1e-6)
    spec.predict_proba(fitted.model, X)
    t0 = time.monotonic()
    spec.predict_proba(fitted.model, X)
    predict_per_s = images / max(time.monotonic() - t0, 1e-6)
    return train_per_s, predict_per_s
