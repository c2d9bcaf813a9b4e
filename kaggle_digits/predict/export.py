"""Export a trial or an ensemble as one self-contained model file: uint8 images (n, 28, 28) in, the ensemble's
ten probabilities out, every fold model, the members' weights and the pixel scaling inside.

Keras members become one Keras functional model (saved as `.keras`, or exported by Keras to ONNX or LiteRT),
each fold model rebuilt under float32 with its weights copied: a mixed-precision graph (bf16/fp16 ops) is
refused by onnxruntime and is not what a phone or a page runs. The package's own batch-norm layer becomes
Keras' BatchNormalization (the same arithmetic and weights), so the file needs nothing of this package.
A scikit-learn member is converted by skl2onnx and joined to the Keras members' ONNX graph: ONNX only.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits import IMAGE_SHAPE, N_CLASSES, models, written
from kaggle_digits.errors import UserError
from kaggle_digits.io import atomic_path
from kaggle_digits.predict.predictor import EnsemblePredictor, Predictor, TrialPredictor

# format -> the file ending it is written with
FORMATS = {"keras": ".keras", "onnx": ".onnx", "litert": ".tflite"}
INPUT_NAME = "images"  # uint8 (n, 28, 28)
OUTPUT_NAME = "proba"  # float32 (n, 10)
# The opset both converters (tf2onnx, skl2onnx) write, so that their graphs can be joined into one.
ONNX_OPSET = 17
# Which formats can carry a member, by the ending of its saved fold models.
CARRIED_BY = {".keras": tuple(FORMATS), ".joblib": ("onnx",)}

Log = Callable[[str], None]


@dataclass
class ExportResult:
    """What `export` wrote."""

    path: Path
    format: str
    size: int  # bytes
    members: list[str]  # <study>/trial-<n>, in the ensemble's order
    fold_models: int


@dataclass
class _Member:
    name: str
    suffix: str  # the fold models' file ending (models.ModelSpec.model_suffix)
    fold_models: list[Any]
    weight: float  # normalised over the ensemble


def check_format(fmt: str) -> str:
    """The format name, or a UserError listing the known ones."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def check_out(out: str | os.PathLike, fmt: str) -> Path:
    """The output path, checked before any work: the format's ending, and never a file the toolkit did not
    write (UserError otherwise)."""
    path = Path(out)
    ending = FORMATS[check_format(fmt)]
    if path.suffix.lower() != ending:
        raise UserError(f"--out {path}: a {fmt} model is written as a {ending} file")
    if path.is_dir():
        raise UserError(f"--out {path}: is a folder, expected a {ending} file")
    if written.foreign(path.parent, [path]):
        raise UserError(f"--out {path}: exists and was not written by kaggle-digits; choose another name")
    return path


def _members(predictor: Predictor) -> list[_Member]:
    trials: list[TrialPredictor]
    if isinstance(predictor, EnsemblePredictor):
        trials, weights = predictor.members, np.asarray(predictor.weights, dtype=np.float64)
    elif isinstance(predictor, TrialPredictor):
        trials, weights = [predictor], np.ones(1)
    else:
        raise UserError(f"{predictor.source}: already an exported model; export a trial or an ensemble")
    weights = weights / weights.sum()
    return [
        _Member(t.name, models.get(t.trial.model).model_suffix, t.fold_models, float(w))
        for t, w in zip(trials, weights)
    ]


def _check_carried(members: list[_Member], fmt: str) -> None:
    for member in members:
        formats = CARRIED_BY.get(member.suffix, ())
        if fmt not in formats:
            can = f"export it as {' or '.join(f'--format {f}' for f in formats)}" if formats else "no format can"
            raise UserError(f"{member.name}: a {member.suffix} model cannot go into a {fmt} file ({can})")


def export(predictor: Predictor, fmt: str, out: str | os.PathLike, log: Log | None = None) -> ExportResult:
    """Write `predictor` (a trial or an ensemble) as one `fmt` model file at `out`, atomically.

    The model takes uint8 images (n, 28, 28) as input `images` and returns float32 (n, 10) `proba`: each
    member's fold models averaged, the members weighted as in the ensemble. UserError for an unknown
    format, a member the format cannot carry, or an `out` the toolkit did not write."""
    say = log or (lambda _: None)
    path = check_out(out, fmt)
    members = _members(predictor)
    _check_carried(members, fmt)
    for member in members:
        say(f"{member.name}: {len(member.fold_models)} fold models, weight {member.weight:.4f}")
    with atomic_path(path, suffix=path.suffix) as tmp, _float32_policy():
        if fmt == "onnx":
            _write_onnx(members, tmp)
        else:
            model = _keras_model(members)
            if fmt == "keras":
                model.save(tmp)
            else:
                _quietly(lambda: model.export(str(tmp), format="litert", verbose=False))
    written.record(path.parent, [path])
    return ExportResult(
        path, fmt, path.stat().st_size, [m.name for m in members], sum(len(m.fold_models) for m in members)
    )


