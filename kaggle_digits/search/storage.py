"""Optuna storages shared by tuning workers, and the finished trials in them wherever their files live.

Three kinds of `--storage`:
  sqlite:///<path>                  one process at a time (tune's default: <runs-dir>/optuna.db)
  a file path                       a journal file (JournalStorage): worker processes on one machine
                                    (`tune --jobs N`; default <runs-dir>/optuna-journal.log)
  postgresql+psycopg2://user@host/db, mysql+pymysql://...
                                    a database server: workers on any number of machines
A worker that dies mid-trial must not leave the trial RUNNING forever. On a database server Optuna's
heartbeat finds it (a trial whose worker fell silent for 2 heartbeats is failed by the next worker that
looks); on a file storage the trial names its worker process (machine, pid, start time), and a trial
whose process is gone is failed.

A trial's files are in `runs/<study>/trial-<n>/` on the machine that ran it (its `path` user attr), and
also in an Optuna artifact store when tune ran with `--artifacts` (a directory, or `s3://bucket`).
`list_trials` finds them for the ensemble and the report: the folder itself where it is reachable (same
machine, or --runs-dir on a shared filesystem), else a copy downloaded from the artifact store into
`<runs-dir>/.cache/<study>/trial-<n>/`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from kaggle_digits.errors import UserError
from kaggle_digits.io import DiskFull, is_disk_full, read_json, write_json
from kaggle_digits.progress import Log, silent
from kaggle_digits.search import runs

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

DB_FILE = "optuna.db"  # tune's default storage: SQLite, one process
JOURNAL_FILE = "optuna-journal.log"  # the default with `tune --jobs N`
CACHE_DIR = ".cache"  # under runs-dir: trials downloaded from an artifact store (never a study name)
ARTIFACTS_MANIFEST = "artifacts.json"  # in a cached trial folder, written last: {file name: artifact id}

STUDY_ATTR = "kaggle_digits"  # study user attr: what the study was created for
PATH_ATTR = "path"  # trial user attr: the trial's folder on the machine that ran it
WORKER_ATTR = "worker"  # trial user attr: the process running it (see worker_identity)
ARTIFACTS_ATTR = "artifact_store"  # trial user attr: where its files were uploaded (--artifacts)

DEFAULT_HEARTBEAT = 60  # seconds between a worker's heartbeats on a database server
# A RUNNING trial on a file storage that names no worker is failed once this old: every trial names its
# worker right after it starts, so only a worker killed in those milliseconds leaves one.
UNNAMED_GRACE = 120.0
CONNECT_TIMEOUT = 10  # seconds before an unreachable database server is reported
INIT_ATTEMPTS = 5  # first use of an empty database: workers starting together race to create the tables

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


# --- URLs -----------------------------------------------------------------------------------------


def kind(url: str) -> str:
    """'sqlite', 'journal' (a plain file path) or 'server' (any other database URL)."""
    if "://" not in url:
        return "journal"
    return "sqlite" if url.split(":", 1)[0].split("+", 1)[0] == "sqlite" else "server"


# `user:password@host...` without a scheme: a database URL whose `postgresql+psycopg2://` was forgotten.
_SCHEMELESS_CREDENTIALS = re.compile(r"^([^:/@\s]*:)[^@\s]*@")
# `postgresql:host/db`, `sqlite:file.db`: a scheme without its `//`.
_SCHEME_WITHOUT_SLASHES = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:(?!//)")  # 2+ letters: not a drive letter


def check_url(url: str) -> None:
    """UserError (the password masked) for a storage that is neither a URL with a scheme nor a plain path:
    without `://` it would be taken as a journal file's name, password and all."""
    if not url.strip():
        raise UserError("--storage: empty; give a database URL or a journal file path, or leave --storage out")
    if "://" in url:
        return
    if _SCHEMELESS_CREDENTIALS.match(url) or _SCHEME_WITHOUT_SLASHES.match(url):
        raise UserError(
            f"--storage {display_url(url)}: neither a URL (scheme://...) nor a plain file path; write a database URL "
            "such as postgresql+psycopg2://user@host/db, sqlite:///FILE, or a journal file path"
        )


def is_shared(url: str) -> bool:
    """Whether several processes may work on the storage at once (a journal file or a database server)."""
    return kind(url) != "sqlite"


