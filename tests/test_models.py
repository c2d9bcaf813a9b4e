"""The Keras families (dense, cnn, simplecnn), their augmentation and the precision/thread settings, on small data."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest

from kaggle_digits import models
from kaggle_digits.data import dataset as data
from kaggle_digits.errors import UserError
from kaggle_digits.models import augment, hardware

tf = pytest.importorskip("tensorflow")
ndimage = pytest.importorskip("scipy.ndimage")

optuna.logging.set_verbosity(optuna.logging.WARNING)
KERAS_FAMILIES = ["dense", "cnn", "simplecnn"]
TRAINED = ["dense", "cnn"]  # the fit tests' families: simplecnn's fits run in its own test of the commands


@pytest.fixture(scope="module")
def digits(small_data):
    """1,200 training and 300 validation images (uint8 (n, 28, 28)) from the 1,500-row slice."""
    ds = data.load_dataset(small_data)
    return ds.X_train[:1200], ds.y_train[:1200], ds.X_train[1200:], ds.y_train[1200:]


# --- fit / predict / save / load -------------------------------------------------------------


@pytest.mark.parametrize("name", TRAINED)
def test_family_fits_predicts_and_round_trips(name, digits, tmp_path):
    X, y, X_val, y_val = digits
    spec = models.get(name)
    seen = []
    result = spec.fit(
        spec.default_params(augment=True),
        X,
        y,
        X_val,
        y_val,
        max_epochs=1,
        seed=1,
        on_epoch=lambda epoch, metrics: seen.append((epoch, metrics)),
        verbose=False,
    )
    assert result.epochs == 1
    assert [epoch for epoch, _ in seen] == [0]
    assert {"val_accuracy", "loss", "accuracy"} <= set(seen[0][1])
    assert 0.0 <= seen[0][1]["val_accuracy"] <= 1.0
    assert len(result.history["val_accuracy"]) == 1

    # Augmentation belongs to training only: the fitted model does not hold it and predicts the same twice.
    assert not any("Random" in layer.__class__.__name__ for layer in result.model.layers)
    proba = spec.predict_proba(result.model, X_val)
    np.testing.assert_array_equal(spec.predict_proba(result.model, X_val), proba)
    assert proba.shape == (len(X_val), 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)

    path = tmp_path / f"fold-0{spec.model_suffix}"
    spec.save(result.model, path)
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    np.testing.assert_array_equal(spec.predict_proba(spec.load(path), X_val), proba)


def test_training_learns(digits):
    """Two epochs of a dense net on 1,200 images already classify most held-out digits."""
    X, y, X_val, y_val = digits
    spec = models.get("dense")
    params = {**spec.default_params(augment=False), "batchnorm": False, "batch_size": 32}
    result = spec.fit(params, X, y, max_epochs=2, seed=0, verbose=False)
    accuracy = (spec.predict_proba(result.model, X_val).argmax(axis=1) == y_val).mean()
    assert accuracy > 0.7, accuracy


def test_pruning_from_on_epoch_stops_training(digits):
    X, y, X_val, y_val = digits
    spec = models.get("dense")
    calls = []

    def on_epoch(epoch, metrics):
        calls.append(epoch)
        raise optuna.TrialPruned(f"epoch {epoch}: val_accuracy {metrics['val_accuracy']:.3f}")

    with pytest.raises(optuna.TrialPruned):
        spec.fit(spec.default_params(augment=False), X, y, X_val, y_val, max_epochs=3, on_epoch=on_epoch, verbose=False)
    assert calls == [0]


def test_quiet_fit_prints_nothing(digits, capfd):
    X, y, X_val, y_val = digits
    spec = models.get("dense")
    spec.fit(spec.default_params(augment=True), X[:300], y[:300], X_val, y_val, max_epochs=1, verbose=False)
    assert capfd.readouterr().out == ""


@pytest.fixture
def float32_policy():
    """float32 for a test whose subject is exact arithmetic (on a bf16 CPU `auto` is mixed_bfloat16)."""
    before = hardware.ensure_configured()
    hardware.configure("float32")
    yield
    hardware.configure(before)


@pytest.mark.parametrize("shape", [(64, 6, 6, 8), (64, 1, 1, 8), (32, 12)])
def test_fused_batch_norm_matches_keras(shape, float32_policy):
    """The fused BatchNorm layer computes what keras.layers.BatchNormalization computes."""
    import keras

    from kaggle_digits.models.keras_common import BatchNorm

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, shape).astype(np.float32))
    ours, reference = BatchNorm(), keras.layers.BatchNormalization()
    for layer in (ours, reference):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, shape[-1]).astype(np.float32))
        layer.beta.assign(np.linspace(-1, 1, shape[-1]).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_ours, y_reference = ours(x, training=True), reference(x, training=True)
        weights = tf.constant(np.random.default_rng(1).normal(size=shape).astype(np.float32))
        loss_ours, loss_reference = tf.reduce_sum(y_ours * weights), tf.reduce_sum(y_reference * weights)
    np.testing.assert_allclose(y_ours, y_reference, atol=1e-4)
    for a, b in [(tape.gradient(loss_ours, x), tape.gradient(loss_reference, x))] + [
        (tape.gradient(loss_ours, getattr(ours, v)), tape.gradient(loss_reference, getattr(reference, v)))
        for v in ("gamma", "beta")
    ]:
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(reference, name).numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours(x, training=False), reference(x, training=False), atol=1e-4)


def test_re_estimated_batchnorm_statistics_are_those_of_the_training_images():
    """Each layer's moving mean and variance become its inputs' mean and biased variance over the training
    images, with the layers before it in inference (dropout off)."""
    import keras

    from kaggle_digits.models.batchnorm import BatchNorm, BatchNormStatistics

    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Dense(6)(keras.layers.Flatten()(inputs))
    first = BatchNorm()
    x = keras.layers.Dropout(0.5)(first(hidden))
    second_in = keras.layers.Dense(3)(x)
    second = BatchNorm()
    model = keras.Model(inputs, second(second_in))
    X = np.random.default_rng(0).integers(0, 256, (256, 28, 28, 1)).astype(np.uint8)  # one batch of all rows
    BatchNormStatistics(model, X).estimate()
    images = X.astype(np.float32)
    for layer, layer_input in ((first, hidden), (second, second_in)):
        # One batch: in inference the first layer now normalises exactly as during the estimate.
        values = keras.Model(inputs, layer_input)(images, training=False).numpy().astype(np.float64)
        np.testing.assert_allclose(layer.moving_mean.numpy(), values.mean(axis=0), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(layer.moving_variance.numpy(), values.var(axis=0), rtol=1e-3)


@pytest.mark.parametrize("name", TRAINED)
def test_a_short_fit_with_batchnorm_classifies_held_out_digits(name, digits):
    """A fit of a few dozen steps: momentum-0.99 moving averages would still hold their initial values and
    the net would answer one class for everything. With re-estimated statistics the fitted model, and the
    validation figure each epoch reports (which the pruner hears), classify most held-out digits."""
    X, y, X_val, y_val = digits
    spec = models.get(name)
    params = {**spec.default_params(augment=False), "batchnorm": True, "batch_size": 32}
    reported = []
    result = spec.fit(
        params,
        X,
        y,
        X_val,
        y_val,
        max_epochs=2,
        seed=0,
        verbose=False,
        on_epoch=lambda epoch, metrics: reported.append(metrics["val_accuracy"]),
    )
    accuracy = (spec.predict_proba(result.model, X_val).argmax(axis=1) == y_val).mean()
    assert accuracy > 0.7, accuracy
    assert reported[-1] == pytest.approx(accuracy, abs=0.01)
    if name == "dense":  # (one family: the end of a fit is the same code for every Keras family)
        # Without validation data the statistics are re-estimated once, at the end of the fit.
        alone = spec.fit(params, X, y, max_epochs=2, seed=0, verbose=False)
        assert (spec.predict_proba(alone.model, X_val).argmax(axis=1) == y_val).mean() > 0.7


# --- search spaces ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", KERAS_FAMILIES)
@pytest.mark.parametrize("augmented", [False, True])
def test_search_space_samples_buildable_json_params(name, augmented):
    spec = models.get(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(4):
        trial = study.ask()
        params = spec.search_space(trial, augmented)
        assert json.loads(json.dumps(params)) == params
        magnitudes = {"rotation", "zoom", "shift"}
        assert magnitudes & set(params) == (magnitudes if augmented else set())
        model = spec.build(params)
        assert model.output_shape == (None, 10)
        study.tell(trial, 0.5)


@pytest.mark.parametrize("augmented", [False, True])
def test_cnn_default_is_the_public_recipes_network_with_max_pooling_on_a_one_cycle_and_in_the_space(augmented):
    spec = models.get("cnn")
    default = spec.default_params(augmented)
    assert default["filters"] == [32, 64] and default["batch_size"] == 64 and default["dropout"] == 0.2
    assert default["norm_last"] and (default["schedule"], default["lr"]) == ("onecycle", 2e-3)
    fixed = {
        "n_blocks": 2,
        "base_filters": 32,
        "convs_per_block": 2,
        "downsample": "maxpool",
        "final_conv": 128,
        "dense_units": 0,
        "batchnorm": True,
        "norm_last": True,
        "dropout": 0.2,
        "lr": 2e-3,
        "lr_decay": 0.95,
        "batch_size": 64,
        "schedule": "onecycle",
        **({"rotation": 10.0, "zoom": 0.1, "shift": 0.1} if augmented else {}),
    }
    assert spec.search_space(optuna.trial.FixedTrial(fixed), augmented) == default
    layers = spec.build(default).layers
    convs = [layer for layer in layers if layer.__class__.__name__ == "Conv2D"]
    pools = [layer for layer in layers if layer.__class__.__name__ == "MaxPooling2D"]
    # 32C3-32C3-P2 / 64C3-64C3-P2 / 128C4: the recipe's 32C5S2 and 64C5S2 replaced by 2x2 max-pooling
    assert [(c.filters, c.kernel_size[0], c.strides[0]) for c in convs] == [
        (32, 3, 1),
        (32, 3, 1),
        (64, 3, 1),
        (64, 3, 1),
        (128, 4, 1),
    ]
    assert [p.output.shape[1:] for p in pools] == [(12, 12, 32), (4, 4, 64)]  # the recipe's shapes
    assert convs[-1].output.shape[1:3] == (1, 1)


def test_cnn_from_keras_batchnorm_is_the_same_network():
    """benchmarks/throughput.py's baseline: cnn.build with Keras' BatchNormalization in place of ours."""
    import keras

    from kaggle_digits.models import cnn

    params = cnn.SPEC.default_params(augment=False)
    ours, plain = cnn.build(params), cnn.build(params, batchnorm_layer=keras.layers.BatchNormalization)
    kinds = [layer.__class__.__name__ for layer in plain.layers]
    assert "BatchNorm" not in kinds and kinds.count("BatchNormalization") == 5  # one per conv
    assert [layer.__class__.__name__ for layer in ours.layers] == [
        "BatchNorm" if kind == "BatchNormalization" else kind for kind in kinds
    ]
    assert ours.count_params() == plain.count_params()


def test_cnn_space_covers_the_simple_net():
    spec = models.get("cnn")
    simple = {
        "n_blocks": 1,
        "base_filters": 32,
        "convs_per_block": 1,
        "downsample": "maxpool",
        "final_conv": 0,
        "dense_units": 128,
        "batchnorm": False,
        "norm_last": False,
        "dropout": 0.0,
        "lr": 1e-3,
        "lr_decay": 1.0,
        "batch_size": 128,
        "schedule": "exponential",
    }
    kinds = [
        layer.__class__.__name__
        for layer in spec.build(spec.search_space(optuna.trial.FixedTrial(simple), False)).layers
    ]
    assert [k for k in kinds if k in {"Conv2D", "MaxPooling2D", "Dense", "BatchNorm"}] == [
        "Conv2D",
        "MaxPooling2D",
        "Dense",
        "Dense",
    ]


@pytest.mark.parametrize(
    ("kernel", "features", "params"),
    # params: each conv's k*k*c_in*c_out weights and the Dense(10)'s, no biases; gamma and beta of each
    # batch norm (the moving mean and variance are not trained)
    [
        (3, (8, 8, 176), 9 * 112_160 + 11_264 * 10 + 2 * (1_040 + 10)),
        (5, (8, 8, 160), 25 * 40_992 + 10_240 * 10 + 2 * (480 + 10)),
        (7, (4, 4, 192), 49 * 46_128 + 3_072 * 10 + 2 * (480 + 10)),
    ],
)
def test_simplecnn_builds_the_papers_m3_m5_m7(kernel, features, params):
    """An et al. 2020's nets: valid kxk convs (no bias) + BN + ReLU, no pooling, Dense(10) (no bias) + BN."""
    from kaggle_digits.models import simplecnn

    model = simplecnn.build({"kernel": kernel, "width": 1.0})
    assert model.get_layer("features").input.shape[1:] == features
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == list(simplecnn.CHANNELS[kernel])
    assert all(c.kernel_size == (kernel, kernel) and c.padding == "valid" and not c.use_bias for c in convs)
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert not [kind for kind in kinds if "Pool" in kind or kind == "Dropout"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == params
    assert kinds[-4:] == ["Flatten", "Dense", "BatchNorm", "Activation"]
    half = simplecnn.build({"kernel": kernel, "width": 0.5})
    assert [c.filters for c in half.layers if c.__class__.__name__ == "Conv2D"] == [
        round(c / 2) for c in simplecnn.CHANNELS[kernel]
    ]


@pytest.mark.parametrize("augmented", [False, True])
def test_simplecnn_default_is_the_papers_m5_and_training(augmented):
    spec = models.get("simplecnn")
    default = spec.default_params(augmented)
    assert (default["kernel"], default["width"], default["batch_size"]) == (5, 1.0, 120)
    assert (default["schedule"], default["lr"], default["lr_decay"]) == ("exponential", 1e-3, 0.98)
    assert "dropout" not in spec.search_space(optuna.trial.FixedTrial(spec.default_suggestions(augmented)), augmented)
    magnitudes = {"rotation": 20.0, "zoom": 0.0, "shift": 0.2}  # theirs: rotation 20 degrees, translation 0.2
    assert {k: default[k] for k in magnitudes if k in default} == (magnitudes if augmented else {})


@pytest.mark.parametrize("params", [{"kernel": 4}, {"kernel": 5, "width": 0}])
def test_simplecnn_refuses_a_kernel_or_width_it_has_no_net_for(params):
    with pytest.raises(ValueError, match="kernel=4|width=0"):
        models.get("simplecnn").build(params)


@pytest.mark.parametrize("units", [[128, 64], [50, 50], [512, 256, 128, 64]])
def test_dense_space_covers_the_classic_nets(units):
    spec = models.get("dense")
    fixed = {"n_layers": len(units), **{f"units_{i}": u for i, u in enumerate(units)}}
    fixed.update({"batchnorm": True, "dropout": 0.2, "lr": 1e-3, "lr_decay": 0.95, "batch_size": 128})
    model = spec.build(spec.search_space(optuna.trial.FixedTrial(fixed), False))
    dense = [layer.units for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert dense == [*units, 10]
    assert any(layer.__class__.__name__ == "BatchNorm" for layer in model.layers)


# --- augmentation -----------------------------------------------------------------------------


def _one_transform(images, angle=0.0, scale=1.0, dx=0.0, dy=0.0):
    b = len(images)
    matrices = augment.affine_matrices(
        tf.fill([b], float(angle)), tf.fill([b], float(scale)), tf.fill([b], float(dx)), tf.fill([b], float(dy)), 28, 28
    )
    return augment.transform(tf.constant(images[..., None].astype(np.float32)), matrices).numpy()[..., 0]


def test_zero_magnitudes_are_the_identity(digits):
    images = digits[0][:8].astype(np.float32)[..., None]
    out = augment.random_augment(tf.constant(images), augment.Magnitudes())
    np.testing.assert_array_equal(np.asarray(out), images)
    np.testing.assert_array_equal(_one_transform(digits[0][:8]), digits[0][:8])


def test_known_rotation_shift_and_zoom(digits):
    image = digits[0][:1].astype(np.float32)
    # A quarter turn about the centre lands exactly on the pixel grid.
    np.testing.assert_allclose(_one_transform(image, angle=math.pi / 2)[0], np.rot90(image[0], k=-1), atol=1e-3)
    # 10 degrees: the same as scipy's bilinear rotation (scipy turns the other way in row/column terms).
    reference = ndimage.rotate(image[0], -10, reshape=False, order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(_one_transform(image, angle=math.radians(10))[0], reference, atol=1e-2)
    # A whole-pixel shift is a roll with zeros coming in.
    shifted = _one_transform(image, dx=3, dy=-2)[0]
    np.testing.assert_array_equal(shifted[:26, 3:], image[0][2:, :25])
    assert not shifted[:, :3].any() and not shifted[26:].any()
    # Zoom 3 about the centre (13.5, 13.5) moves a point 1.5 px off-centre to 4.5 px off-centre.
    dot = np.zeros((1, 28, 28), np.float32)
    dot[0, 15, 12] = 255.0
    zoomed = _one_transform(dot, scale=3.0)[0]
    assert np.unravel_index(zoomed.argmax(), zoomed.shape) == (18, 9) and zoomed[18, 9] == pytest.approx(255.0)


def test_composed_transform_equals_the_steps_in_order(digits):
    image = digits[0][:1].astype(np.float32)
    composed = _one_transform(image, angle=math.pi / 2, dx=2, dy=1)[0]
    stepwise = _one_transform(_one_transform(image, angle=math.pi / 2), dx=2, dy=1)[0]
    np.testing.assert_allclose(composed, stepwise, atol=1e-3)


def test_random_augment_keeps_shape_dtype_and_stays_within_magnitudes(digits):
    images = tf.constant(digits[0][:256].astype(np.float32)[..., None])
    tf.random.set_seed(0)
    out = augment.random_augment(images, augment.Magnitudes(shift=0.1))
    assert out.shape == images.shape and out.dtype == tf.float32
    out = np.asarray(out)[..., 0]
    moved = ~np.all(out == images.numpy()[..., 0], axis=(1, 2))
    assert moved.mean() > 0.9  # each image gets its own draw
    # Shifts only: each digit's centre of mass moves by at most 0.1 * 28 = 2.8 px per axis
    # (a little more where pixels fall off the edge).
    rows = np.arange(28, dtype=np.float32)
    com = lambda a, axis: (a.sum(axis=axis) * rows).sum(axis=1) / a.sum(axis=(1, 2))  # noqa: E731
    original = images.numpy()[..., 0]
    drift_y = np.abs(com(out, 2) - com(original, 2))
    drift_x = np.abs(com(out, 1) - com(original, 1))
    assert drift_x.max() < 3.0 and drift_y.max() < 3.0
    assert drift_x.max() > 2.0  # the whole range is used
    bf16 = augment.random_augment(tf.cast(images, tf.bfloat16), augment.Magnitudes(rotation=10, zoom=0.1, shift=0.1))
    assert bf16.dtype == tf.bfloat16 and bf16.shape == images.shape


def _strokes() -> np.ndarray:
    """Synthetic digits, float32 (2, 28, 28) in 0-255, ink at least 6 px from the edge: a ring (a "0",
    empty inside) and a vertical bar (a "1")."""
    y, x = np.mgrid[:28, :28].astype(np.float32)
    radius = np.hypot(y - 13.5, x - 13.5)
    ring = np.clip(2.0 - np.abs(radius - 6.0), 0, 1) * 255
    bar = ((np.abs(x - 13.5) < 1.5) & (y >= 6) & (y <= 21)).astype(np.float32) * 255
    return np.stack([ring, bar])


@pytest.mark.parametrize("magnitudes", [{"rotation": 10}, {"rotation": 10, "zoom": 0.1, "shift": 0.1}])
def test_augmentation_in_a_graph_of_unknown_batch(magnitudes, digits):
    """As the training step traces it: the batch size unknown, every shape after each step still known."""
    augmenter = tf.function(
        lambda x: augment.random_augment(x, augment.Magnitudes(**magnitudes)),
        input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)],
    )
    out = augmenter(tf.constant(digits[0][:16].astype(np.float32)[..., None]))
    assert out.shape == (16, 28, 28, 1)


def test_a_fit_that_uses_every_option_and_the_retired_levers_off(digits, tmp_path):
    """Older trials' params.json may hold the retired levers at their off value: accepted, ignored; on: refused."""
    X, y, X_val, y_val = digits
    spec = models.get("cnn")
    params = spec.default_params(augment=True) | {"ema": 0.0, "label_smoothing": 0, "snapshots": 1, "elastic": 0.0}
    params |= {"erasing": 0.0, "norm_last": False, "schedule": "exponential"}  # the defaults' alternatives
    for name, on in {"ema": 0.999, "label_smoothing": 0.1, "snapshots": 3, "elastic": 34.0, "erasing": 0.5}.items():
        with pytest.raises(ValueError, match=name):
            spec.fit(params | {name: on}, X, y, max_epochs=1, verbose=False)
    result = spec.fit(params, X, y, X_val, y_val, max_epochs=1, seed=1, verbose=False)
    assert {"loss", "accuracy", "val_accuracy"} <= set(result.history)
    path = tmp_path / "fold-0.keras"
    spec.save(result.model, path)
    np.testing.assert_array_equal(spec.predict_proba(spec.load(path), X_val), spec.predict_proba(result.model, X_val))


def test_magnitudes_come_from_params():
    assert augment.Magnitudes.from_params({"rotation": 10, "zoom": 0.1, "shift": 0.1}) == augment.Magnitudes(
        10, 0.1, 0.1
    )
    assert not augment.Magnitudes.from_params({"lr": 1e-3}).active
    shift = augment.Magnitudes.from_params({"shift": 0.1, "elastic": 0, "erasing": 0})
    assert shift.active and shift == augment.Magnitudes(shift=0.1)


# --- hardware ---------------------------------------------------------------------------------


def test_cpu_flags_and_policy_choice(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    flags = hardware.cpu_flags(cpuinfo)
    assert {"avx512f", "avx512_bf16"} <= flags and hardware.cpu_flags(tmp_path / "missing") == frozenset()
    bf16_cpu = hardware.Hardware(cores=2, gpus=0, cpu_flags=flags)
    plain_cpu = hardware.Hardware(cores=2, gpus=0, cpu_flags=frozenset({"avx2"}))
    gpu = hardware.Hardware(cores=8, gpus=1, cpu_flags=frozenset())
    assert bf16_cpu.cpu_bf16 and not plain_cpu.cpu_bf16
    assert hardware.choose_policy("auto", gpu) == "mixed_float16"
    assert hardware.choose_policy("auto", plain_cpu) == "float32"
    assert hardware.choose_policy("auto", bf16_cpu) == "mixed_bfloat16"
    assert hardware.choose_policy("mixed_bfloat16", plain_cpu) == "mixed_bfloat16"
    assert hardware.choose_policy("fast", bf16_cpu) == "mixed_bfloat16"
    assert (
        hardware.choose_policy("fast", plain_cpu) == "float32"
        and hardware.choose_policy("fast", gpu) == "mixed_float16"
    )
    with pytest.raises(UserError, match="--precision 'half'"):
        hardware.choose_policy("half", plain_cpu)


def test_configure_sets_the_keras_policy():
    import keras

    before = hardware.ensure_configured()
    try:
        assert hardware.configure("mixed_bfloat16") == "mixed_bfloat16"
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
        model = models.get("dense").build(models.get("dense").default_params(False))
        assert model.layers[-2].compute_dtype == "bfloat16" and model.output.dtype == "float32"
    finally:
        assert hardware.configure(before) == before
    assert keras.mixed_precision.dtype_policy().name == before
    assert tf.config.threading.get_intra_op_parallelism_threads() in (0, hardware.usable_cores())


def test_an_epoch_cap_compresses_the_learning_rate_schedule():
    """Capped at 6 of 45 epochs, the recipe's schedule still ends at 0.95**45 of its first rate."""
    from kaggle_digits.models import keras_common as kc

    params = models.get("cnn").default_params(augment=True) | {"schedule": "exponential", "lr": 1e-3}
    for run in (45, 60):  # all 45 epochs, or a cap above them: the recipe's x0.95 per epoch
        full = kc.learning_rate_schedule(params, steps_per_epoch=10, epochs=run)
        assert float(full(10)) == pytest.approx(1e-3 * 0.95, rel=1e-5)
    model = models.get("cnn").build(params)
    kc.compile_model(model, params, steps_per_epoch=10, epochs=6)
    schedule = model.optimizer._learning_rate  # the schedule object (learning_rate is its current value)
    assert float(schedule(60)) == pytest.approx(1e-3 * 0.95**45, rel=1e-4)
    assert float(schedule(9)) == pytest.approx(1e-3)  # staircase: constant within the first epoch


def test_onecycle_schedule_warms_up_then_anneals_over_the_epochs_run():
    from kaggle_digits.models import keras_common as kc

    params = {"lr": 2e-3, "epochs": 45, "schedule": "onecycle"}
    for epochs in (10, None):  # capped at 10 of 45 epochs, or all 45
        steps = 100 * (epochs or 45)
        schedule = kc.learning_rate_schedule(params, steps_per_epoch=100, epochs=epochs)
        rates = np.array([float(schedule(step)) for step in range(0, steps + 1, 10)])
        peak = int(np.argmax(rates)) * 10
        assert rates[0] == pytest.approx(2e-4, rel=1e-4) and rates.max() == pytest.approx(2e-3, rel=1e-4)
        assert peak == pytest.approx(0.2 * steps, abs=10)
        assert (np.diff(rates[: peak // 10 + 1]) > 0).all() and (np.diff(rates[peak // 10 :]) <= 0).all()
        assert rates[-1] == pytest.approx(2e-6, rel=1e-3)
    with pytest.raises(ValueError, match="schedule"):
        kc.learning_rate_schedule({"lr": 1e-3, "epochs": 5, "schedule": "steps"}, steps_per_epoch=10)


@pytest.mark.parametrize("kind", ["onecycle", "exponential"])
def test_a_shortened_schedule_still_ends_annealed(kind):
    """A fit told to end sooner (fit_to) follows the schedule of the shorter fit from then on: its last
    step is where a fit planned that short would have ended."""
    from kaggle_digits.models import keras_common as kc

    params = {"lr": 2e-3, "epochs": 45, "schedule": kind, "lr_decay": 0.95}
    schedule = kc.learning_rate_schedule(params, steps_per_epoch=100, epochs=10)
    short = kc.learning_rate_schedule(params, steps_per_epoch=100, epochs=6)
    schedule.fit_to(6)
    for step in (0, 150, 399, 599):
        assert float(schedule(step)) == pytest.approx(float(short(step)), rel=1e-5)
    # The end of 6 epochs: the cosine's floor, or the staircase's sixth step, 0.95**45 spread over 6 epochs.
    if kind == "onecycle":
        assert float(schedule(600)) == pytest.approx(2e-3 * kc.ONECYCLE_END, rel=1e-3)
    else:
        assert float(schedule(599)) == pytest.approx(2e-3 * 0.95 ** (45 * 5 / 6), rel=1e-4)


@pytest.mark.parametrize("family", ["dense", "mlp"])
def test_a_fit_told_to_end_by_a_time_already_passed_trains_one_epoch(digits, family):
    import time

    X, y, X_val, y_val = digits
    spec = models.get(family)
    params = {**spec.default_params(augment=False), "epochs": 4, "patience": 0}
    late = spec.fit(params, X, y, max_epochs=4, seed=0, verbose=False, stop_by=time.time())
    assert late.epochs == 1
    ahead = spec.fit(params, X, y, max_epochs=3, seed=0, verbose=False, stop_by=time.time() + 1e6)
    assert ahead.epochs == 3, "a fit with time to spare runs every epoch"
    assert spec.predict_proba(late.model, X_val).shape == (len(X_val), 10)


def test_cnn_normalises_after_the_activation_unless_told_otherwise():
    """norm_last (the default): conv (with bias) - ReLU - BN, the order of the public recipe's code;
    without it BN comes before the ReLU and the conv drops its bias, which BN's shift replaces."""
    spec = models.get("cnn")
    params = spec.default_params(augment=True)
    last, first = spec.build(params), spec.build(params | {"norm_last": False})
    assert [type(layer).__name__ for layer in last.layers][2:8] == ["Conv2D", "Activation", "BatchNorm"] * 2
    assert [type(layer).__name__ for layer in first.layers][2:5] == ["Conv2D", "BatchNorm", "Activation"]

    def conv_biases(model):
        return [layer.use_bias for layer in model.layers if type(layer).__name__ == "Conv2D"]

    assert len(conv_biases(last)) == 5 and all(conv_biases(last)) and not any(conv_biases(first))


def test_training_batches_cover_every_row_once_per_epoch_and_reshuffle():
    """The training dataset repeats once per epoch (one iterator for the whole fit): each run of
    steps_per_epoch batches is one pass over all rows, a partial last batch included, in a new order each
    pass, and it ends after the last epoch (no thread left working on a pass nobody will read)."""
    from kaggle_digits.models import keras_common as kc

    n, batch_size = 150, 64
    X = np.zeros((n, 28, 28), dtype=np.uint8)
    X[:, 0, 0] = np.arange(n)  # each image carries its row number
    y = np.arange(n) % 10
    batches = iter(kc.train_dataset(X, y, batch_size, seed=0, epochs=2))
    steps = math.ceil(n / batch_size)
    passes = []
    for _ in range(2):
        sizes, rows = [], []
        for _ in range(steps):
            images, labels = next(batches)
            sizes.append(len(labels))
            rows.extend(images.numpy()[:, 0, 0, 0].astype(int).tolist())
            assert np.array_equal(labels.numpy(), images.numpy()[:, 0, 0, 0].astype(int) % 10)
        assert sizes == [64, 64, 22]
        assert sorted(rows) == list(range(n))
        passes.append(rows)
    assert passes[0] != passes[1]
    assert next(batches, None) is None, "the dataset ends after its epochs"


def test_steps_per_execution_divides_the_epoch():
    from kaggle_digits.models import keras_common as kc

    for steps in (1, 2, 3, 100, 329, 438, 525):
        k = kc.steps_per_execution(steps)
        assert 1 <= k <= kc.STEPS_PER_EXECUTION and steps % k == 0
    assert kc.steps_per_execution(100) == 4 and kc.steps_per_execution(438) == 3


def test_fused_adam_matches_keras_adam():
    """Five steps under a decaying schedule: FusedAdam lands where keras.optimizers.Adam does."""
    from kaggle_digits.models import keras_common as kc

    keras = kc.keras
    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 3)).astype("float32")
    grads = [rng.normal(size=(5, 3)).astype("float32") for _ in range(5)]
    ends = []
    for optimizer_class in (keras.optimizers.Adam, kc.FusedAdam):
        variable = keras.Variable(start.copy())
        schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 2, 0.9, staircase=True)
        optimizer = optimizer_class(learning_rate=schedule)
        for grad in grads:
            optimizer.apply_gradients([(tf.constant(grad), variable)])
        ends.append(np.array(variable))
    assert np.abs(ends[0] - start).max() > 0.01  # the steps moved the variable
    np.testing.assert_allclose(ends[1], ends[0], atol=1e-6)


def test_a_fit_is_deterministic_for_its_seed(digits):
    X, y, X_val, y_val = digits
    spec = models.get("dense")
    params = {**spec.default_params(augment=False), "batchnorm": False, "batch_size": 32}
    first, second = (spec.fit(params, X, y, max_epochs=2, seed=0, verbose=False).model for _ in range(2))
    for u, v in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


# --- simplecnn through the commands -----------------------------------------------------------------


def test_simplecnn_goes_through_tune_ensemble_report_predict_explain_and_a_kernel_bundle(
    run_cli, small_data, tmp_path, monkeypatch
):
    """The new member as a user meets it, its first trial made about as cheap as the default cnn (M7 at a
    quarter of the width), trained for one epoch on 2 folds of 300 rows."""
    from PIL import Image

    from kaggle_digits.models import simplecnn

    small = {"kernel": 7, "width": 0.25}
    suggested = simplecnn.SPEC.default_suggestions
    monkeypatch.setattr(simplecnn.SPEC, "default_suggestions", lambda augment: suggested(augment) | small)
    folders = ["--data-dir", small_data, "--runs-dir", tmp_path / "runs"]
    folders += ["--submissions-dir", tmp_path / "subs", "--reports-dir", tmp_path / "reports"]

    tiny = ["--trials", "1", "--folds", "2", "--epochs", "1", "--subsample", "300", "--fold-jobs", "1"]
    tuned = run_cli("tune", "--model", "simplecnn", "--augment", *tiny, *folders)
    assert tuned.code == 0, tuned.err
    assert "study 'simplecnn-aug'" in tuned.out
    trial = tmp_path / "runs" / "simplecnn-aug" / "trial-0"
    params = json.loads((trial / "params.json").read_text())["params"]
    assert params | small == params and (params["rotation"], params["shift"]) == (20.0, 0.2)
    assert (trial / "fold-1.keras").is_file()

    ensembled = run_cli("ensemble", "--studies", "simplecnn-aug", "--method", "mean", *folders)
    assert ensembled.code == 0, ensembled.err
    (manifest,) = (tmp_path / "subs").glob("*.json")

    report = run_cli("report", "--studies", "simplecnn-aug", "--out", tmp_path / "report", *folders)
    assert report.code == 0, report.err
    assert "simplecnn-aug" in (tmp_path / "report" / "index.html").read_text()

    image = tmp_path / "digit.png"
    Image.fromarray(255 - data.load_test(small_data / "test.csv")[0]).resize((140, 140)).save(image)
    explain = tmp_path / "explain.png"
    predicted = run_cli("predict", image, "--ensemble", manifest, "--explain", explain, *folders)
    assert predicted.code == 0, predicted.err
    assert "digit.png:" in predicted.out and explain.stat().st_size > 0

    bundle = tmp_path / "bundle"
    bundled = run_cli("kernel", "bundle", "--out", bundle, "--user", "erin", "--models", "simplecnn", "--augment")
    assert bundled.code == 0, bundled.err
    assert "'models': 'simplecnn'" in next((bundle / "kernel").glob("*.py")).read_text()
