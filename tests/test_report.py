"""The report command: every figure a valid PNG listed in index.html; missing inputs skip with a reason."""

from __future__ import annotations

import re
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 8_000  # an empty 8x5-inch figure is ~5 kB; every real plot here is well above


def _png_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.png"))


def _check_pngs(out: Path) -> list[str]:
    """Every PNG in `out` is a real, non-trivial PNG, and index.html shows each one (and no other)."""
    names = _png_files(out)
    for name in names:
        raw = (out / name).read_bytes()
        assert raw.startswith(PNG_SIGNATURE), name
        assert len(raw) > MIN_PNG_BYTES, (name, len(raw))
        width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
        assert width > 300 and height > 150, (name, width, height)
    page = (out / "index.html").read_text()
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == names
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    return names


def _folders(tmp_path: Path, data_dir: Path) -> list[str]:
    return [
        "--data-dir",
        str(data_dir),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--submissions-dir",
        str(tmp_path / "submissions"),
        "--reports-dir",
        str(tmp_path / "reports"),
    ]


def test_data_only_report_skips_the_rest_with_reasons(run_cli, small_data, tmp_path):
    out = tmp_path / "reports" / "first"
    result = run_cli("report", *_folders(tmp_path, small_data), "--out", out)
    assert result.code == 0, result.err
    assert _check_pngs(out) == ["data-classes.png", "data-means.png", "data-samples.png"]
    assert "data: 3 figure(s)" in result.out
    assert re.search(r"training: skipped: no study in .*runs: run `python scripts/tune.py", result.out)
    assert re.search(r"tuning: skipped: no Optuna storage at .*optuna.db", result.out)
    assert re.search(r"ensemble: skipped: no ensemble submission in .*submissions", result.out)
    assert f"open {out / 'index.html'}" in result.out
    page = (out / "index.html").read_text()
    assert "1,500" in page and "Skipped: no Optuna storage" in page
    # Reading a missing SQLite storage must not create one.
    assert not (tmp_path / "runs" / "optuna.db").exists()


def test_default_out_folder_is_timestamped_under_reports_dir(run_cli, small_data, tmp_path):
    result = run_cli("report", *_folders(tmp_path, small_data))
    assert result.code == 0, result.err
    (folder,) = (tmp_path / "reports").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}", folder.name)
    assert f"open {folder / 'index.html'}" in result.out


def test_missing_everything_skips_every_section_exit_0(run_cli, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "report",
        *_folders(tmp_path, tmp_path / "nodata"),
        "--studies",
        "cnn",
        "--submission",
        tmp_path / "missing.csv",
        "--storage",
        "sqlite:///" + str(tmp_path / "none.db"),
        "--out",
        out,
    )
    assert result.code == 0, result.err
    assert "Traceback" not in result.out + result.err
    assert re.search(r"data: skipped: .*nodata/train.csv not found: run `python scripts/download.py`", result.out)
    assert re.search(r"study cnn: no folder .*runs/cnn", result.out)
    assert re.search(r"ensemble: skipped: --submission .*missing.csv: file not found", result.out)
    assert re.search(r"tuning: skipped: no Optuna storage at .*none.db", result.out)
    assert _png_files(out) == []
    assert "Skipped:" in (out / "index.html").read_text()


def test_unreachable_storage_is_a_reason_not_a_traceback(run_cli, small_data, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "report",
        *_folders(tmp_path, small_data),
        "--storage",
        "postgresql+psycopg2://user:secret@127.0.0.1:9/none",
        "--out",
        out,
    )
    assert result.code == 0, result.err
    assert re.search(r"tuning: skipped: cannot open Optuna storage postgresql\+psycopg2://user:\*\*\*@", result.out)
    assert "secret" not in result.out + (out / "index.html").read_text()


def test_out_that_is_a_file_is_a_user_error(run_cli, small_data, tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    result = run_cli("report", *_folders(tmp_path, small_data), "--out", target)
    assert result.code == 2 and "is not a folder" in result.err
    assert target.read_text() == "mine"