def default_url(runs_dir: Path, jobs: int = 1) -> str:
    """tune's storage when none is given: SQLite for one process, a journal file for `--jobs` > 1."""
    return str(Path(runs_dir) / JOURNAL_FILE) if jobs > 1 else f"sqlite:///{Path(runs_dir) / DB_FILE}"


def reading_url(runs_dir: Path) -> str:
    """The storage a reader (report) looks in when given none: tune's default, SQLite, or the journal
    file of `tune --jobs` when only that one exists."""
    journal = Path(runs_dir) / JOURNAL_FILE
    if not (Path(runs_dir) / DB_FILE).exists() and journal.is_file():
        return str(journal)
    return default_url(runs_dir)


def password(url: str) -> str | None:
    """The password inside a database URL, if any."""
    if kind(url) != "server":
        return None
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:
        found = re.search(r"://[^:/@]*:([^@]*)@", url)
        return found.group(1) if found else None


def display_url(url: str) -> str:
    """`url` with any password replaced by ***: the only form in which a storage URL is ever printed."""
    if kind(url) != "server":
        return _SCHEMELESS_CREDENTIALS.sub(r"\1***@", url)
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def mask(text: str, url: str | None) -> str:
    """`text` with the password of `url` (and any `user:password@` in a URL) replaced by ***."""
    secret = password(url) if url else None
    if secret:
        text = text.replace(secret, "***")
        from urllib.parse import quote

        text = text.replace(quote(secret, safe=""), "***")
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


# --- opening a storage ----------------------------------------------------------------------------


