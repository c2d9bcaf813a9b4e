"""Photos of digits on paper (tests/photos.py): under uneven light, `prepare` gives the 28x28 digit it gives
under even light, with no stripe of paper taken for ink; ruled lines and specks are left out."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kaggle_digits.data import dataset as data
from kaggle_digits.errors import UserError
from kaggle_digits.predict import predictor as predict
from kaggle_digits.search import runs
from tests import photos
from tests.conftest import REPO, correlation_up_to_a_pixel

N_PHOTOS = 60


@pytest.fixture(scope="module")
def photo_set():
    """60 photos of 60 different mirror test digits (never trained on), each evenly and unevenly lit,
    with what `prepare` makes of both."""
    X, y = data.load_mnist(REPO / "data" / "mnist")
    _, test_idx = data.mirror_split(len(X))
    rows = test_idx[1000 : 1000 + N_PHOTOS]
    shots = photos.photo_set(X[rows], y[rows], seed=0)
    even = np.stack([predict.prepare(photos.render(p, even=True)) for p in shots])
    uneven = np.stack([predict.prepare(photos.render(p)) for p in shots])
    return shots, even, uneven


def test_the_set_mixes_every_effect(photo_set):
    shots, _, _ = photo_set
    assert len({p.label for p in shots}) == 10 and len({p.digit.tobytes() for p in shots}) == N_PHOTOS
    assert 15 <= sum(p.shadow for p in shots) <= 45 and 10 <= sum(p.ruled for p in shots) <= 40
    quadrants = {int(p.gradient_angle // (np.pi / 2)) for p in shots}
    assert quadrants == {0, 1, 2, 3}, "light falling off toward every side"
    assert min(p.gradient_strength for p in shots) < 0.4 < 0.65 < max(p.gradient_strength for p in shots)
    # The lighting is uneven indeed: along the border (all paper), a good part of the gradient shows.
    for p in shots[:10]:
        page = np.asarray(Image.open(io.BytesIO(photos.render(p))).convert("L"), dtype=float)
        border = np.concatenate([page[0], page[-1], page[:, 0], page[:, -1]])
        spread = np.percentile(border, 95) - np.percentile(border, 5)
        assert spread > 0.5 * 255 * photos.PAPER * p.gradient_strength, p.describe()


def test_uneven_light_gives_the_digit_even_light_gives(photo_set):
    shots, even, uneven = photo_set
    correlations = np.array([correlation_up_to_a_pixel(u, e) for u, e in zip(uneven, even)])
    worst = int(np.argmin(correlations))
    assert correlations.min() > 0.6, (correlations.min(), shots[worst].describe())
    assert np.median(correlations) > 0.97
    for p, u, e in zip(shots, uneven, even):
        # No stripe: the outermost rows and columns hold no more ink than under even light (a digit that
        # fills its 20x20 box may touch the field's edge in both).
        for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
            assert u[edge].sum() <= e[edge].sum() + 2 * 255, (p.describe(), edge)
        # The digit is not shrunk: its ink box is as large as under even light, within three pixels of 20.
        assert np.subtract(_ink_box(u), _ink_box(e)).min() >= -3, p.describe()


def _ink_box(digit: np.ndarray) -> tuple[int, int]:
    """Height and width of the box around the pixels above a quarter of full ink."""
    rows, cols = np.nonzero(digit > 64)
    return int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1


def test_a_tuned_trial_reads_uneven_light_as_well_as_even_light(photo_set, tuned_mlp):
    shots, even, uneven = photo_set
    trial = predict.TrialPredictor.load(runs.load_trial(tuned_mlp.best_trial))
    labels = np.array([p.label for p in shots])
    on_even = trial.predict_proba(even).argmax(axis=1)
    on_uneven = trial.predict_proba(uneven).argmax(axis=1)
    assert (on_even == labels).mean() > 0.6, "the tiny trial should read most evenly lit photos"
    assert (on_uneven == labels).mean() >= (on_even == labels).mean() - 0.05
    assert (on_uneven == on_even).mean() >= 0.9


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_ruled_lines_and_specks_are_left_out(photo_set):
    shots, _, _ = photo_set
    plain = [p for p in shots if not p.ruled][:10]
    for p in plain:
        reference = predict.prepare(photos.render(p, even=True))
        ruled = dataclasses.replace(p, ruled=True, line_darkness=0.5)  # darker lines than notebooks have
        page = Image.open(io.BytesIO(photos.render(ruled))).convert("L")
        # A speck of ink in a corner, away from the digit.
        height, width = p.size
        top, left = p.top_left
        corner_x = 8 if left > width - left - p.digit_side else width - 16
        corner_y = 8 if top > height - top - p.digit_side else height - 16
        ImageDraw.Draw(page).ellipse([corner_x, corner_y, corner_x + 6, corner_y + 6], fill=20)
        back = predict.prepare(_jpeg(np.asarray(page)))
        assert correlation_up_to_a_pixel(back, reference) > 0.8, p.describe()
        assert np.abs(np.subtract(_ink_box(back), _ink_box(reference))).max() <= 2, p.describe()


def test_a_page_of_lines_without_a_digit_is_one_clear_line():
    page = np.full((300, 400), 235, dtype=np.uint8)
    page[20::35] = 60
    page[21::35] = 60
    with pytest.raises(UserError, match=r"^lines\.jpg: no digit found, only lines across the page$"):
        predict.prepare(_jpeg(page), "lines.jpg")


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_drawing_page_api_reads_a_photo_as_predict_does(photo_set, tuned_mlp):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from kaggle_digits.predict import serve

    shots, _, uneven = photo_set
    trial = predict.TrialPredictor.load(runs.load_trial(tuned_mlp.best_trial))
    with TestClient(serve.create_app(trial), base_url="http://127.0.0.1:8000") as client:
        for p, digit in list(zip(shots, uneven))[:3]:
            response = client.post("/predict", content=photos.render(p), headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200, response.text
            assert np.array_equal(np.array(response.json()["image"], dtype=np.uint8), digit)
