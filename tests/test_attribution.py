"""Attribution maps mean something: on data where only one region carries the label the maps point at
that region, and deleting the most attributed pixels of real digits hurts the model more than deleting
random ones. Tiny models, trained for a fixed number of epochs."""

from __future__ import annotations

import numpy as np
import pytest

from kaggle_digits import models
from kaggle_digits.data import dataset as data
from kaggle_digits.predict import attribution
from kaggle_digits.predict import predictor as predict
from tests.conftest import REPO

QUADRANT = (slice(0, 14), slice(0, 14))  # the top-left quarter: the only part that carries the label


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose label is one of ten fixed 8x8 patterns in the top-left QUADRANT (its other pixels
    blank); the other three quarters hold random ink that says nothing about the label (about 1.7 times
    as much ink as the pattern)."""
    patterns = np.random.default_rng(0).random((10, 8, 8)) < 0.5
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    X = np.where(rng.random((n, 28, 28)) < 0.08, 255, 0).astype(np.uint8)
    X[:, QUADRANT[0], QUADRANT[1]] = 0
    X[:, 3:11, 3:11] = np.where(patterns[y], 255, 0)
    return X, y


def _dense(X: np.ndarray, y: np.ndarray, epochs: int, lr: float = 1e-3) -> attribution.FittedModel:
    spec = models.get("dense")
    params = {**spec.default_params(False), "units": [64], "batchnorm": False, "dropout": 0.0, "lr": lr}
    fit = spec.fit(params, X, y, max_epochs=epochs, seed=0, verbose=False)
    return attribution.FittedModel(spec, fit.model)


@pytest.fixture(scope="module")
def synthetic_models():
    X, y = _synthetic(3000, seed=1)
    mlp = models.get("mlp")
    mlp_fit = mlp.fit({**mlp.default_params(False), "hidden": "64"}, X, y, max_epochs=15, seed=0, verbose=False)
    return _dense(X, y, epochs=12, lr=3e-3), attribution.FittedModel(mlp, mlp_fit.model)


@pytest.mark.parametrize("which, method", [(0, "integrated-gradients"), (1, "occlusion")])
def test_maps_fall_in_the_one_region_that_carries_the_label(synthetic_models, which, method):
    model = synthetic_models[which]
    X, y = _synthetic(40, seed=2)
    proba = model.predict_proba(X)
    assert (proba.argmax(axis=1) == y).mean() > 0.9  # it learned the patterns
    result = attribution.explain(model, X, y)
    assert result.method == method and result.maps.shape == (40, 28, 28) and result.maps.dtype == np.float32
    mass = np.abs(result.maps)
    inside = mass[:, QUADRANT[0], QUADRANT[1]].sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
    ink = (X > 0)[:, QUADRANT[0], QUADRANT[1]].sum(axis=(1, 2)) / (X > 0).sum(axis=(1, 2))
    # The quadrant is a quarter of the image and holds about a third of the ink (ink share 0.37 here):
    # maps that ignored the label would put about that share of their mass there.
    assert np.median(inside) > 0.6, np.median(inside)
    assert np.median(inside / ink) > 1.5, (np.median(inside), np.median(ink))


@pytest.fixture(scope="module")
def real_digits():
    X, y = data.load_mnist(REPO / "data" / "mnist")
    train_idx, test_idx = data.mirror_split(len(X))
    return X[train_idx[:3000]], y[train_idx[:3000]], X[test_idx[:60]], y[test_idx[:60]]


def _deletion_curves(model, X: np.ndarray, classes: np.ndarray, maps: np.ndarray) -> tuple[float, float]:
    """Mean probability of each image's class after blanking its k most attributed ink pixels, and after
    blanking k random ink pixels, averaged over k = 10, 20, 30, 40."""
    rng = np.random.default_rng(0)
    top, random = [], []
    for k in (10, 20, 30, 40):
        by_map, by_chance = X.copy(), X.copy()
        for i in range(len(X)):
            ink = np.flatnonzero(X[i].ravel())
            ranked = ink[np.argsort(-maps[i].ravel()[ink], kind="stable")]
            by_map[i].ravel()[ranked[:k]] = 0
            by_chance[i].ravel()[rng.choice(ink, min(k, len(ink)), replace=False)] = 0
        rows = np.arange(len(X))
        top.append(model.predict_proba(by_map)[rows, classes].mean())
        random.append(model.predict_proba(by_chance)[rows, classes].mean())
    return float(np.mean(top)), float(np.mean(random))


def test_deleting_top_attributed_pixels_hurts_more_than_random_ones_integrated_gradients(real_digits):
    X_train, y_train, X, y = real_digits
    model = _dense(X_train, y_train, epochs=3)
    classes = model.predict_proba(X).argmax(axis=1)
    result = attribution.explain(model, X, classes)
    assert result.method == "integrated-gradients"
    top, random = _deletion_curves(model, X, classes, result.maps)
    assert top < random - 0.1, (top, random)


def test_deleting_top_attributed_pixels_hurts_more_than_random_ones_occlusion_of_an_ensemble(real_digits, tuned_mlp):
    _, _, X, _ = real_digits
    ensemble = predict.load_ensemble(tuned_mlp.ensemble_json, tuned_mlp.runs_dir)
    classes = ensemble.predict_proba(X).argmax(axis=1)
    result = attribution.explain(ensemble, X, classes)
    assert result.method == "occlusion"  # scikit-learn members offer no gradients
    top, random = _deletion_curves(ensemble, X, classes, result.maps)
    assert top < random - 0.1, (top, random)


def test_integrated_gradients_add_up_to_the_change_from_a_blank_image(real_digits):
    X_train, y_train, X, _ = real_digits
    model = _dense(X_train[:1000], y_train[:1000], epochs=1)
    classes = np.arange(len(X[:10])) % 10  # any class, not only the predicted one
    maps = attribution.integrated_gradients(model.gradient_fn, X[:10], classes, steps=64)
    proba, blank = model.predict_proba(X[:10]), model.predict_proba(np.zeros((1, 28, 28), np.uint8))[0]
    expected = proba[np.arange(10), classes] - blank[classes]
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), expected, atol=0.02)
    assert np.all(maps[X[:10] == 0] == 0)  # a blank pixel is where the path starts: no credit


def test_a_trial_blends_its_fold_models_gradients_and_an_ensemble_of_mlps_has_none(tuned_mlp, real_digits):
    _, _, X, _ = real_digits
    ensemble = predict.load_ensemble(tuned_mlp.ensemble_json, tuned_mlp.runs_dir)
    assert ensemble.gradient_fn is None
    with pytest.raises(ValueError, match="no gradients"):
        attribution.explain(ensemble, X[:2], [0, 1], method="integrated-gradients")
    # Two Keras models blended: the blend's gradient is the weighted mean of theirs.
    a, b = (_dense(X[:50], np.arange(50) % 10, epochs=1) for _ in range(2))
    blended = attribution.blend_gradients([a.gradient_fn, b.gradient_fn], [3.0, 1.0])
    p, g = blended(X[:3].astype(np.float32), np.array([1, 2, 3]))
    pa, ga = a.gradient_fn(X[:3].astype(np.float32), np.array([1, 2, 3]))
    pb, gb = b.gradient_fn(X[:3].astype(np.float32), np.array([1, 2, 3]))
    np.testing.assert_allclose(p, 0.75 * pa + 0.25 * pb, rtol=1e-5)
    np.testing.assert_allclose(g, 0.75 * ga + 0.25 * gb, rtol=1e-4, atol=1e-9)
