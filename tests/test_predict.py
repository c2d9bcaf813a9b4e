"""`predict`: MNIST-style preprocessing of real digits re-rendered as user images, and the command on
folders with good and bad files, with trials and ensembles made by the real `tune` and `ensemble`."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kaggle_digits.blend import submission
from kaggle_digits.data import dataset as data
from kaggle_digits.errors import UserError
from kaggle_digits.io import read_json, write_json
from kaggle_digits.predict import predictor as predict
from kaggle_digits.search import runs
from tests.conftest import REPO, correlation_up_to_a_pixel, user_image


@pytest.fixture(scope="module")
def mnist():
    """The mirror's test-split images (never seen by a trial tuned on small_data's train rows) and labels."""
    X, y = data.load_mnist(REPO / "data" / "mnist")
    _, test_idx = data.mirror_split(len(X))
    return X[test_idx[:600]], y[test_idx[:600]]


def test_rendered_mnist_digits_come_back_as_mnist(mnist):
    X, _ = mnist
    for fmt in ("PNG", "JPEG"):
        correlations = []
        for digit in X[:100]:
            back = predict.prepare(user_image(digit, fmt))
            assert back.shape == (28, 28) and back.dtype == np.uint8
            correlations.append(correlation_up_to_a_pixel(back, digit))
            # MNIST's layout: ink fits a 20x20 box; the centre of mass is within a pixel of (14, 14).
            rows, cols = np.nonzero(back)
            assert rows.max() - rows.min() < 21 and cols.max() - cols.min() < 21
            weights = back.astype(float) / back.sum()
            centre = (weights.sum(axis=1) @ np.arange(28), weights.sum(axis=0) @ np.arange(28))
            assert abs(centre[0] - 14) <= 1.0 and abs(centre[1] - 14) <= 1.0, centre
        assert np.median(correlations) > 0.93 and min(correlations) > 0.75, (fmt, np.median(correlations))


def test_round_trip_keeps_the_label_with_a_tuned_trial(mnist, tuned_mlp, tmp_path):
    X, y = mnist
    trial = predict.TrialPredictor.load(runs.load_trial(tuned_mlp.best_trial))
    proba = trial.predict_proba(X)
    confident = np.flatnonzero((proba.argmax(axis=1) == y) & (proba.max(axis=1) > 0.9))[:20]
    assert len(confident) == 20, "the tiny trial should be sure of at least 20 of 600 digits"
    files = []
    for i in confident:
        for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg")):
            path = tmp_path / f"digit-{i}-label-{y[i]}{suffix}"
            path.write_bytes(user_image(X[i], fmt))
            files.append((path, int(y[i])))
    outcomes = predict.predict_files(trial, [p for p, _ in files])
    assert [o.error for o in outcomes] == [None] * len(files)
    assert [int(o.proba.argmax()) for o in outcomes] == [label for _, label in files]


def test_polarity_transparency_and_size_do_not_matter(mnist):
    digit = mnist[0][0]
    reference = predict.prepare(user_image(digit, "PNG"))
    light_on_dark = io.BytesIO()
    Image.eval(Image.open(io.BytesIO(user_image(digit, "PNG"))), lambda v: 255 - v).save(light_on_dark, "PNG")
    assert np.abs(predict.prepare(light_on_dark.getvalue()).astype(int) - reference).max() <= 1

    # Black strokes on a transparent sheet (what drawing apps save), drawn 10x larger.
    sheet = Image.new("RGBA", (600, 500), (0, 0, 0, 0))
    alpha = Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC)
    sheet.paste(Image.new("RGBA", (280, 280), (0, 0, 0, 255)), (40, 100), mask=alpha)
    transparent = io.BytesIO()
    sheet.save(transparent, "PNG")
    back = predict.prepare(transparent.getvalue())
    assert correlation_up_to_a_pixel(back, digit) > 0.9


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels and holds none: what a decompression bomb looks like
    to a reader that checks the size first."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_bad_images_are_one_clear_line(tmp_path):
    blank = io.BytesIO()
    Image.new("L", (64, 64), 255).save(blank, "PNG")
    faint = Image.new("L", (64, 64), 200)
    ImageDraw.Draw(faint).line([(32, 5), (32, 60)], fill=185, width=4)  # 15 grey levels: paper texture
    faint_png = io.BytesIO()
    faint.save(faint_png, "PNG")
    gif = io.BytesIO()
    Image.new("L", (64, 64), 0).save(gif, "GIF")
    huge = io.BytesIO()
    Image.new("1", (8000, 8000), 1).save(huge, "PNG")  # a few kB that would decode to 64 megapixels
    cases = {
        "blank": (blank.getvalue(), "no ink found"),
        "faint": (faint_png.getvalue(), "no ink found"),
        "gif": (gif.getvalue(), "a GIF image, expected PNG or JPEG"),
        "text": (b"ImageId,Label\n1,7\n", "not a PNG or JPEG image"),
        "truncated": (blank.getvalue()[:60], "damaged or unreadable image"),
        "empty": (b"", "empty file"),
        "huge": (huge.getvalue(), r"8000x8000 pixels is too large \(limit 50 megapixels\)"),
        # Over Pillow's own warning and error limits: still "too large", with our limit.
        "bomb": (png_header(10_000, 10_000), r"10000x10000 pixels is too large \(limit 50 megapixels\)"),
        "bigger": (png_header(20_000, 20_000), r"400,000,000 pixels is too large \(limit 50 megapixels\)"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(UserError, match=message) as caught, warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning (Pillow's DecompressionBombWarning) around the line
            predict.prepare(content, name)
        assert str(caught.value).startswith(f"{name}: ") and "\n" not in str(caught.value)
    with pytest.raises(UserError, match="file not found"):
        predict.prepare(tmp_path / "missing.png")


def test_predict_script_on_a_folder_with_good_and_bad_files(tuned_mlp, mnist, tmp_path):
    X, y = mnist
    trial = predict.TrialPredictor.load(runs.load_trial(tuned_mlp.best_trial))
    i = int(np.flatnonzero(trial.predict_proba(X).argmax(axis=1) == y)[0])
    folder = tmp_path / "my digits"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(user_image(X[i], "JPEG"))
    Image.new("RGB", (300, 200), "white").save(folder / "white.png")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "poster.png").write_bytes(png_header(10_000, 10_000))  # over Pillow's warning limit
    done = subprocess.run(
        [sys.executable, "scripts/predict.py", str(folder), "--trial", str(tuned_mlp.best_trial)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    errors = done.stderr.strip().splitlines()
    assert errors == [
        f"error: {folder / 'notes.txt'}: not a PNG or JPEG image",
        f"error: {folder / 'poster.png'}: 10000x10000 pixels is too large (limit 50 megapixels)",
        f"error: {folder / 'white.png'}: no ink found (a blank image, or strokes too faint to tell from the paper)",
    ]
    predictions = [line for line in done.stdout.splitlines() if "top-3:" in line]
    assert len(predictions) == 1 and predictions[0].startswith(f"{folder / 'good.jpg'}: {y[i]}    top-3: {y[i]} ")
    assert f"predictor: trial {tuned_mlp.best_trial} (mlp, 2 fold models" in done.stdout
    assert "predicted 1 of 4 files; 3 failed" in done.stdout


def test_default_predictor_is_the_newest_ensemble_then_the_best_trial(tuned_mlp, mnist, tmp_path, run_cli):
    X, y = mnist
    image = tmp_path / "seven.png"
    image.write_bytes(user_image(X[int(np.flatnonzero(y == 7)[0])], "PNG"))

    with_ensemble = run_cli("predict", image, *tuned_mlp.folders())
    assert with_ensemble.code == 0, with_ensemble.err
    assert f"predictor: ensemble {tuned_mlp.ensemble_json} (" in with_ensemble.out

    empty_subs = tmp_path / "no-submissions"
    best_trial = run_cli("predict", image, "--runs-dir", tuned_mlp.runs_dir, "--submissions-dir", empty_subs)
    assert best_trial.code == 0, best_trial.err
    assert f"predictor: trial {tuned_mlp.best_trial} (" in best_trial.out

    nothing = run_cli("predict", image, "--runs-dir", tmp_path / "no-runs", "--submissions-dir", empty_subs)
    assert nothing.code == 2 and nothing.out == ""
    assert nothing.err.startswith("error: no model to predict with:") and "python scripts/tune.py" in nothing.err
    assert len(nothing.err.strip().splitlines()) == 1


def test_trial_and_ensemble_predictors_reproduce_what_tune_and_ensemble_wrote(tuned_mlp):
    """A trial's fold models averaged give its test.npy; the ensemble's .json loaded as one predictor
    gives exactly the labels of the submission it was written beside."""
    X_test = data.load_test(tuned_mlp.data_dir / "test.csv")
    trial = runs.load_trial(tuned_mlp.best_trial)
    predictor = predict.TrialPredictor.load(trial)
    assert len(predictor.fold_models) == 2
    np.testing.assert_allclose(predictor.predict_proba(X_test), trial.test_proba, atol=1e-5)

    ensemble = predict.load_ensemble(tuned_mlp.ensemble_json, tuned_mlp.runs_dir)
    labels = ensemble.predict_proba(X_test).argmax(axis=1)
    submitted = submission.read_submission(tuned_mlp.ensemble_json.with_suffix(".csv"))
    assert (labels == submitted).all()
    assert ensemble.describe()["members"] == [m.name for m in ensemble.members]


def test_moved_runs_folder_bad_trial_and_bad_ensemble_are_one_line(tuned_mlp, tmp_path, run_cli):
    image = tmp_path / "x.png"
    Image.new("L", (40, 40), 255).save(image)
    not_trial = run_cli("predict", image, "--trial", tmp_path)
    assert not_trial.code == 2 and "not a finished trial folder" in not_trial.err

    no_models = tmp_path / "runs" / "s" / "trial-0"
    no_models.mkdir(parents=True)
    for name in ("params.json", "metrics.json"):
        (no_models / name).write_bytes((tuned_mlp.best_trial / name).read_bytes())
    bare = run_cli("predict", image, "--trial", no_models)
    assert bare.code == 2 and "no saved fold models" in bare.err

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    for path, message in ((garbage, "not a JSON file"), (tmp_path / "none.json", "file not found")):
        result = run_cli("predict", image, "--ensemble", path)
        assert result.code == 2 and message in result.err and len(result.err.splitlines()) == 1

    # A manifest whose recorded trial folders are gone still loads from --runs-dir by trial name...
    moved = tmp_path / "moved.json"
    manifest = read_json(tuned_mlp.ensemble_json)
    for item in manifest["constituents"]:
        item["path"] = str(tmp_path / "gone" / item["name"])
    write_json(moved, manifest)
    assert predict.load_ensemble(moved, tuned_mlp.runs_dir).members
    # ...and without them, the line names the constituent and where it looked.
    lost = run_cli("predict", image, "--ensemble", moved, "--runs-dir", tmp_path / "elsewhere")
    assert lost.code == 2 and "constituent mlp/trial-" in lost.err and "--runs-dir" in lost.err


def test_show_writes_one_png_atomically(tuned_mlp, mnist, tmp_path, run_cli):
    X, _ = mnist
    (tmp_path / "a.png").write_bytes(user_image(X[0], "PNG"))
    (tmp_path / "b.jpg").write_bytes(user_image(X[1], "JPEG"))
    out = tmp_path / "report" / "show.png"
    started = time.time()
    result = run_cli("predict", tmp_path / "a.png", tmp_path / "b.jpg", "--show", out, *tuned_mlp.folders())
    assert result.code == 0, result.err
    assert result.out.strip().endswith(f"wrote {out}")
    with Image.open(out) as shown:
        assert shown.format == "PNG" and shown.size[0] >= 600 and shown.size[1] >= 200  # two files side by side
    assert os.listdir(out.parent) == ["show.png"] and out.stat().st_mtime >= started - 1


def _png_info(path) -> tuple[tuple[int, int], dict]:
    with Image.open(path) as image:
        return image.size, dict(image.info)


def test_show_and_explain_lay_many_files_out_in_pages_of_at_most_25(tuned_mlp, mnist, tmp_path, run_cli):
    X, _ = mnist
    folder = tmp_path / "digits"
    folder.mkdir()
    for i in range(27):
        (folder / f"d{i:02d}.png").write_bytes(user_image(X[i], "PNG"))
    (folder / "notes.txt").write_text("not an image")
    show, explain = tmp_path / "out" / "show.png", tmp_path / "out" / "explain.png"
    result = run_cli("predict", folder, "--show", show, "--explain", explain, *tuned_mlp.folders())
    assert result.code == 2  # notes.txt failed; the 27 digits were still predicted and drawn
    pages = sorted(p.name for p in show.parent.iterdir())
    assert pages == ["explain-1.png", "explain-2.png", "show-1.png", "show-2.png"]
    assert f"wrote 2 pages: {show.parent / 'show-1.png'} ... {show.parent / 'show-2.png'}" in result.out
    for name in pages:
        (width, height), info = _png_info(show.parent / name)
        # At most a 5 x 5 grid: wider than tall, nothing like one 19,000-pixel column.
        assert height <= 1400 and height < width <= 3000, (name, width, height)
        if name.endswith("-1.png"):  # 25 files, 5 x 5
            assert width >= 1500 and height >= 800, (name, width, height)
        assert info.get("Written-By") == "kaggle-digits predict"
    # Written again over its own pages: allowed.
    again = run_cli("predict", folder / "d00.png", "--explain", explain, *tuned_mlp.folders())
    assert again.code == 0 and again.out.strip().endswith(f"wrote {explain}")


def test_explain_draws_the_maps_of_the_top_two_digits(tuned_mlp, mnist, tmp_path, run_cli):
    from kaggle_digits.predict import attribution

    X, _ = mnist
    (tmp_path / "a.png").write_bytes(user_image(X[0], "PNG"))
    predictor = predict.load_predictor(tuned_mlp.runs_dir, tuned_mlp.submissions_dir, trial=tuned_mlp.best_trial)
    outcomes = predict.predict_files(predictor, [tmp_path / "a.png"])
    assert predict.explain_outcomes(predictor, outcomes) == "occlusion"
    (outcome,) = outcomes
    assert outcome.maps.shape == (2, 28, 28)
    assert list(outcome.map_classes) == [d for d, _ in predict.top_k(outcome.proba, 2)]
    expected = attribution.explain(predictor, outcome.digit[np.newaxis], outcome.map_classes[:1]).maps[0]
    np.testing.assert_allclose(outcome.maps[0], expected, rtol=1e-4, atol=1e-6)
    out = tmp_path / "explain.png"
    result = run_cli("predict", tmp_path / "a.png", "--explain", out, "--trial", tuned_mlp.best_trial)
    assert result.code == 0, result.err
    (width, height), _ = _png_info(out)
    assert width >= 400 and height >= 150


def test_show_never_replaces_an_input_or_a_file_it_did_not_write(tuned_mlp, mnist, tmp_path, run_cli):
    X, _ = mnist
    image = tmp_path / "seven.png"
    image.write_bytes(user_image(X[0], "PNG"))
    original = image.read_bytes()
    mine = tmp_path / "holiday.png"
    Image.new("RGB", (40, 30), "orange").save(mine)
    mine_bytes = mine.read_bytes()
    (tmp_path / "folder.png").mkdir()
    cases = [
        (["--show", image], f"error: --show {image}: {image} is one of the input images; choose another file name"),
        (["--explain", image], f"error: --explain {image}: {image} is one of the input images"),
        (["--show", mine], f"error: --show {mine}: {mine} exists and was not written by kaggle-digits; choose"),
        (["--show", tmp_path / "folder.png"], f"error: --show {tmp_path / 'folder.png'}: is a folder"),
        (["--show", tmp_path / "x.png", "--explain", tmp_path / "x.png"], "error: --show and --explain name the same"),
    ]
    for options, message in cases:
        result = run_cli("predict", image, *options, *tuned_mlp.folders())
        assert result.code == 2 and result.err.startswith(message), (options, result.err)
        assert len(result.err.strip().splitlines()) == 1 and "predictor:" not in result.out  # refused first
    # The same file by another path (a symbolic link to the input) is still the input.
    link = tmp_path / "link.png"
    link.symlink_to(image)
    result = run_cli("predict", image, "--show", link, *tuned_mlp.folders())
    assert result.code == 2 and "is one of the input images" in result.err
    assert image.read_bytes() == original and mine.read_bytes() == mine_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png", "holiday.png", "link.png", "seven.png"]


def test_show_given_a_folder_is_one_line_naming_it(tuned_mlp, mnist, tmp_path, run_cli):
    X, _ = mnist
    (tmp_path / "a.png").write_bytes(user_image(X[0], "PNG"))
    folder = tmp_path / "figures"
    folder.mkdir()
    result = run_cli("predict", tmp_path / "a.png", "--show", folder, *tuned_mlp.folders())
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert result.err.startswith(f"error: --show {folder}: is a folder, expected a file name")
    assert os.listdir(folder) == [] and os.listdir(tmp_path).count("figures") == 1


def test_show_writes_the_format_its_suffix_names_and_later_runs_leave_its_pages_out(
    tuned_mlp, mnist, tmp_path, run_cli
):
    X, _ = mnist
    folder = tmp_path / "digits"
    folder.mkdir()
    (folder / "a.png").write_bytes(user_image(X[0], "PNG"))
    (folder / "photo.jpg").write_bytes(user_image(X[1], "JPEG"))  # the user's own JPEG: always an input
    first = run_cli("predict", folder, "--show", folder / "out.jpg", *tuned_mlp.folders())
    assert first.code == 0, first.err
    with Image.open(folder / "out.jpg") as page:
        assert page.format == "JPEG"
    # A second run over the same folder: its own earlier page is left out (and said so), not refused.
    second = run_cli("predict", folder, "--show", folder / "out.png", *tuned_mlp.folders())
    assert second.code == 0, second.err
    assert f"left out {folder / 'out.jpg'} that predict wrote earlier" in second.out
    assert "predicted 2 of 2 files" in second.out and f"{folder / 'photo.jpg'}:" in second.out
    with Image.open(folder / "out.png") as page:
        assert page.format == "PNG"
    third = run_cli("predict", folder, "--show", folder / "out.png", *tuned_mlp.folders())
    assert third.code == 0 and "left out 2 pages:" in third.out and "predicted 2 of 2 files" in third.out
    before = sorted(os.listdir(folder))
    for show, message in [
        (folder / "out.txt", f"error: --show {folder / 'out.txt'}: a page is written as .png, .jpg, .pdf or .svg"),
        (f"{tmp_path / 'newfolder'}/", f"error: --show {tmp_path / 'newfolder'}/: is a folder, expected a file name"),
    ]:
        result = run_cli("predict", folder / "a.png", "--show", show, *tuned_mlp.folders())
        assert result.code == 2 and result.err.startswith(message) and len(result.err.splitlines()) == 1, result.err
    assert sorted(os.listdir(folder)) == before and not (tmp_path / "newfolder").exists()


def test_keras_small_batches_predict_like_large_ones(small_data):
    """A drawing is one image: the Keras families' fast one-batch path must give what model.predict gives."""
    from kaggle_digits import models

    X, y = data.load_train(small_data / "train.csv")
    spec = models.get("dense")
    model = spec.fit(spec.default_params(False), X[:500], y[:500], max_epochs=1, verbose=False).model
    many = np.concatenate([X, X])[:1100]  # more than one prediction batch: the model.predict path
    everything = spec.predict_proba(model, many)
    for rows in (slice(0, 1), slice(3, 10), slice(0, 1024)):
        np.testing.assert_allclose(spec.predict_proba(model, many[rows]), everything[rows], atol=1e-5)
    assert everything.shape == (1100, 10) and everything.dtype == np.float32
