"""`download --source kaggle|auto` with the real `kaggle` client against the fake Kaggle server."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kaggle_digits.data import dataset as data
from kaggle_digits.kaggle.api import RULES_URL
from tests.conftest import assert_one_line_error, plant_kaggle_json


def test_auto_uses_kaggle_when_credentials_exist(run_cli, fake_kaggle, small_data, tmp_path):
    fake_kaggle.set_competition_files(small_data)
    d = tmp_path / "data"
    result = run_cli("download", "--data-dir", d)
    assert result.code == 0, result.err
    assert "Kaggle API" in result.out and "source: kaggle" in result.out
    X, y = data.load_train(d / "train.csv")
    assert X.shape == (1500, 28, 28)
    assert data.sha256(d / "test.csv") == data.sha256(small_data / "test.csv")
    assert (d / "digit-recognizer.zip").is_file(), "the zip is kept"
    assert not (d / "solution.csv").exists(), "Kaggle's files come without test labels"
    assert [p.name for p in d.iterdir() if p.name.startswith(".kaggle-download")] == []
    (call,) = fake_kaggle.calls("DownloadDataFiles")
    assert call.body == {"competitionName": "digit-recognizer"} and call.authorized
    assert fake_kaggle.key not in result.out + result.err

    # Present and valid: nothing is fetched again; --force downloads again.
    again = run_cli("download", "--data-dir", d, "--source", "kaggle")
    assert again.code == 0 and "already present" in again.out
    assert len(fake_kaggle.calls("DownloadDataFiles")) == 1
    forced = run_cli("download", "--data-dir", d, "--source", "kaggle", "--force")
    assert forced.code == 0, forced.err
    assert len(fake_kaggle.calls("DownloadDataFiles")) == 2


def test_bad_credentials_401(run_cli, fake_kaggle, small_data, tmp_path):
    fake_kaggle.set_competition_files(small_data)
    wrong_key = "kd-wrong-key-77aa99bb"
    plant_kaggle_json(fake_kaggle.username, wrong_key)
    d = tmp_path / "data"
    result = run_cli("download", "--data-dir", d, "--source", "kaggle")
    assert_one_line_error(result, "401", "kaggle.json")
    assert wrong_key not in result.out + result.err
    assert not d.exists() or list(d.iterdir()) == []


def test_rules_not_accepted_403(run_cli, fake_kaggle, small_data, tmp_path):
    fake_kaggle.set_competition_files(small_data)
    fake_kaggle.fail(403, "You must accept this competition's rules before you can continue", "DownloadDataFiles")
    d = tmp_path / "data"
    result = run_cli("download", "--data-dir", d, "--source", "kaggle")
    assert_one_line_error(result, "403", RULES_URL)
    assert fake_kaggle.key not in result.out + result.err
    assert not d.exists() or list(d.iterdir()) == []


def test_kaggle_unreachable_keeps_existing_files(run_cli, fake_kaggle, small_data, tmp_path):
    # Files from an earlier download stay as they were when a forced download cannot reach Kaggle.
    fake_kaggle.set_competition_files(small_data)
    d = tmp_path / "data"
    assert run_cli("download", "--data-dir", d, "--source", "kaggle").code == 0
    before = {p.name: data.sha256(p) for p in d.iterdir() if p.is_file()}
    fake_kaggle.stop()
    result = run_cli("download", "--data-dir", d, "--source", "kaggle", "--force")
    assert_one_line_error(result, "cannot reach Kaggle", "network")
    assert {p.name: data.sha256(p) for p in d.iterdir() if p.is_file()} == before
    assert not [p for p in d.iterdir() if p.is_dir()], "no staging folder left behind"


def test_server_error_is_one_line(run_cli, fake_kaggle, tmp_path):
    fake_kaggle.fail(500, "Internal error", "DownloadDataFiles")
    result = run_cli("download", "--data-dir", tmp_path / "data", "--source", "kaggle")
    assert_one_line_error(result, "500")


def test_no_credentials_names_the_places(run_cli, tmp_path):
    result = run_cli("download", "--data-dir", tmp_path / "data", "--source", "kaggle")
    assert_one_line_error(result, "no Kaggle credentials", "KAGGLE_API_TOKEN", "kaggle.json", "access_token")


def test_incomplete_kaggle_json(run_cli, tmp_path):
    (Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json").write_text(json.dumps({"username": "x"}))
    result = run_cli("download", "--data-dir", tmp_path / "data", "--source", "kaggle")
    assert_one_line_error(result, "kaggle.json", "not usable")