def float32_twin(predictor: Predictor) -> Predictor:
    """The same trial or ensemble with its Keras fold models rebuilt under float32 (weights copied): what an
    exported file computes, to compare it with like (a bf16 model differs from its float32 self)."""
    with _float32_policy():
        return _float32_twin(predictor)


def _float32_twin(predictor: Predictor) -> Predictor:
    if isinstance(predictor, EnsemblePredictor):
        members = [_float32_twin(m) for m in predictor.members]
        return EnsemblePredictor(predictor.source, members, predictor.weights, predictor.cv_accuracy)  # type: ignore[arg-type]
    if not isinstance(predictor, TrialPredictor):
        return predictor
    if not models.uses_tensorflow(models.get(predictor.trial.model)):
        return predictor
    folds = [_float32_copy(m, f"fold_{k + 1}") for k, m in enumerate(predictor.fold_models)]
    return TrialPredictor(predictor.trial, folds)


# --- Keras ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _float32_policy() -> Iterator[None]:
    """Keras' global dtype policy float32 for the block (a process that trained under mixed precision keeps
    its policy afterwards): Keras exports only float32 models."""
    from kaggle_digits.models import hardware

    if hardware.current_policy() in (None, "float32"):
        yield
        return
    from kaggle_digits.models import keras_common

    keras = keras_common.keras
    before = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(before)


def _float32_config(config: Any) -> Any:
    """A Keras model config with every dtype policy float32 and the package's BatchNorm as Keras' own."""
    if isinstance(config, list):
        return [_float32_config(c) for c in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(config.get("config"), dict):
        return {**config, "config": {**config["config"], "name": "float32"}}
    out = {key: _float32_config(value) for key, value in config.items()}
    if out.get("class_name") == "BatchNorm" and str(out.get("registered_name", "")).startswith("kaggle_digits"):
        inner = out["config"]
        keep = {k: inner[k] for k in ("name", "trainable", "dtype", "momentum", "epsilon") if k in inner}
        out.update(module="keras.layers", class_name="BatchNormalization", registered_name=None)
        out["config"] = {**keep, "axis": -1}
    return out


def _float32_copy(model: Any, name: str) -> Any:
    """The same network under float32, weights copied, renamed `name` (fold models share their names)."""
    from kaggle_digits.models import keras_common

    keras = keras_common.keras

    rebuilt = keras.Model.from_config(_float32_config(copy.deepcopy(model.get_config())))
    rebuilt.set_weights(model.get_weights())
    rebuilt.name = name
    return rebuilt


def _keras_model(members: list[_Member]) -> Any:
    """One functional model over the Keras members (all of `members` must be Keras)."""
    from kaggle_digits.models import keras_common  # sets the threads, then imports Keras and the package's layers

    keras = keras_common.keras

    images = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name=INPUT_NAME)
    # The fold models take float pixels (b, 28, 28, 1) in 0-255 and scale them to [0, 1] themselves.
    pixels = keras.layers.Reshape((*IMAGE_SHAPE, 1), dtype="float32", name="pixels")(
        keras.layers.Rescaling(1.0, dtype="float32", name="to_float")(images)
    )
    outputs = []
    for i, member in enumerate(members):
        folds = []
        for k, fold_model in enumerate(member.fold_models):
            folds.append(_float32_copy(fold_model, f"member_{i + 1}_fold_{k + 1}")(pixels))
        mean = folds[0] if len(folds) == 1 else keras.layers.Average(dtype="float32", name=f"member_{i + 1}")(folds)
        if len(members) > 1:
            mean = keras.layers.Rescaling(member.weight, dtype="float32", name=f"weight_{i + 1}")(mean)
        outputs.append(mean)
    proba = outputs[0] if len(outputs) == 1 else keras.layers.Add(dtype="float32")(outputs)
    proba = keras.layers.Identity(dtype="float32", name=OUTPUT_NAME)(proba)
    model = keras.Model(images, proba, name="kaggle_digits")
    model(np.zeros((1, *IMAGE_SHAPE), dtype=np.uint8))  # Keras exports only a model that has been called
    return model


