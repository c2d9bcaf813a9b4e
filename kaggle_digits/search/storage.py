"""Optuna storages shared by tuning workers: their URLs, opening them, and their errors as one line.

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

(liveness: which worker runs a trial; artifacts: --artifacts; listing: the finished trials.)
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from kaggle_digits.errors import UserError
from kaggle_digits.io import DiskFull, is_disk_full
from kaggle_digits.progress import Log, silent

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

DB_FILE = "optuna.db"  # tune's default storage: SQLite, one process
JOURNAL_FILE = "optuna-journal.log"  # the default with `tune --jobs N`

STUDY_ATTR = "kaggle_digits"  # study user attr: what the study was created for
PATH_ATTR = "path"  # trial user attr: the trial's folder on the machine that ran it
WORKER_ATTR = "worker"  # trial user attr: the process running it (see liveness.worker_identity)

DEFAULT_HEARTBEAT = 60  # seconds between a worker's heartbeats on a database server
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
        causes: list[BaseException] = [exc]
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
