"""Kaggle's daily submission limit: `submit` asks how many submissions remain before uploading, stops
with none left, says so in one line when the limits cannot be read, and `--list` shows the count.
The real `kaggle` client talks to the fake Kaggle server."""

from __future__ import annotations

import importlib
from datetime import datetime, timezone

import pytest

from kaggle_digits.blend import submission
from kaggle_digits.kaggle import api as kaggle_api
from tests.conftest import assert_one_line_error, common

UPLOAD_ROUTES = ("StartSubmissionUpload", "upload", "CreateSubmission")


def assert_nothing_uploaded(fake) -> None:
    for route in UPLOAD_ROUTES:
        assert fake.calls(route) == [], f"{route} was called"


def test_remaining_count_is_asked_and_printed_before_the_upload(run_cli, fake_kaggle, folders):  # noqa: F811
    fake_kaggle.submitted_earlier_today = 2
    _, _, path = folders
    result = run_cli("submit", path, "-m", "third today", *common(folders))
    assert result.code == 0, result.err
    assert result.err == ""
    lines = result.out.splitlines()
    left = next(i for i, line in enumerate(lines) if line.startswith("submissions left today:"))
    assert lines[left] == "submissions left today: 3 (2 made since 00:00 UTC)"
    assert left < next(i for i, line in enumerate(lines) if line.startswith("uploading"))

    # What the client sent: one authorized call for this competition, before the upload started.
    (asked,) = fake_kaggle.calls("GetSubmissionLimits")
    assert asked.path == "/v1/competitions.CompetitionApiService/GetSubmissionLimits"
    assert asked.body == {"competitionName": "digit-recognizer"} and asked.authorized
    routes = [r.route for r in fake_kaggle.requests]
    assert routes.index("GetSubmissionLimits") < routes.index("StartSubmissionUpload")
    assert len(fake_kaggle.submissions) == 1


@pytest.mark.parametrize("lifetime_cap", [False, True], ids=["daily", "lifetime"])
def test_none_left_uploads_nothing(run_cli, fake_kaggle, folders, lifetime_cap):  # noqa: F811
    _, subs, path = folders
    if lifetime_cap:
        fake_kaggle.limited_by_total, fake_kaggle.submitted_earlier_today = True, 1
    else:
        fake_kaggle.submitted_earlier_today = fake_kaggle.daily_limit
    result = run_cli("submit", path, "-m", "one too many", "--wait", *common(folders))
    if lifetime_cap:
        assert_one_line_error(result, "no submissions left", "lifetime cap", "nothing was uploaded")
        assert "00:00 UTC" not in result.err
    else:
        assert_one_line_error(result, "no submissions left", "daily limit", "5 made", "resets at 00:00 UTC, in ")
        assert "nothing was uploaded" in result.err
    assert len(fake_kaggle.calls("GetSubmissionLimits")) == 1
    assert_nothing_uploaded(fake_kaggle)
    assert fake_kaggle.calls("ListSubmissions") == []
    assert not (subs / "history.csv").exists(), "nothing was submitted, so nothing is recorded"


@pytest.mark.parametrize(
    "breakage, reason",
    [
        (lambda fake: fake.fail(500, "limits service down", "GetSubmissionLimits"), "Kaggle answered 500"),
        (lambda fake: fake.fail(404, "no such method", "GetSubmissionLimits"), "Kaggle answered 404"),
    ],
    ids=["500", "404"],
)
def test_limits_route_failing_says_so_and_uploads(run_cli, fake_kaggle, folders, breakage, reason):  # noqa: F811
    _, subs, path = folders
    breakage(fake_kaggle)
    result = run_cli("submit", path, "-m", "anyway", *common(folders))
    assert result.code == 0, result.err
    assert result.err == ""
    (line,) = [line for line in result.out.splitlines() if line.startswith("submissions left today")]
    assert line == f"submissions left today: unknown ({reason})"
    assert len(fake_kaggle.calls("CreateSubmission")) == 1
    assert len(submission.read_history(subs / "history.csv")) == 1


