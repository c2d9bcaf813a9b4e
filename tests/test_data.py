"""The offline mirror and CSV validation, through the real `download` command."""

from __future__ import annotations

import gzip
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kaggle_digits.data import dataset
from kaggle_digits.data import dataset as data
from kaggle_digits.errors import UserError
from tests.conftest import REPO


def test_mirror_is_faithful_and_reproducible(mirror_dir):
    X_train, y_train = data.load_train(mirror_dir / "train.csv")
    X_test = data.load_test(mirror_dir / "test.csv")
    assert X_train.shape == (42_000, 28, 28) and X_train.dtype == np.uint8
    assert X_test.shape == (28_000, 28, 28) and y_train.shape == (42_000,)
    header = (mirror_dir / "train.csv").open().readline().strip().split(",")
    assert header[:3] == ["label", "pixel0", "pixel1"] and header[-1] == "pixel783" and len(header) == 785
    assert (mirror_dir / "test.csv").open().readline().startswith("pixel0,pixel1,")
    assert (mirror_dir / "sample_submission.csv").read_text().startswith("ImageId,Label\n1,0\n")

    # 70,000 distinct images, none in both files (MNIST has no exact duplicates).
    train_keys = {img.tobytes() for img in X_train}
    test_keys = {img.tobytes() for img in X_test}
    assert len(train_keys) + len(test_keys) == 70_000 and not train_keys & test_keys

    # Every solution label is MNIST's label for that image.
    X_all, y_all = data.load_mnist(REPO / "data" / "mnist")
    label_of = {img.tobytes(): int(lab) for img, lab in zip(X_all, y_all)}
    solution = np.loadtxt(mirror_dir / "solution.csv", delimiter=",", skiprows=1, dtype=int)
    assert (solution[:, 0] == np.arange(1, 28_001)).all()
    assert all(label_of[img.tobytes()] == lab for img, lab in zip(X_test, solution[:, 1]))
    assert all(label_of[img.tobytes()] == lab for img, lab in zip(X_train, y_train))


def test_download_offline_then_idempotent_then_verify(run_cli, tmp_path, mirror_dir):
    d = tmp_path / "data"
    first = run_cli("download", "--data-dir", d)
    assert first.code == 0, first.err
    assert "offline mirror" in first.out and "42,000 rows" in first.out and "sha256" in first.out
    stamp = (d / "train.csv").stat().st_mtime_ns
    second = run_cli("download", "--data-dir", d)
    assert second.code == 0 and "already present" in second.out
    assert (d / "train.csv").stat().st_mtime_ns == stamp
    forced = run_cli("download", "--data-dir", d, "--source", "mnist", "--force")
    assert forced.code == 0 and (d / "train.csv").stat().st_mtime_ns != stamp
    for name in ("train.csv", "test.csv", "solution.csv", "sample_submission.csv"):  # every build the same bytes
        assert data.sha256(d / name) == data.sha256(mirror_dir / name), name
    verify = run_cli("download", "--data-dir", d, "--verify")
    assert verify.code == 0 and "valid" in verify.out


def _bad_train(tmp_path, mutate):
    rows = ["label," + ",".join(f"pixel{i}" for i in range(784))]
    rows += [",".join(["3"] + ["0"] * 784) for _ in range(5)]
    rows = mutate(rows)
    path = tmp_path / "data" / "train.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + ("\n" if rows else ""))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r[:3] + [r[3].replace(",0,", ",abc,", 1)] + r[4:], "line 4, column pixel0: 'abc' is not an integer"),
        (
            lambda r: r[:2] + [r[2][: r[2].rindex(",")] + ",256"] + r[3:],
            "line 3, column pixel783: '256' is not an integer 0-255",
        ),
        (lambda r: r[:5] + [r[5][: r[5].rindex(",")]] + r[6:], "line 6: has 784 values, expected 785"),
        (lambda r: r[1:], "line 1: missing header"),
        (lambda r: [], "file is empty"),
        (lambda r: r[:2] + ["10" + r[2][1:]] + r[3:], "line 3, column label: '10' is not a digit 0-9"),
        (lambda r: r[:3] + [r[3].replace(",0,", ",3.0,", 1)] + r[4:], "line 4, column pixel0: '3.0' is not an integer"),
        (lambda r: r[:4] + [r[4].replace(",0,", ",1e2,", 1)] + r[5:], "line 5, column pixel0: '1e2' is not an integer"),
        (
            lambda r: r[:2] + [r[2][: r[2].rindex(",")] + ",12345678901234567890123"] + r[3:],
            "line 3, column pixel783: '12345678901234567890... (23 characters)' is not an integer 0-255",
        ),
        (
            lambda r: r[:2] + [r[2][: r[2].rindex(",")] + ",18446744073709551615"] + r[3:],
            "line 3, column pixel783: '18446744073709551615' is not an integer 0-255",
        ),
        (lambda r: r[:5] + ["3.0" + r[5][1:]] + r[6:], "line 6, column label: '3.0' is not a digit 0-9"),
    ],
    ids=[
        "non-numeric",
        "256",
        "short-row",
        "no-header",
        "empty",
        "label-10",
        "3.0",
        "1e2",
        "23-digits",
        "uint64",
        "label-3.0",
    ],
)
def test_bad_train_csv_is_one_clear_line(run_cli, tmp_path, mutate, message):
    path = _bad_train(tmp_path, mutate)
    before = path.read_bytes()
    (tmp_path / "data" / "test.csv").write_text(
        ",".join(f"pixel{i}" for i in range(784)) + "\n" + ",".join(["0"] * 784) + "\n"
    )
    result = run_cli("download", "--data-dir", tmp_path / "data", "--verify")
    assert result.code == 2
    assert message in result.err and str(path) in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert path.read_bytes() == before