def open_storage(
    url: str,
    *,
    heartbeat: int | None = DEFAULT_HEARTBEAT,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    must_exist: bool = False,
    log: Log = silent,
) -> optuna.storages.BaseStorage:
    """The Optuna storage at `url` (see the module docstring for the kinds).

    heartbeat : seconds between heartbeats of a running trial on a database server (None: no heartbeat,
    e.g. for a reader); a trial silent for 2 heartbeats counts as crashed. on_stale is called with each
    trial that Optuna fails for that reason. Every failure is a UserError of one line that never shows
    the password: a missing driver (and what to install), a bad URL, an unreachable server, a refused login.
    must_exist : for readers: a journal or SQLite file that does not exist is an error (not a new empty one).
    """
    check_url(url)
    shown = display_url(url)
    what = kind(url)
    if must_exist and what != "server":
        path = Path(url) if what == "journal" else Path(url.split(":///", 1)[-1])
        if not path.is_file():
            raise UserError(f"--storage {shown}: no such file {path}")
    if what == "journal":
        return _open_journal(Path(url))
    try:
        import sqlalchemy  # noqa: F401  (Optuna's RDB storage needs it; a clear line if it is missing)
    except ImportError:
        raise UserError(f"--storage {shown}: SQLAlchemy is not installed (pip install sqlalchemy)") from None
    url = with_installed_driver(url)
    kwargs: dict[str, Any] = {}
    if what == "server":
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
        if heartbeat is not None:
            kwargs.update(
                heartbeat_interval=int(heartbeat), heartbeat_stale_trial_callback=on_stale or stale_reporter(log)
            )
    for attempt in range(INIT_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except ImportError as exc:
            raise UserError(f"--storage {shown}: {_missing_driver(url, exc)}") from None
        except Exception as exc:  # SQLAlchemy's errors for unparsable, unknown or unreachable URLs
            if _is_creation_race(exc) and attempt + 1 < INIT_ATTEMPTS:
                time.sleep(0.5 * (attempt + 1))
                continue
            file = local_file(url)
            if file is not None and (is_disk_full(exc) or "database or disk is full" in str(exc)):
                raise DiskFull(file.parent) from None
            raise UserError(f"--storage {shown}: cannot open it: {mask(_first_line(exc), url)}") from None
    raise AssertionError("unreachable")


class JournalFileLock:
    """The lock around each append to a journal file: flock(2) on the journal file itself.

    Optuna's own journal locks are lock files (a symlink, or a file made with O_EXCL). A worker killed
    while it holds one (kill -9, out of memory) leaves the file behind; every other process then waits
    Optuna's grace period (30 s) and removes it. When two processes wait, both time out: the first removes
    the stale file and takes the lock, and the second, still seeing the journal unchanged, removes the
    first one's fresh lock too. Both then write at once, and whichever releases second finds its lock file
    gone: `RuntimeError: Error: did not possess lock` (in `tune --jobs`, the launcher marking the killed
    worker's trial failed while a surviving worker reported an epoch). The kernel releases an flock when
    its holder dies, however it dies, so nobody waits and no lock is ever broken.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._path = os.fspath(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Block until this process holds the lock."""
        fd = os.open(self._path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of this open file releases its flock


def _open_journal(path: Path) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if path.suffix.lower() in SQLITE_SUFFIXES:
        raise UserError(
            f"--storage {path}: a plain path names a journal file; for an SQLite database write sqlite:///{path}"
        )
    if path.is_dir():
        raise UserError(f"--storage {path}: is a folder; give the journal file's path (e.g. {path / JOURNAL_FILE})")
    if not path.parent.is_dir():
        raise UserError(f"--storage {path}: cannot create the journal file: no folder {path.parent}")
    try:
        if fcntl is None:  # no flock (Windows): Optuna's own lock file
            return JournalStorage(JournalFileBackend(str(path)))
        # (Optuna's journal backend takes any object with acquire() and release() as its lock.)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileLock(path)))  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        raise UserError(f"--storage {path}: cannot open it as an Optuna journal file: {_first_line(exc)}") from None


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def with_installed_driver(url: str) -> str:
    """A PostgreSQL URL that names no driver (`postgresql://...`) gets the driver that is installed.

    SQLAlchemy 2.1 takes psycopg (version 3) for such a URL, while this project installs psycopg2
    (`.[distributed]`): with only psycopg2 there, the URL is read as `postgresql+psycopg2://...`.
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and not _importable("psycopg") and _importable("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return url


def _missing_driver(url: str, exc: ImportError) -> str:
    scheme = url.split("://", 1)[0]
    dialect, _, driver = scheme.partition("+")
    install = "pip install -e '.[distributed]' (or pip install psycopg2-binary)"
    if dialect in ("postgresql", "postgres") and driver == "":
        return f"no PostgreSQL driver is installed (neither psycopg2 nor psycopg): {install}"
    if dialect in ("postgresql", "postgres") and driver == "psycopg2":
        return f"the PostgreSQL driver psycopg2 is not installed: {install}"
    if dialect in ("postgresql", "postgres") and driver == "psycopg":
        return (
            "the PostgreSQL driver psycopg (version 3) is not installed: pip install 'psycopg[binary]', "
            "or write postgresql+psycopg2:// to use psycopg2"
        )
    if dialect == "mysql" and driver in ("", "pymysql"):
        return "the MySQL driver PyMySQL is not installed: pip install PyMySQL (and use mysql+pymysql://...)"
    cause = exc.__cause__ or exc.__context__ or exc
    return f"its database driver is not installed ({cause})"


def _is_creation_race(exc: BaseException) -> bool:
    """Two workers creating Optuna's tables in an empty database at once: one gets a duplicate error."""
    text = str(exc).lower()
    return type(exc).__name__ in ("IntegrityError", "ProgrammingError") and (
        "already exists" in text or "duplicate" in text
    )


def stale_reporter(log: Log) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Optuna's callback for a trial failed for its missing heartbeats: one line to `log`."""

    def report(study: optuna.Study, trial: FrozenTrial) -> None:
        worker = trial.user_attrs.get(WORKER_ATTR) or {}
        who = f" (worker {worker.get('host', '?')} pid {worker.get('pid', '?')})" if worker else ""
        log(f"trial {trial.number}{who} sent no heartbeat for too long: its worker is gone; marked failed")

    return report


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a database error in the block (server gone, login revoked, a read-only or full disk under a
    SQLite or journal file) into one masked line."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        file = local_file(url)
        # Optuna wraps the database's own error (StorageInternalError): look down the chain of causes.
        causes = [exc]
        while causes[-1].__cause__ is not None and len(causes) < 5:
            causes.append(causes[-1].__cause__)
        text = " ".join(str(e) for e in causes)
        if file is not None and (any(is_disk_full(e) for e in causes) or "database or disk is full" in text):
            raise DiskFull(file.parent) from None
        if file is not None and "readonly database" in text:
            raise UserError(
                f"{file}: read-only, tune cannot record trials in it (attempt to write a readonly database)"
            ) from None
        module = type(exc).__module__
        if module.startswith(("sqlalchemy", "psycopg2", "pymysql")):
            raise UserError(f"storage {display_url(url)}: {mask(_first_line(exc), url)}") from None
        raise


def local_file(url: str) -> Path | None:
    """The file behind a SQLite URL or a journal path; None for a database server."""
    what = kind(url)
    if what == "journal":
        return Path(url)
    return Path(url.split(":///", 1)[-1].split("?", 1)[0]) if what == "sqlite" else None


def check_writable(url: str, runs_dir: Path) -> None:
    """UserError naming what is read-only when tune could not record its trials: the storage's file, the
    folder holding it (SQLite and the journal write beside their file) or the runs folder."""
    file = local_file(url)
    if file is not None and file.exists() and not os.access(file, os.W_OK):
        raise UserError(f"{file}: read-only (no permission to write): tune records every trial there")
    folders = dict.fromkeys(p for p in (file.parent if file is not None else None, Path(runs_dir)) if p is not None)
    for folder in folders:
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"{folder}: read-only folder (no permission to write): tune writes its trials there")


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


# --- workers and the trials they leave behind -------------------------------------------------------


def _machine() -> str | None:
    """This kernel boot and PID namespace: two processes with the same value see the same process ids."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def process_started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot; tells a reused pid apart), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def worker_identity() -> dict[str, Any]:
    """Who runs a trial: host name, pid, and (on Linux) what tells whether that process still lives."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "machine": _machine(), "started": process_started(pid)}


def worker_alive(identity: dict[str, Any]) -> bool | None:
    """Whether the worker process still runs; None when it ran on another machine (unknowable here)."""
    machine = identity.get("machine")
    if machine is None or machine != _machine():
        return None
    started = process_started(int(identity.get("pid", -1)))
    return started is not None and started == identity.get("started")


def _age_seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None:
        return 0.0
    start = trial.datetime_start
    now = datetime.now(timezone.utc) if start.tzinfo else datetime.now()
    return (now - start).total_seconds()


def fail_lost_trials(study: optuna.Study, url: str, log: Log = silent, dead_pids: set[int] = frozenset()) -> list[int]:
    """Mark failed the RUNNING trials whose worker is gone; returns their numbers.

    Database server: Optuna's heartbeat check (trials silent for 2 heartbeats), plus trials of the local
    processes in `dead_pids` (workers `tune --jobs` saw die). File storage: every trial whose worker
    process no longer runs on this machine, or that named no worker for UNNAMED_GRACE seconds.
    """
    failed = []
    if kind(url) == "server":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            optuna.storages.fail_stale_trials(study)  # its callback says which
        now_failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        failed += sorted(before & now_failed)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in failed:
            continue
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None:
            lost = kind(url) != "server" and _age_seconds(trial) > UNNAMED_GRACE
            why = f"it named no worker in {UNNAMED_GRACE:.0f} s"
        elif int(worker.get("pid", -1)) in dead_pids and worker.get("machine") == _machine():
            lost, why = True, f"its worker (pid {worker['pid']}) died"
        else:
            lost = kind(url) != "server" and worker_alive(worker) is False
            why = f"its worker ({worker.get('host')} pid {worker.get('pid')}) is no longer running"
        if lost and _fail(study, trial.number):
            failed.append(trial.number)
            log(f"trial {trial.number} was left running, but {why}: marked failed")
    return failed


def _fail(study: optuna.Study, number: int) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        return False
    return True


# --- artifact stores ------------------------------------------------------------------------------


@dataclass
class ArtifactStore:
    """An Optuna artifact store and the location it was opened from (`s3://bucket` or an absolute folder)."""

    store: Any
    location: str


def open_artifact_store(location: str, create: bool = False) -> ArtifactStore:
    """`s3://bucket` (Boto3ArtifactStore; the endpoint and credentials come from boto3's usual settings,
    e.g. AWS_ENDPOINT_URL and AWS_ACCESS_KEY_ID) or a folder (FileSystemArtifactStore).

    create : for writing (tune): the folder is made, the bucket must answer.
    """
    from optuna import artifacts

    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        if not bucket or prefix.strip("/"):
            raise UserError(f"--artifacts {location}: give a bucket only (s3://BUCKET); files go to its top level")
        try:
            import boto3
        except ImportError:
            raise UserError(f"--artifacts {location}: boto3 is not installed (pip install boto3)") from None
        client = boto3.client("s3")
        if create:  # tune: find out now, not after the first trial, that the bucket cannot take the files
            try:
                client.head_bucket(Bucket=bucket)
            except Exception as exc:
                raise UserError(f"--artifacts {location}: cannot use the bucket: {_first_line(exc)}") from None
        return ArtifactStore(artifacts.Boto3ArtifactStore(bucket, client=client), f"s3://{bucket}")
    if "://" in location and not location.startswith("file://"):
        raise UserError(f"--artifacts {location}: use a folder or s3://BUCKET")
    folder = Path(location.removeprefix("file://")).expanduser().resolve()
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--artifacts {location}: cannot create the folder: {exc.strerror}") from None
    elif not folder.is_dir():
        raise UserError(f"--artifacts {location}: no such folder")
    return ArtifactStore(artifacts.FileSystemArtifactStore(str(folder)), str(folder))


def upload_trial(trial: optuna.Trial, folder: Path, store: ArtifactStore) -> int:
    """Upload every file of a finished trial folder to the artifact store (metrics.json last) and record
    the store on the trial. Returns the number of files."""
    from optuna.artifacts import upload_artifact

    files = sorted(
        # Not the hidden bookkeeping (which files the toolkit wrote there): _download refuses such names.
        (p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")),
        key=lambda p: (p.name == runs.METRICS_FILE, p.name),
    )
    try:
        for path in files:
            upload_artifact(artifact_store=store.store, file_path=str(path), study_or_trial=trial)
    except Exception as exc:
        if type(exc).__module__.startswith(("botocore", "boto3")):
            raise UserError(f"--artifacts {store.location}: upload failed: {_first_line(exc)}") from None
        raise
    trial.set_user_attr(ARTIFACTS_ATTR, store.location)
    return len(files)


def _artifact_ids(trial: FrozenTrial) -> dict[str, str]:
    """file name -> artifact id of the files uploaded for `trial` (from Optuna's artifact metadata)."""
    import json

    found = {}
    for key, value in trial.system_attrs.items():
        if key.startswith("artifacts:"):
            meta = json.loads(value)
            found[meta["filename"]] = meta["artifact_id"]
    return found


# --- finished trials, wherever their files are -------------------------------------------------------


@dataclass
class Listing:
    """Finished trials (best CV accuracy first) and the ones whose files cannot be reached, with why."""

    trials: list[runs.TrialRun]
    unreachable: list[tuple[str, str]] = field(default_factory=list)  # (`<study>/trial-<n>`, reason)


def list_trials(
    runs_dir: Path,
    studies: list[str] | None = None,
    *,
    storage: str | None = None,
    artifacts: str | None = None,
    top: int | None = None,
    log: Log = silent,
) -> Listing:
    """The finished trials of `studies` (default: all), best CV accuracy first.

    Without `storage`: the trial folders under runs_dir (runs.list_trials). With a storage URL: its
    COMPLETE trials (the best `top` of each study when given), each as a local folder — the folder it was
    written to if reachable from here, else runs_dir/<study>/trial-<n> (a shared runs folder mounted
    elsewhere), else a copy from the artifact store (`artifacts`, or the one the trial recorded) cached in
    runs_dir/.cache/. Trials found nowhere are listed in `unreachable` with the reason. A study named
    twice counts once.
    """
    studies = list(dict.fromkeys(studies)) if studies else studies
    if storage is None:
        trials = runs.list_trials(runs_dir, studies)
        if top is not None:
            trials = _top_per_study(trials, top)
        return Listing(trials)
    opened = open_storage(storage, heartbeat=None, must_exist=True)
    store = open_artifact_store(artifacts) if artifacts else None
    listing = Listing([])
    with storage_errors(storage):
        known = study_names(opened)
        names = studies if studies else [s for s in known if _is_ours(opened, s)]
        missing = [s for s in names if s not in known]
        if missing:
            raise UserError(
                f"no study {', '.join(repr(s) for s in missing)} in {display_url(storage)} "
                f"(studies there: {', '.join(known) or 'none'})"
            )
        for name in names:
            study = optuna.load_study(study_name=name, storage=opened)
            done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
            done.sort(key=lambda t: (-t.value, t.number))
            for frozen in done[:top] if top is not None else done:
                try:
                    listing.trials.append(local_trial(name, frozen, Path(runs_dir), store, log))
                except _Unreachable as why:
                    listing.unreachable.append((f"{name}/trial-{frozen.number}", str(why)))
    listing.trials.sort(key=lambda t: (-t.cv_accuracy, t.study, t.number))
    return listing


def _top_per_study(trials: list[runs.TrialRun], top: int) -> list[runs.TrialRun]:
    seen: dict[str, int] = {}
    kept = []
    for trial in trials:
        seen[trial.study] = seen.get(trial.study, 0) + 1
        if seen[trial.study] <= top:
            kept.append(trial)
    return kept


def _is_ours(storage: optuna.storages.BaseStorage, name: str) -> bool:
    study_id = storage.get_study_id_from_name(name)
    return STUDY_ATTR in storage.get_study_user_attrs(study_id)


class _Unreachable(Exception):
    pass


def local_trial(
    study: str, frozen: FrozenTrial, runs_dir: Path, store: ArtifactStore | None = None, log: Log = silent
) -> runs.TrialRun:
    """A finished trial of `study` as a local folder (see list_trials); _Unreachable says why not."""
    recorded = frozen.user_attrs.get(PATH_ATTR)
    for folder in ([Path(recorded)] if recorded else []) + [runs.trial_dir(runs_dir, study, frozen.number)]:
        if _holds(folder, study, frozen.number):
            return runs.TrialRun(folder)
    ids = _artifact_ids(frozen)
    location = frozen.user_attrs.get(ARTIFACTS_ATTR)
    if ids and (store is not None or location):
        if store is None:
            try:
                store = open_artifact_store(location)
            except UserError as exc:
                raise _Unreachable(
                    f"its files are in the artifact store {location}, not reachable here: {exc}"
                ) from None
        return _download(study, frozen.number, ids, runs_dir, store, log)
    host = (frozen.user_attrs.get(WORKER_ATTR) or {}).get("host", "another machine")
    raise _Unreachable(
        f"its folder {recorded} (on {host}) is not reachable from here: run the ensemble where the runs folder "
        "is (or on a shared filesystem: --runs-dir), or tune with --artifacts DIR|s3://BUCKET"
    )


def _holds(folder: Path, study: str, number: int) -> bool:
    """Whether `folder` is the finished trial `number` of `study` (not another study's of the same name)."""
    if not (folder / runs.METRICS_FILE).is_file() or not (folder / "params.json").is_file():
        return False
    try:
        info = read_json(folder / "params.json")
    except (OSError, ValueError):
        return False
    return info.get("study") == study and int(info.get("trial", -1)) == number


def _download(
    study: str, number: int, ids: dict[str, str], runs_dir: Path, store: ArtifactStore, log: Log
) -> runs.TrialRun:
    """The trial's files from the artifact store, cached in runs_dir/.cache/<study>/trial-<n>/ (reused
    while its manifest names the same artifact ids; a new copy is staged and then swapped in)."""
    from optuna.artifacts import download_artifact
    from optuna.artifacts.exceptions import ArtifactNotFound

    folder = Path(runs_dir) / CACHE_DIR / study / f"trial-{number}"
    manifest = folder / ARTIFACTS_MANIFEST
    if manifest.is_file() and read_json(manifest) == ids:
        return runs.TrialRun(folder)
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir(parents=True)
    try:
        for name, artifact_id in ids.items():
            if "/" in name or name.startswith("."):
                raise _Unreachable(f"the artifact store names a file {name!r}: refused")
            try:
                download_artifact(artifact_store=store.store, file_path=str(staging / name), artifact_id=artifact_id)
            except ArtifactNotFound:
                raise _Unreachable(f"{name} (artifact {artifact_id}) is missing from {store.location}") from None
            except Exception as exc:
                if type(exc).__module__.startswith(("botocore", "boto3")):
                    raise _Unreachable(f"cannot download from {store.location}: {_first_line(exc)}") from None
                raise
        write_json(staging / ARTIFACTS_MANIFEST, ids)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log(f"downloaded {study}/trial-{number} ({len(ids)} files) from {store.location} to {folder}")
    return runs.TrialRun(folder)
