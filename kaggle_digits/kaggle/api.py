"""The only module that imports `kaggle`. Imported lazily: `import kaggle` authenticates at import time.

Every call goes through `_calling`, which turns the client's failures (missing or refused credentials,
unaccepted rules, unreachable servers, error answers) into one `UserError` line. No message ever
carries a credential value: `_scrub` removes any that a server or the client might echo back.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from kaggle_digits import COMPETITION
from kaggle_digits.errors import UserError
from kaggle_digits.progress import Log, silent

CREDENTIAL_PLACES = (
    "the KAGGLE_API_TOKEN or KAGGLE_USERNAME/KAGGLE_KEY environment variables, "
    "~/.kaggle/access_token, or kaggle.json in $KAGGLE_CONFIG_DIR or ~/.kaggle"
)
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
API_TOKEN_URL = "https://www.kaggle.com/settings/api"
ZIP_NAME = f"{COMPETITION}.zip"
# The client treats this answer of competition_submit as "the upload failed" (it does not raise).
SUBMIT_FAILED_MESSAGE = "Could not submit to competition"
DATASET_READY_TIMEOUT = 600.0
DATASET_READY_POLL = 10.0
# The first client version with competition_get_submission_limits.
LIMITS_CLIENT = "2.2.4"
# wait_for_score never asks Kaggle more often than this: each look is an API call on the user's account.
MIN_POLL_SECONDS = 5.0
# The first client version with quota_view (the weekly accelerator quota).
QUOTA_CLIENT = "2.2.1"
# The first client version with kernels_logs / kernels_logs_stream (a running kernel's log).
LOGS_CLIENT = "2.2.5"
# A broken log stream is opened again (Kaggle replays it from the start) at most this many times in a row
# without a new line.
LOG_STREAM_RETRIES = 5
LOG_STREAM_END = "END_OF_LOG"

T = TypeVar("T")


# --- credentials -------------------------------------------------------------------------------


def config_dir() -> Path:
    """Where the Kaggle client looks for kaggle.json: $KAGGLE_CONFIG_DIR, ~/.kaggle, else ~/.config/kaggle."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    legacy = Path.home() / ".kaggle"
    if legacy.exists():
        return legacy
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def _token_files() -> list[Path]:
    """Files the client reads an access token (or OAuth credentials) from; it always uses ~/.kaggle here."""
    home = Path.home() / ".kaggle"
    return [home / "access_token", home / "access_token.txt", home / "credentials.json"]