def test_a_bad_cell_far_down_is_one_line_without_a_pandas_warning(run_cli, tmp_path, recwarn):
    """pandas reads long files in chunks: a word in a later chunk gives mixed types and a DtypeWarning."""
    path = _bad_train(
        tmp_path, lambda r: r + [",".join(["3"] + ["0"] * 784)] * 1500 + [",".join(["3", "x"] + ["0"] * 783)]
    )
    (tmp_path / "data" / "test.csv").write_text(
        ",".join(f"pixel{i}" for i in range(784)) + "\n" + ",".join(["0"] * 784) + "\n"
    )
    result = run_cli("download", "--data-dir", tmp_path / "data", "--verify")
    assert result.code == 2
    assert result.err.strip().splitlines() == [f"error: {path} line 1507, column pixel0: 'x' is not an integer 0-255"]
    assert not [w for w in recwarn if "DtypeWarning" in type(w.message).__name__]


def test_a_byte_order_mark_before_the_header_is_accepted(tmp_path):
    path = _bad_train(tmp_path, lambda r: r)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    X, y = data.load_train(path)
    assert X.shape == (5, 28, 28) and list(y) == [3] * 5


def test_download_never_overwrites_user_files(run_cli, tmp_path):
    path = _bad_train(tmp_path, lambda r: r)
    before = path.read_bytes()
    result = run_cli("download", "--data-dir", tmp_path / "data", "--source", "mnist", "--force")
    assert result.code == 2 and "not written by kaggle-digits" in result.err
    assert path.read_bytes() == before


def test_unwritable_data_dir_is_one_clear_line(run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    result = run_cli("download", "--data-dir", blocker / "data")
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().splitlines() == [f"error: {blocker / 'data'}: Not a directory"]
    assert blocker.read_text() == "not a folder\n"


def test_a_full_disk_names_the_data_folder_and_writes_nothing(run_cli, tmp_path, full_disk):
    d = tmp_path / "data"
    full_disk(d)
    result = run_cli("download", "--data-dir", d)
    assert result.code == 2
    assert result.err.splitlines() == [
        f"error: {d}: the disk is full (no space left on device); nothing half-written was kept"
    ]
    assert list(d.iterdir()) == []


def test_a_file_where_a_folder_belongs_is_one_line_exit_2(run_cli, tmp_path):
    blocker = tmp_path / "file.csv"
    blocker.write_text("a,b\n")
    result = run_cli("download", "--data-dir", blocker)
    assert result.code == 2 and result.err.splitlines() == [f"error: {blocker}: is a file, expected a folder"]
    assert blocker.read_text() == "a,b\n"


def test_zip_import_validates_before_installing(run_cli, small_data, tmp_path):
    good = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(good, "w") as z:
        for name in ("train.csv", "test.csv", "sample_submission.csv"):
            z.write(small_data / name, name)
    d = tmp_path / "data"
    result = run_cli("download", "--data-dir", d, "--source", "zip", "--zip", good)
    assert result.code == 0, result.err
    assert "1,500 rows" in result.out and not (d / "solution.csv").exists()

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("train.csv", "label,pixel0\n1,2\n")
        z.writestr("test.csv", "pixel0\n1\n")
    d2 = tmp_path / "data2"
    result = run_cli("download", "--data-dir", d2, "--source", "zip", "--zip", bad)
    assert result.code == 2 and "header" in result.err
    assert not (d2 / "train.csv").exists()

    not_zip = tmp_path / "x.zip"
    not_zip.write_text("hello")
    assert "not a zip file" in run_cli("download", "--data-dir", d2, "--source", "zip", "--zip", not_zip).err


def _verify_one_line(run_cli, tmp_path, path):
    """`download --verify` on a data folder whose train.csv is `path`: exit 2 and its one stderr line."""
    (tmp_path / "data" / "test.csv").write_text(
        ",".join(f"pixel{i}" for i in range(784)) + "\n" + ",".join(["0"] * 784) + "\n"
    )
    result = run_cli("download", "--data-dir", tmp_path / "data", "--verify")
    assert result.code == 2 and "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda r: r[:3] + [r[3].replace(",0,", ",\u00a03,", 1)] + r[4:],
            r"line 4, column pixel0: '\xa03' is not an integer",
        ),
        (
            lambda r: r[:4] + [r[4].replace(",0,", ",\x00,", 1)] + r[5:],
            r"line 5, column pixel0: '\x00' is not an integer",
        ),
        (lambda r: r[:2] + ["-1" + r[2][1:]] + r[3:], "line 3, column label: '-1' is not a digit 0-9"),
        (lambda r: r[:5] + [r[5].replace(",0,", ',"0,', 1)] + r[6:], 'line 6: a quote (") that is never closed'),
    ],
    ids=["no-break-space", "nul-cell", "label-minus-1", "unclosed-quote"],
)
def test_odd_cells_are_named_at_their_line_with_the_text_escaped(run_cli, tmp_path, mutate, message):
    path = _bad_train(tmp_path, lambda r: r + [",".join(["3"] + ["0"] * 784)] * 20)
    rows = path.read_text().splitlines()
    path.write_text("\n".join(mutate(rows)) + "\n")
    line = _verify_one_line(run_cli, tmp_path, path)
    assert line.startswith(f"error: {path} ") and message in line, line
    with pytest.raises(UserError, match=re.escape(message)):
        data.load_train(path)


