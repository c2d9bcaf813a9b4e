"""`export` and `--model`: tiny trials tuned by the real `tune` (a cnn in bf16, a dense net in float32, the
session's mlp) written as one file in each format, loaded back, and compared with the toolkit's own predictor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kaggle_digits import cli
from kaggle_digits.blend import manifest
from kaggle_digits.data import dataset as data
from kaggle_digits.predict import export
from kaggle_digits.predict import predictor as predict
from kaggle_digits.predict.exported import load_exported
from kaggle_digits.search import runs
from tests.conftest import REPO, user_image

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


@pytest.fixture(scope="module")
def images():
    """Mirror test rows no trial trained on: uint8 (200, 28, 28)."""
    X, _ = data.load_mnist(REPO / "data" / "mnist")
    _, test_idx = data.mirror_split(len(X))
    return X[test_idx[-200:]]


@pytest.fixture(scope="module")
def keras_runs(tmp_path_factory, small_data, tuned_mlp):
    """A cnn trial tuned under mixed_bfloat16 and a dense trial under float32 (one trial, 2 folds, 1 epoch on
    300 rows each), and two manifests: cnn 0.7 + dense 0.3, and cnn + dense + the session's best mlp."""
    root = tmp_path_factory.mktemp("export")
    folders = ["--data-dir", str(small_data), "--runs-dir", str(root / "runs")]
    tiny = ["--trials", "1", "--folds", "2", "--epochs", "1", "--subsample", "300", "--fold-jobs", "1"]
    assert cli.main(["tune", "--model", "cnn", "--precision", "mixed_bfloat16", *tiny, *folders]) == 0
    assert cli.main(["tune", "--model", "dense", "--precision", "float32", *tiny, *folders]) == 0
    cnn, dense = (runs.load_trial(root / "runs" / name / "trial-0") for name in ("cnn", "dense"))

    def write(name: str, trials: list[runs.TrialRun], weights: list[float]) -> Path:
        members = [manifest.Member(t.name, w, t.path, t.model) for t, w in zip(trials, weights)]
        return manifest.write(root / f"{name}.json", members)

    mlp = runs.load_trial(tuned_mlp.best_trial)
    return {
        "runs": root / "runs",
        "cnn": cnn.path,
        "dense": dense.path,
        "pair": write("pair", [cnn, dense], [0.7, 0.3]),
        "mixed": write("mixed", [cnn, dense, mlp], [0.5, 0.2, 0.3]),
    }


def exported_matches_the_toolkit(source: predict.Predictor, path: Path, images: np.ndarray) -> None:
    """The file's labels equal the toolkit's own, its probabilities within 1e-3 of the same members in float32."""
    expected = export.float32_twin(source).predict_proba(images)
    got = load_exported(path).predict_proba(images)
    assert got.shape == (len(images), 10) and got.dtype == np.float32
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-3)


@pytest.mark.parametrize(
    ("source", "fmt"),
    # (the dense net goes into ONNX within the pair)
    [("cnn", "onnx"), ("cnn", "keras"), ("pair", "onnx"), ("pair", "keras"), ("pair", "litert")],
)
def test_export_then_load_predicts_as_the_toolkit_does(keras_runs, images, tmp_path, run_cli, source, fmt):
    which = ["--ensemble" if source == "pair" else "--trial", keras_runs[source]]
    out = tmp_path / f"model{export.FORMATS[fmt]}"
    result = run_cli("export", *which, "--format", fmt, "--out", out, "--runs-dir", keras_runs["runs"])
    assert result.code == 0, result.err
    assert f"wrote {out}" in result.out and out.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir() if p.name != ".kaggle-digits-written.json"] == [out.name]
    if source == "pair":
        assert "cnn/trial-0: 2 fold models, weight 0.7000" in result.out
    source_predictor = predict.load_predictor(
        keras_runs["runs"], tmp_path, **{"ensemble" if source == "pair" else "trial": keras_runs[source]}
    )
    exported_matches_the_toolkit(source_predictor, out, images)
    if fmt == "keras" and source == "cnn":  # its batch norm is the package's own layer, written as Keras'
        np.save(tmp_path / "images.npy", images[:20])
        done = subprocess.run(
            [sys.executable, "-c", PLAIN_KERAS, str(out), str(tmp_path / "images.npy")],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        np.testing.assert_allclose(
            np.load(tmp_path / "proba.npy"), load_exported(out).predict_proba(images[:20]), atol=1e-5
        )


# A .keras file in a Python that has never imported this package.
PLAIN_KERAS = """
import sys
import keras, numpy as np
assert "kaggle_digits" not in sys.modules
model = keras.models.load_model(sys.argv[1])
np.save("proba.npy", model.predict(np.load(sys.argv[2]), verbose=0))
"""


def test_an_mlp_member_goes_into_onnx_beside_keras_members_and_is_refused_elsewhere(
    keras_runs, images, tmp_path, run_cli
):
    out = tmp_path / "mixed.onnx"
    done = run_cli("export", "--ensemble", keras_runs["mixed"], "--out", out, "--runs-dir", keras_runs["runs"])
    assert done.code == 0, done.err
    exported_matches_the_toolkit(predict.load_ensemble(keras_runs["mixed"], keras_runs["runs"]), out, images)

    for fmt in ("keras", "litert"):
        refused = run_cli(
            "export", "--ensemble", keras_runs["mixed"], "--format", fmt, "--out", tmp_path / f"m{export.FORMATS[fmt]}"
        )
        assert refused.code == 2 and len(refused.err.splitlines()) == 1
        assert "mlp/trial-" in refused.err and f"cannot go into a {fmt} file" in refused.err
        assert "--format onnx" in refused.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".kaggle-digits-written.json", "mixed.onnx"]