def _quietly(action: Callable[[], Any]) -> Any:
    """Run a converter that prints its progress to stdout (only cli/ prints): its output is dropped."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return action()


# --- ONNX -------------------------------------------------------------------------------------


def _write_onnx(members: list[_Member], path: Path) -> None:
    """One ONNX graph: the Keras members as one exported model, each scikit-learn fold model by skl2onnx,
    joined by a weighted sum."""
    import onnx

    parts: list[tuple[Any, float]] = []  # (model proto with input INPUT_NAME, output OUTPUT_NAME; its weight)
    keras_members = [m for m in members if m.suffix == ".keras"]
    if keras_members:
        share = sum(m.weight for m in keras_members)
        inner = [_Member(m.name, m.suffix, m.fold_models, m.weight / share) for m in keras_members]
        parts.append((_keras_onnx(inner, path), share))
    for member in members:
        if member.suffix == ".keras":
            continue
        for fold_model in member.fold_models:
            parts.append((_sklearn_onnx(fold_model), member.weight / len(member.fold_models)))
    onnx.save(parts[0][0] if len(parts) == 1 and parts[0][1] == 1.0 else _weighted_sum(parts), str(path))


def _keras_onnx(members: list[_Member], beside: Path) -> Any:
    """The Keras members' functional model, exported by Keras (tf2onnx), as an ONNX model proto."""
    import onnx

    model = _keras_model(members)
    with tempfile.TemporaryDirectory(prefix=f".{beside.name}.", dir=beside.parent) as folder:
        tmp = Path(folder) / "keras.onnx"
        _quietly(lambda: model.export(str(tmp), format="onnx", verbose=False, opset_version=ONNX_OPSET))
        proto = onnx.load(str(tmp))
    return _renamed_io(proto)


def _renamed_io(proto: Any) -> Any:
    """The graph's one input and one output renamed INPUT_NAME and OUTPUT_NAME."""
    graph = proto.graph
    names = {graph.input[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    graph.input[0].name, graph.output[0].name = INPUT_NAME, OUTPUT_NAME
    return proto


def _sklearn_onnx(pipeline: Any) -> Any:
    """A fitted scikit-learn pipeline on flat float pixels (mlp.py) as ONNX: uint8 (n, 28, 28) in, (n, 10) out."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline

    # skl2onnx knows scikit-learn's own classes only: no "passthrough" step, no subclass of MLPClassifier.
    steps = [(name, step) for name, step in pipeline.steps if step not in (None, "passthrough")]
    name, last = steps[-1]
    if isinstance(last, MLPClassifier) and type(last) is not MLPClassifier:
        last = copy.copy(last)
        last.__class__ = MLPClassifier
        steps[-1] = (name, last)
    plain = Pipeline(steps)
    n_pixels = int(np.prod(IMAGE_SHAPE))
    converted = convert_sklearn(
        plain,
        initial_types=[("flat", FloatTensorType([None, n_pixels]))],
        options={id(last): {"zipmap": False}},
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": 3},
    )
    graph = converted.graph
    probabilities = next(o.name for o in graph.output if o.type.tensor_type.elem_type == TensorProto.FLOAT)
    shape = helper.make_tensor("flat_shape", TensorProto.INT64, [2], [-1, n_pixels])
    head = [
        helper.make_node("Cast", [INPUT_NAME], ["pixels_float"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["pixels_float", "flat_shape"], ["flat"]),
    ]
    tail = [helper.make_node("Identity", [probabilities], [OUTPUT_NAME])]
    new_graph = helper.make_graph(
        head + list(graph.node) + tail,
        "sklearn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [None, *IMAGE_SHAPE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, N_CLASSES])],
        initializer=[shape, *graph.initializer],
    )
    model = helper.make_model(new_graph, opset_imports=list(converted.opset_import))
    model.ir_version = converted.ir_version
    onnx.checker.check_model(model)
    return model


def _weighted_sum(parts: list[tuple[Any, float]]) -> Any:
    """One ONNX model: every part reads the shared input INPUT_NAME; OUTPUT_NAME is the weighted sum of theirs."""
    import onnx
    from onnx import TensorProto, compose, helper

    nodes, initializers, terms = [], [], []
    opsets: dict[str, int] = {}
    for k, (proto, weight) in enumerate(parts):
        prefixed = compose.add_prefix(proto, f"part{k}_")
        graph = prefixed.graph
        rename = {f"part{k}_{INPUT_NAME}": INPUT_NAME}
        for node in graph.node:
            node.input[:] = [rename.get(n, n) for n in node.input]
        nodes += list(graph.node)
        initializers += list(graph.initializer)
        initializers.append(helper.make_tensor(f"part{k}_weight", TensorProto.FLOAT, [], [weight]))
        nodes.append(helper.make_node("Mul", [graph.output[0].name, f"part{k}_weight"], [f"part{k}_weighted"]))
        terms.append(f"part{k}_weighted")
        for opset in proto.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    nodes.append(helper.make_node("Sum", terms, [OUTPUT_NAME]))
    graph = helper.make_graph(
        nodes,
        "kaggle_digits",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [None, *IMAGE_SHAPE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, N_CLASSES])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = min(p.ir_version for p, _ in parts)
    onnx.checker.check_model(model)
    return model