def has_credentials() -> bool:
    """True when the Kaggle client would find credentials (token, env vars, kaggle.json or a token file)."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    if any(path.is_file() and path.stat().st_size > 0 for path in _token_files()):
        return True
    return (config_dir() / "kaggle.json").is_file()


def credential_source() -> str:
    """Where the credentials the client will use come from (in the client's own order), never their value."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    for path in _token_files()[:2]:
        if path.is_file() and path.stat().st_size > 0:
            return str(path)
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if (config_dir() / "kaggle.json").is_file():
        return str(config_dir() / "kaggle.json")
    return str(_token_files()[2])


def _secrets() -> list[str]:
    """Every credential value the client might use, so that no message can ever show one."""
    values = [os.environ.get("KAGGLE_API_TOKEN", ""), os.environ.get("KAGGLE_KEY", "")]
    with contextlib.suppress(OSError, ValueError, AttributeError):
        values.append(str(json.loads((config_dir() / "kaggle.json").read_text()).get("key", "")))
    for path in _token_files():
        with contextlib.suppress(OSError):
            values.append(path.read_text().strip())
    return [v for v in values if len(v) >= 4]


def _scrub(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def _no_credentials() -> UserError:
    return UserError(
        f"no Kaggle credentials found: create an API token at {API_TOKEN_URL} and put it in {CREDENTIAL_PLACES}"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the client's own chatter (auth help, version warnings, upload notes) off our output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _api() -> Any:
    """An authenticated `KaggleApi` reading the credentials of the current environment."""
    if not has_credentials():
        raise _no_credentials()
    with _calling("signing in"), _quiet():
        try:
            # Importing `kaggle` authenticates once; without credentials it prints help and may exit.
            from kaggle.api.kaggle_api_extended import KaggleApi
        except SystemExit:
            raise _no_credentials() from None
        api = KaggleApi()
        # KaggleApi fixes its config folder when the module is first imported; follow the current one.
        api.config_dir = str(config_dir())
        api.config = os.path.join(api.config_dir, api.config_file)
        try:
            api.authenticate()
        except SystemExit:
            raise UserError(
                f"the Kaggle credentials from {credential_source()} are not usable (an access token Kaggle "
                f'does not know, or a kaggle.json without "username" and "key"): create a token at {API_TOKEN_URL}'
            ) from None
    return api


def username() -> str:
    """The Kaggle user name of the current credentials (asks Kaggle only for a bare access token)."""
    name = _api().config_values.get("username")
    if not name:
        raise UserError("could not tell the Kaggle user name from the credentials: give it with --user")
    return str(name)


# --- error mapping -----------------------------------------------------------------------------


@contextlib.contextmanager
def _calling(what: str, not_found: str | None = None, forbidden: str | None = None) -> Iterator[None]:
    """Turn the client's failures while `what` into one UserError line.

    not_found / forbidden: the sentence to use for a 404 / 403 answer (the meaning depends on the call).
    """
    import requests

    try:
        yield
    except UserError:
        raise
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        detail = _scrub(str(exc).strip()) or "no details"
        if status == 401:
            raise UserError(
                f"Kaggle refused the credentials from {credential_source()} (401 Unauthorized) while {what}: "
                f"create a new API token at {API_TOKEN_URL} and put it there"
            ) from None
        if status == 403:
            raise UserError(forbidden or f"Kaggle answered 403 Forbidden while {what}: {detail}") from None
        if status == 404 and not_found:
            raise UserError(not_found) from None
        if status == 429:
            raise UserError(
                f"Kaggle is rate-limiting requests (429) while {what}: try again in a few minutes"
            ) from None
        raise UserError(f"Kaggle answered {status} while {what}: {detail}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        from kagglesdk.kaggle_env import get_endpoint, get_env

        kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "no connection"
        raise UserError(
            f"cannot reach Kaggle at {get_endpoint(get_env())} while {what} ({kind}): "
            "check the network connection and try again"
        ) from None
    except ValueError as exc:
        # The client raises ValueError for what it refuses locally or for access it was denied.
        raise UserError(f"Kaggle client refused {what}: {_scrub(str(exc))}") from None


def _competition_forbidden(what: str) -> str:
    return (
        f"Kaggle answered 403 Forbidden while {what}: accept the competition's rules at {RULES_URL} "
        "(signed in as the same account as the credentials), then try again"
    )


# --- competition data --------------------------------------------------------------------------


def download_competition_zip(dest_dir: str | os.PathLike, force: bool = False, log: Log = silent) -> Path:
    """Download digit-recognizer.zip into dest_dir with the official client; return its path.

    An existing valid zip is reused unless `force`. The download lands in a temporary folder inside
    dest_dir and is moved into place only when complete: a failure leaves nothing behind.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / ZIP_NAME
    if not force and _is_competition_zip(target):
        log(f"using the zip already downloaded: {target} (--force downloads it again)")
        return target
    api = _api()
    dest_dir.mkdir(parents=True, exist_ok=True)
    what = f"downloading {COMPETITION}'s files"
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".kaggle-download-", dir=dest_dir) as tmp:
        with _calling(what, forbidden=_competition_forbidden(what)), _quiet():
            api.competition_download_files(COMPETITION, path=tmp, force=True, quiet=True)
        downloaded = Path(tmp) / ZIP_NAME
        if not downloaded.is_file():
            names = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise UserError(f"Kaggle's download of {COMPETITION} gave {names}, not {ZIP_NAME}")
        if not zipfile.is_zipfile(downloaded):
            raise UserError(f"Kaggle's download of {COMPETITION} is not a zip file: try again with --force")
        os.replace(downloaded, target)
    size = target.stat().st_size / 1e6
    log(f"downloaded {target} ({size:.1f} MB in {time.monotonic() - start:.1f} s)")
    return target


def _is_competition_zip(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = {Path(name).name for name in archive.namelist()}
    return {"train.csv", "test.csv"} <= names


# --- submissions -------------------------------------------------------------------------------


@dataclass
class Submission:
    """One row of the competition's submission list."""

    ref: str
    date: str  # "YYYY-MM-DD HH:MM" (UTC), "" when unknown
    message: str
    status: str  # pending | complete | error
    public_score: float | None
    file_name: str
    error: str


def submit(path: str | os.PathLike, message: str) -> str:
    """Upload a submission file (start upload, PUT, create submission); return Kaggle's submission ref.

    The client answers a failed upload with a message instead of an exception: that answer is checked.
    """
    api = _api()
    what = f"submitting {Path(path).name}"
    with _calling(what, forbidden=_competition_forbidden(what)), _quiet():
        response = api.competition_submit(str(path), message, COMPETITION, quiet=True)
    answer = _scrub((getattr(response, "message", "") or "").strip())
    ref = getattr(response, "ref", None)
    if answer == SUBMIT_FAILED_MESSAGE or not ref:
        raise UserError(f"Kaggle did not accept the upload of {path}: {answer or 'no submission was created'}")
    return str(ref)


@dataclass
class SubmissionLimits:
    """This account's submission counts for the competition, as Kaggle reports them.

    Kaggle counts per UTC day: `remaining` lasts until the next 00:00 UTC, unless `limited_by_total`
    (the competition's lifetime cap was reached, which no new day resets).
    """

    made_today: int  # valid submissions since 00:00 UTC
    made_total: int
    remaining: int  # submissions still allowed today
    limited_by_total: bool

    @property
    def counted(self) -> bool:
        """False when Kaggle gives no counts: all zero means the account has no team in the competition
        yet (it has never submitted to it), not that nothing is allowed."""
        return bool(self.made_today or self.made_total or self.remaining or self.limited_by_total)

    @property
    def exhausted(self) -> bool:
        return self.counted and self.remaining <= 0


class Unavailable(Exception):
    """Something Kaggle was asked for could not be read; the message says why in a few words."""


class LimitsUnavailable(Unavailable):
    """The submission limits could not be read."""


def next_daily_reset(now: datetime | None = None) -> datetime:
    """The next 00:00 UTC after `now` (default: the current time), when Kaggle's daily count starts again."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return datetime(now.year, now.month, now.day, tzinfo=timezone.utc) + timedelta(days=1)


def client_version() -> str:
    """The installed `kaggle` client's version, read from its package metadata ("unknown" if absent)."""
    try:
        return metadata.version("kaggle")
    except metadata.PackageNotFoundError:
        return "unknown"


def _read_or_unavailable(
    method: str, args: tuple[Any, ...], what: str, first_client: str, unavailable: type[Unavailable]
) -> Any:
    """The answer of the client's `method(*args)`, asking while `what`.

    Missing credentials and refused ones (401) are a UserError, as for any call. Anything else that keeps
    the answer from being read (a client older than `first_client` without the method, an error answer,
    no connection, an answer that cannot be parsed) is `unavailable`, saying why.
    """
    import requests

    api = _api()
    ask = getattr(api, method, None)
    if ask is None:
        raise unavailable(f"the installed kaggle client {client_version()} cannot ask; {first_client}+ can")
    try:
        with _quiet():
            return ask(*args)
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            with _calling(what):
                raise
        raise unavailable(f"Kaggle answered {status}") from None
    except requests.exceptions.Timeout:
        raise unavailable("Kaggle did not answer in time") from None
    except requests.exceptions.RequestException:
        raise unavailable("cannot reach Kaggle") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise unavailable(f"Kaggle's answer could not be read ({_scrub(str(exc))[:80]})") from None


def submission_limits() -> SubmissionLimits:
    """How many submissions this account has made today and in all, and how many remain today.

    A failure to read them other than the credentials' is LimitsUnavailable (see _read_or_unavailable).
    """
    answer = _read_or_unavailable(
        "competition_get_submission_limits",
        (COMPETITION,),
        "reading the submission limits",
        LIMITS_CLIENT,
        LimitsUnavailable,
    )
    try:
        return SubmissionLimits(
            made_today=int(answer.num_today or 0),
            made_total=int(answer.num_total or 0),
            remaining=int(answer.num_allowed_now or 0),
            limited_by_total=bool(answer.limited_by_total),
        )
    except (AttributeError, TypeError, ValueError):
        raise LimitsUnavailable("Kaggle's answer has no submission counts") from None


def list_submissions(limit: int = 20) -> list[Submission]:
    """The competition's most recent submissions of this account, newest first."""
    api = _api()
    what = "listing submissions"
    with _calling(what, forbidden=_competition_forbidden(what)), _quiet():
        rows = api.competition_submissions(COMPETITION, page_size=limit) or []
    return [_submission(row) for row in rows if row is not None][:limit]


def _submission(row: Any) -> Submission:
    score = (row.public_score or "").strip()
    try:
        public = float(score) if score else None
    except ValueError:
        public = None
    date = row.date.strftime("%Y-%m-%d %H:%M") if getattr(row, "date", None) else ""
    status = getattr(row.status, "name", str(row.status)).lower()
    return Submission(
        ref=str(row.ref),
        date=date,
        message=row.description or "",
        status=status,
        public_score=public,
        file_name=row.file_name or "",
        error=row.error_description or "",
    )


def wait_until(look: Callable[[float], T | None], timeout: float, poll: float, timed_out: Callable[[float], str]) -> T:
    """Call look(seconds since the start) every `poll` seconds until it returns something other than None,
    and return that: Kaggle's polling, for a submission's score and a kernel's end.

    When the next look would come after `timeout`, UserError(timed_out(seconds waited)). `poll` below
    MIN_POLL_SECONDS or infinite, or a negative or NaN `timeout`, is a ValueError (each look is a request).
    """
    if not MIN_POLL_SECONDS <= poll < float("inf") or not timeout >= 0:
        raise ValueError(f"poll must be >= {MIN_POLL_SECONDS} s and timeout >= 0 s, got {poll!r} and {timeout!r}")
    start = time.monotonic()
    while True:
        found = look(time.monotonic() - start)
        if found is not None:
            return found
        elapsed = time.monotonic() - start
        if elapsed + poll > timeout:
            raise UserError(timed_out(elapsed))
        time.sleep(poll)


def wait_for_score(
    ref: str,
    timeout: float = 600.0,
    poll: float = 10.0,
    on_poll: Callable[[str, float], None] | None = None,
) -> float:
    """Poll the submission list until submission `ref` is scored; return its public score.

    on_poll(status, elapsed_seconds) is called after each look. Kaggle's ERROR status or the timeout
    is a UserError; bad `poll` or `timeout` values are a ValueError (see wait_until).
    """
    status = "not listed yet"

    def look(elapsed: float) -> float | None:
        nonlocal status
        found = next((s for s in list_submissions() if s.ref == str(ref)), None)
        status = found.status if found else "not listed yet"
        if on_poll:
            on_poll(status, elapsed)
        if found and found.status == "error":
            raise UserError(f"Kaggle could not score submission {ref}: {found.error or 'status ERROR'}")
        if found and found.status == "complete":
            if found.public_score is None:
                raise UserError(f"Kaggle marked submission {ref} complete but gave no public score")
            return found.public_score
        return None

    return wait_until(
        look,
        timeout,
        poll,
        lambda elapsed: (
            f"submission {ref} not scored after {elapsed:.0f} s (status: {status}): "
            "see later with `python scripts/submit.py --list`"
        ),
    )


# --- accelerator quota -------------------------------------------------------------------------


@dataclass
class GpuQuota:
    """This account's weekly GPU time on Kaggle, in seconds, and when it starts again."""

    used: float
    reserved: float  # held by sessions running now
    allowed: float
    refresh: datetime | None  # UTC

    @property
    def left(self) -> float:
        return max(0.0, self.allowed - self.used - self.reserved)


class QuotaUnavailable(Unavailable):
    """The accelerator quota could not be read."""


def gpu_quota() -> GpuQuota:
    """The weekly GPU quota: used, reserved, allowed and the refresh time (the client's quota_view).

    A failure to read it other than the credentials' is QuotaUnavailable (see _read_or_unavailable).
    """
    answer = _read_or_unavailable("quota_view", (), "reading the GPU quota", QUOTA_CLIENT, QuotaUnavailable)
    gpu = getattr(answer, "gpu_quota", None)
    if gpu is None or gpu.total_time_allowed is None:
        raise QuotaUnavailable("Kaggle's answer has no GPU quota")
    refresh = getattr(answer, "quota_refresh_time", None)
    if refresh is not None and refresh.utcoffset() is None:
        refresh = refresh.replace(tzinfo=timezone.utc)  # the client gives UTC without a time zone

    def seconds(value: timedelta | None) -> float:
        return value.total_seconds() if value is not None else 0.0

    return GpuQuota(seconds(gpu.time_used), seconds(gpu.time_reserved), seconds(gpu.total_time_allowed), refresh)


# --- datasets and kernels ----------------------------------------------------------------------


def dataset_status(ref: str) -> str | None:
    """The status of dataset `owner/slug` (e.g. "ready"), or None when it does not exist."""
    import requests

    api = _api()
    with _calling(f"looking up dataset {ref}"), _quiet():
        try:
            return str(api.dataset_status(ref))
        except requests.exceptions.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise


def push_dataset(
    folder: str | os.PathLike,
    ref: str,
    notes: str,
    timeout: float = DATASET_READY_TIMEOUT,
    poll: float = DATASET_READY_POLL,
    log: Log = silent,
) -> str:
    """Create dataset `ref` from `folder` (dataset-metadata.json + files), or add a version; return "created"
    or "versioned". Folders are uploaded zipped (Kaggle unpacks them). Waits until Kaggle says it is ready,
    so that a kernel pushed next sees this version."""
    api = _api()
    exists = dataset_status(ref) is not None
    what = f"{'versioning' if exists else 'creating'} dataset {ref}"
    forbidden = f"Kaggle answered 403 Forbidden while {what}: the credentials' account cannot write {ref}"
    with _calling(what, forbidden=forbidden), _quiet():
        if exists:
            result = api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="zip")
        else:
            result = api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip")
    status = (getattr(result, "status", "") or "").lower()
    if result is None or status != "ok":
        error = _scrub(getattr(result, "error", None) or "no reason given")
        raise UserError(f"Kaggle rejected {what}: {error}")
    start = time.monotonic()
    while True:
        # Right after creation the dataset may not be listed yet: that is waited out like processing.
        current = (dataset_status(ref) or "not listed yet").lower()
        if current == "ready":
            return "versioned" if exists else "created"
        if current in ("failed", "deleted"):
            raise UserError(f"Kaggle could not process dataset {ref} (status: {current})")
        if time.monotonic() - start + poll > timeout:
            raise UserError(f"dataset {ref} not ready after {timeout:.0f} s (status: {current}): push again later")
        log(f"waiting for Kaggle to process dataset {ref}: {current}")
        time.sleep(poll)


def push_kernel(folder: str | os.PathLike) -> tuple[str, int | None]:
    """Push the kernel in `folder` (kernel-metadata.json + code file); return (its URL, version number).

    The client answers a rejected push with an `error` field instead of an exception: that is checked.
    """
    api = _api()
    what = "pushing the kernel"
    with _calling(what, forbidden=f"Kaggle answered 403 Forbidden while {what}: check the kernel id"), _quiet():
        result = api.kernels_push(str(folder))
    if result is None:
        raise UserError("Kaggle gave no answer to the kernel push")
    if getattr(result, "error", None):
        raise UserError(f"Kaggle rejected the kernel push: {_scrub(result.error)}")
    for field, label in (
        ("invalid_dataset_sources", "dataset sources"),
        ("invalid_competition_sources", "competition sources"),
    ):
        invalid = getattr(result, field, None)
        if invalid:
            raise UserError(f"Kaggle did not accept the kernel's {label}: {', '.join(invalid)}")
    return str(result.url), getattr(result, "version_number", None)


def _kernel_not_found(ref: str) -> str:
    return f"kernel {ref} not found on Kaggle: push it first with `python scripts/kernel.py push`"


def _kernel_not_visible(ref: str) -> UserError:
    # The client turns 401/403 about a kernel into a ValueError about permissions: the kernel is not visible.
    return UserError(f"kernel {ref} is not visible to these credentials (wrong user or kernel id)")


def kernel_status(ref: str) -> tuple[str, str]:
    """(status, failure message) of kernel `owner/slug`; status is queued, running, complete, error, ..."""
    api = _api()
    with _calling(f"asking the status of kernel {ref}", not_found=_kernel_not_found(ref)), _quiet():
        try:
            response = api.kernels_status(ref)
        except ValueError:
            raise _kernel_not_visible(ref) from None
    status = getattr(response.status, "name", str(response.status)).lower()
    return status, _scrub(response.failure_message or "")


def _log_method(api: Any, method: str) -> Callable[..., Any]:
    found = getattr(api, method, None)
    if found is None:
        raise UserError(
            f"the installed kaggle client {client_version()} cannot read a kernel's log; {LOGS_CLIENT}+ can "
            "(pip install -U kaggle)"
        )
    return found


def log_lines(text: str) -> list[str]:
    """The lines of a kernel's log as Kaggle keeps it (a JSON list of {"stream_name", "time", "data"}
    events; any other text is taken line by line)."""
    try:
        events = json.loads(text)
    except ValueError:
        return text.splitlines()
    if not isinstance(events, list):
        return text.splitlines()
    return "".join(str(e.get("data") or "") for e in events if isinstance(e, dict)).splitlines()


def kernel_log(ref: str) -> list[str]:
    """The lines the latest session of kernel `owner/slug` has logged so far (the client's kernels_logs)."""
    api = _api()
    ask = _log_method(api, "kernels_logs")
    with _calling(f"reading the log of kernel {ref}", not_found=_kernel_not_found(ref)), _quiet():
        try:
            text = ask(ref)
        except ValueError:
            raise _kernel_not_visible(ref) from None
    return log_lines(_scrub(text or ""))


def follow_kernel_log(ref: str) -> Iterator[str]:
    """The lines of kernel `owner/slug`'s log as its running session writes them (the client's
    kernels_logs_stream), until the session ends; a finished session's whole log at once.

    A stream broken on the way is opened again (Kaggle replays it from the start; the lines already
    given are skipped), up to LOG_STREAM_RETRIES times in a row without a new line.
    """
    import requests
    from urllib3.exceptions import ProtocolError

    api = _api()
    stream = _log_method(api, "kernels_logs_stream")
    seen = failures = 0
    while True:
        before = seen
        with _calling(f"following the log of kernel {ref}", not_found=_kernel_not_found(ref)):
            try:
                for index, event in enumerate(stream(ref)):
                    if index < seen:
                        continue
                    seen = index + 1
                    data = event.get("data") if isinstance(event, dict) else None
                    if data and data != LOG_STREAM_END:
                        yield from _scrub(str(data)).rstrip("\n").splitlines() or [""]
                return
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError, ProtocolError):
                failures = failures + 1 if seen == before else 1
                if failures >= LOG_STREAM_RETRIES:
                    raise UserError(
                        f"the log stream of kernel {ref} broke {failures} times in a row without a new line: "
                        "check the network connection and try again"
                    ) from None
            except ValueError:
                raise _kernel_not_visible(ref) from None
        time.sleep(1.0)


def kernel_output(ref: str, dest_dir: str | os.PathLike, file_pattern: str | None = None) -> list[Path]:
    """Download the output files of kernel `owner/slug`'s latest run (those whose name matches the regex
    `file_pattern`, and the log) into dest_dir; return their paths."""
    api = _api()
    dest_dir = Path(dest_dir)
    with _calling(f"downloading the output of kernel {ref}", not_found=_kernel_not_found(ref)), _quiet():
        try:
            files, _ = api.kernels_output(ref, str(dest_dir), file_pattern=file_pattern, force=True, quiet=True)
        except ValueError:
            raise _kernel_not_visible(ref) from None
    return [Path(f) for f in files]


def find_credential(folder: str | os.PathLike) -> Path | None:
    """The first file under `folder` that contains a credential value of this environment, else None."""
    secrets = [secret.encode() for secret in _secrets()]
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and any(secret in path.read_bytes() for secret in secrets):
            return path
    return None
