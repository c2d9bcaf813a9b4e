"""The finished trials of a study wherever their files live, for the ensemble and the report.

A trial's files are in `runs/<study>/trial-<n>/` on the machine that ran it (its `path` user attr), and
also in an Optuna artifact store when tune ran with `--artifacts` (a directory, or `s3://bucket`).
`list_trials` finds them: the folder itself where it is reachable (same machine, or --runs-dir on a
shared filesystem), else a copy downloaded from the artifact store into
`<runs-dir>/.cache/<study>/trial-<n>/`. Without a storage, the trial folders under the runs folder
(`runs.list_trials`).
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from kaggle_digits.errors import UserError
from kaggle_digits.io import read_json, write_json
from kaggle_digits.progress import Log, silent
from kaggle_digits.search import runs
from kaggle_digits.search.artifacts import ARTIFACTS_ATTR, ArtifactStore, artifact_ids, open_artifact_store
from kaggle_digits.search.storage import (
    PATH_ATTR,
    STUDY_ATTR,
    WORKER_ATTR,
    _first_line,
    display_url,
    open_storage,
    storage_errors,
    study_names,
)

CACHE_DIR = ".cache"  # under runs-dir: trials downloaded from an artifact store (never a study name)
ARTIFACTS_MANIFEST = "artifacts.json"  # in a cached trial folder, written last: {file name: artifact id}


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
            done.sort(key=lambda t: (-(t.value or 0.0), t.number))
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
    ids = artifact_ids(frozen)
    location = frozen.user_attrs.get(ARTIFACTS_ATTR)
    if ids and (store is not None or location):
        if store is None:
            try:
                store = open_artifact_store(str(location))
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