def test_a_file_that_is_not_text_says_so(run_cli, tmp_path):
    path = _bad_train(tmp_path, lambda r: r)
    text = path.read_bytes()
    path.write_bytes(gzip.compress(text))
    assert _verify_one_line(run_cli, tmp_path, path) == (
        f"error: {path}: not a text CSV file (gzip-compressed data; decompress it first with gunzip)"
    )
    path.write_bytes(b"\0" * 4096)
    assert _verify_one_line(run_cli, tmp_path, path) == f"error: {path}: not a text CSV file (it holds NUL bytes)"


def test_a_huge_first_line_is_refused_after_a_bounded_read(run_cli, tmp_path, monkeypatch):
    path = _bad_train(tmp_path, lambda r: r)
    # A sparse file of 256 MB (no data written): NUL bytes and no line break, as `truncate -s 2G` makes.
    with open(path, "wb") as f:
        f.truncate(1 << 28)
    # The header is read by a bounded readline: count the bytes every read of the file returns.
    returned = []
    real_open = open

    class Counted:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def __iter__(self):
            return (self._count(line) for line in self.handle)

        def _count(self, data):
            returned.append(len(data))
            return data

        def read(self, *args):
            return self._count(self.handle.read(*args))

        def readline(self, *args):
            return self._count(self.handle.readline(*args))

    def watched_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return Counted(handle) if Path(file) == path else handle

    monkeypatch.setattr(dataset, "open", watched_open, raising=False)
    assert "not a text CSV file" in _verify_one_line(run_cli, tmp_path, path)
    assert returned and sum(returned) <= dataset.MAX_HEADER_BYTES + 1
    # Text without a line break, longer than any header.
    path.write_text("label," + "0," * 40_000)
    assert f"{path} line 1: longer than 64 KB without a line break" in _verify_one_line(run_cli, tmp_path, path)
    monkeypatch.undo()
    with pytest.raises(UserError, match="line 1: longer than 64 KB"):
        data.load_train(path)


def test_the_library_names_a_folder_or_an_unreadable_file(tmp_path, monkeypatch):
    with pytest.raises(UserError, match=re.escape(f"{tmp_path}: is a folder, expected a CSV file")):
        data.load_train(tmp_path)
    path = _bad_train(tmp_path, lambda r: r)
    if os.geteuid() != 0:  # root reads a file whatever its mode
        path.chmod(0)
        try:
            with pytest.raises(UserError, match=re.escape(f"{path}: cannot read it (Permission denied)")):
                data.load_train(path)
        finally:
            path.chmod(0o644)

    def refused(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(dataset, "open", refused, raising=False)
    with pytest.raises(UserError, match=re.escape(f"{path}: cannot read it (Permission denied)")):
        data.load_train(path)