def test_predict_and_serve_take_the_exported_file(keras_runs, images, tmp_path, run_cli):
    out = tmp_path / "pair.onnx"
    assert run_cli("export", "--ensemble", keras_runs["pair"], "--out", out, "--runs-dir", keras_runs["runs"]).code == 0
    png = tmp_path / "digit.png"
    png.write_bytes(user_image(images[0], "PNG"))
    result = run_cli("predict", png, "--model", out)
    assert result.code == 0, result.err
    assert f"predictor: exported model {out} (onnx)" in result.out
    expected = load_exported(out).predict_proba(predict.prepare(png)[np.newaxis])[0]
    assert f"{png}: {int(expected.argmax())}" in result.out

    from fastapi.testclient import TestClient

    from kaggle_digits.predict import serve

    model = predict.load_predictor(tmp_path, tmp_path, model=out)
    with TestClient(serve.create_app(model), base_url="http://127.0.0.1:8000") as client:
        answer = client.post("/predict", content=png.read_bytes(), headers={"Content-Type": "image/png"}).json()
        assert answer["label"] == int(expected.argmax())
        np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-6)
        assert client.get("/health").json()["predictor"]["kind"] == "exported"


CHILD = """
import sys
from kaggle_digits import cli
code = cli.main(["predict", sys.argv[1], "--model", sys.argv[2]])
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras", "tf2onnx"})
print("LOADED", ",".join(loaded) or "none")
sys.exit(code)
"""


def test_an_onnx_model_predicts_without_importing_tensorflow(keras_runs, images, tmp_path):
    out = tmp_path / "cnn.onnx"
    assert cli.main(["export", "--trial", str(keras_runs["cnn"]), "--out", str(out)]) == 0
    png = tmp_path / "digit.png"
    png.write_bytes(user_image(images[1], "PNG"))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(png), str(out)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"{png}: " in done.stdout
    assert "LOADED none" in done.stdout, done.stdout


def test_bad_input_is_one_line_and_writes_nothing(keras_runs, tmp_path, run_cli):
    trial = ["--trial", str(keras_runs["dense"])]

    def refused(*args, message: str) -> None:
        result = run_cli("export", *args)
        assert result.code == 2, result.err
        assert len(result.err.splitlines()) == 1 and message in result.err, result.err
        assert "Traceback" not in result.err

    refused(*trial, "--format", "pickle", "--out", tmp_path / "m.onnx", message="--format 'pickle': choose one of")
    refused(*trial, "--out", tmp_path / "m.pt", message="give --format")
    refused(*trial, "--format", "onnx", "--out", tmp_path / "m.keras", message="written as a .onnx file")
    refused("--trial", tmp_path, "--out", tmp_path / "m.onnx", message="not a finished trial folder")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    refused("--ensemble", garbage, "--out", tmp_path / "m.onnx", message="not a JSON file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.json"]

    # A file of the user's is never replaced; the toolkit's own earlier export is.
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"the user's own file")
    refused(*trial, "--out", mine, message="exists and was not written by kaggle-digits")
    assert mine.read_bytes() == b"the user's own file"
    ours = tmp_path / "ours.onnx"
    for _ in range(2):
        assert run_cli("export", *trial, "--out", ours).code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".kaggle-digits-written.json",
        "garbage.json",
        "mine.onnx",
        "ours.onnx",
    ]

    # --model: a missing file, a file of another kind, a damaged file
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG")
    for model, message in (
        (tmp_path / "none.onnx", "file not found"),
        (garbage, "expected a .keras, .onnx"),
        (mine, "not a model"),
    ):
        result = run_cli("predict", png, "--model", model)
        assert result.code == 2 and len(result.err.splitlines()) == 1 and message in result.err, result.err
    assert json.loads((tmp_path / ".kaggle-digits-written.json").read_text()).keys() == {"ours.onnx"}
