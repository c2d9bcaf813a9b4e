"""Optuna artifact stores (`tune --artifacts DIR|s3://BUCKET`): opening one, uploading a finished trial's
files, and the files a trial uploaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from kaggle_digits.errors import UserError
from kaggle_digits.search import runs
from kaggle_digits.search.storage import _first_line

ARTIFACTS_ATTR = "artifact_store"  # trial user attr: where its files were uploaded (--artifacts)


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


def artifact_ids(trial: FrozenTrial) -> dict[str, str]:
    """file name -> artifact id of the files uploaded for `trial` (from Optuna's artifact metadata)."""
    import json

    found = {}
    for key, value in trial.system_attrs.items():
        if key.startswith("artifacts:"):
            meta = json.loads(value)
            found[meta["filename"]] = meta["artifact_id"]
    return found
