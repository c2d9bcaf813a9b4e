"""An exported model file (`export`: .keras, .onnx, .tflite) as a predictor: uint8 images in, probabilities out.

An .onnx file runs through onnxruntime and a .tflite through LiteRT, neither importing TensorFlow; a .keras
file loads through Keras (and so TensorFlow).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_digits import IMAGE_SHAPE, N_CLASSES
from kaggle_digits.errors import UserError

# file ending -> the extra that runs it
ENDINGS = {".keras": "keras", ".onnx": "onnxruntime", ".tflite": "ai-edge-litert"}
BATCH = 1024  # rows per call into the model: bounded memory for any number of rows

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class ExportedPredictor:
    """One exported model file: predict_proba(X uint8 (n, 28, 28)) -> float32 (n, 10)."""

    source: Path
    runner: Runner = field(repr=False)

    kind = "exported"
    gradient_fn = None  # no gradients through a runtime: attribution maps use occlusion

    @property
    def name(self) -> str:
        return self.source.name

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The file's probabilities for uint8 images (n, 28, 28) (floats in 0-255 are rounded): float32 (n, 10)."""
        X = np.asarray(X)
        if X.dtype != np.uint8:
            X = np.clip(np.rint(X), 0, 255).astype(np.uint8)
        X = np.ascontiguousarray(X.reshape(len(X), *IMAGE_SHAPE))
        if not len(X):
            return np.zeros((0, N_CLASSES), dtype=np.float32)
        proba = np.concatenate([self.runner(X[i : i + BATCH]) for i in range(0, len(X), BATCH)]).astype(np.float32)
        return proba / proba.sum(axis=1, keepdims=True)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "path": str(self.source), "format": self.source.suffix[1:]}


def load_exported(path: str | os.PathLike) -> ExportedPredictor:
    """Load a file written by `export`; UserError when it is missing, of another kind, or unreadable."""
    path = Path(path)
    ending = path.suffix.lower()
    if ending not in ENDINGS:
        raise UserError(f"--model {path}: expected a {', '.join(ENDINGS)} file written by `export`")
    if not path.is_file():
        raise UserError(f"--model {path}: " + ("is a folder" if path.is_dir() else "file not found"))
    loader = {".onnx": _onnx_runner, ".tflite": _litert_runner, ".keras": _keras_runner}[ending]
    try:
        runner = loader(path)
    except ImportError as exc:
        raise UserError(
            f"--model {path}: needs {ENDINGS[ending]} ({exc}); install the extra: pip install 'kaggle-digits[export]'"
        ) from None
    except UserError:
        raise
    except Exception as exc:  # each runtime has its own error types for a damaged or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--model {path}: not a model this toolkit can run ({first})") from None
    return ExportedPredictor(path, runner)


def _onnx_runner(path: Path) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    output = session.get_outputs()[0].name

    def run(X: np.ndarray) -> np.ndarray:
        return session.run([output], {image_input.name: X})[0]

    run(np.zeros((1, *IMAGE_SHAPE), dtype=np.uint8))  # a file of another shape fails here, at load
    return run


def _litert_runner(path: Path) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (image_input,) = interpreter.get_input_details()
    output = interpreter.get_output_details()[0]["index"]
    rows = [0]  # the batch size the tensors are allocated for

    def run(X: np.ndarray) -> np.ndarray:
        if rows[0] != len(X):
            interpreter.resize_tensor_input(image_input["index"], [len(X), *IMAGE_SHAPE])
            interpreter.allocate_tensors()
            rows[0] = len(X)
        interpreter.set_tensor(image_input["index"], X)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(output))

    run(np.zeros((1, *IMAGE_SHAPE), dtype=np.uint8))
    return run


def _keras_runner(path: Path) -> Runner:
    from kaggle_digits.models import keras_common

    model = keras_common.keras.models.load_model(path, compile=False)

    def run(X: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(X))

    run(np.zeros((1, *IMAGE_SHAPE), dtype=np.uint8))
    return run