def test_older_client_without_the_method(run_cli, fake_kaggle, folders, monkeypatch):  # noqa: F811
    # The client before 2.2.4 has no competition_get_submission_limits. (`kaggle.api` is an instance,
    # so the module is found by name; importing it now is safe: the fixture has planted credentials.)
    client = importlib.import_module("kaggle.api.kaggle_api_extended")
    monkeypatch.delattr(client.KaggleApi, "competition_get_submission_limits")
    _, _, path = folders
    result = run_cli("submit", path, "-m", "old client", *common(folders))
    assert result.code == 0, result.err
    assert f"submissions left today: unknown (the installed kaggle client {kaggle_api.client_version()}" in result.out
    assert "2.2.4+ can" in result.out
    assert fake_kaggle.calls("GetSubmissionLimits") == []
    assert len(fake_kaggle.calls("CreateSubmission")) == 1
    listed = run_cli("submit", "--list")
    assert listed.code == 0 and "submissions left today: unknown" in listed.out


def test_account_without_a_team_is_not_blocked(run_cli, fake_kaggle, folders):  # noqa: F811
    # Before an account's first submission Kaggle answers all zeros: that is no count, not a limit of 0.
    fake_kaggle.on_team = False
    _, _, path = folders
    result = run_cli("submit", path, "-m", "first ever", *common(folders))
    assert result.code == 0, result.err
    assert "submissions left today: not counted yet" in result.out
    assert len(fake_kaggle.calls("CreateSubmission")) == 1


def test_list_shows_the_remaining_count_above_the_table(run_cli, fake_kaggle, folders):  # noqa: F811
    _, _, path = folders
    assert run_cli("submit", path, "-m", "first", *common(folders)).code == 0
    listed = run_cli("submit", "--list")
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0] == "submissions left today: 4 (1 made since 00:00 UTC)"
    assert lines[1].startswith("date (UTC)") and "first" in lines[2]

    fake_kaggle.submitted_earlier_today = fake_kaggle.daily_limit
    full = run_cli("submit", "--list")
    assert full.code == 0, full.err
    assert full.out.splitlines()[0].startswith("submissions left today: 0 (6 made since 00:00 UTC; Kaggle's daily")

    fake_kaggle.fail(503, "busy", "GetSubmissionLimits")
    unknown = run_cli("submit", "--list")
    assert unknown.code == 0 and unknown.out.splitlines()[0] == "submissions left today: unknown (Kaggle answered 503)"


def test_refused_credentials_stay_one_error_line(run_cli, fake_kaggle, folders):  # noqa: F811
    # A 401 on the limits route is the credentials' fault: the same one line as for an upload, no upload.
    fake_kaggle.fail(401, "Unauthenticated", "GetSubmissionLimits")
    _, _, path = folders
    assert_one_line_error(run_cli("submit", path, "-m", "x", *common(folders)), "401", "kaggle.json")
    assert_nothing_uploaded(fake_kaggle)


def test_next_daily_reset_is_the_next_utc_midnight():
    late = datetime(2026, 12, 31, 23, 59, 30, tzinfo=timezone.utc)
    assert kaggle_api.next_daily_reset(late) == datetime(2027, 1, 1, tzinfo=timezone.utc)
    midnight = datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert kaggle_api.next_daily_reset(midnight) == datetime(2026, 3, 2, tzinfo=timezone.utc)


def test_setup_cfg_gives_each_python_its_client():
    # Access tokens and the submission count need the 2.x client, which needs Python >= 3.11.
    import configparser
    from pathlib import Path

    from packaging.requirements import Requirement

    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[1] / "setup.cfg")
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines()]
    kaggle = [Requirement(line) for line in lines if line.startswith("kaggle")]
    for python, allowed, refused in (
        ("3.10", "1.7.4.5", "2.2.5"),
        ("3.11", "2.2.5", "2.2.3"),
        ("3.13", "2.2.4", "1.7.4.5"),
    ):
        (chosen,) = [r for r in kaggle if r.marker.evaluate({"python_version": python})]
        assert chosen.specifier.contains(allowed) and not chosen.specifier.contains(refused), (python, chosen)
