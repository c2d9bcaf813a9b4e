"""examples/quickstart.ipynb runs top to bottom (on a tiny slice, in a temporary folder), so it cannot rot."""

from __future__ import annotations

import os

import pytest

from tests.conftest import REPO

NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def test_the_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_quickstart_notebook_runs_top_to_bottom(small_data_copy, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    small = {"DIR": tmp_path / "work", "DATA_DIR": small_data_copy, "MODELS": "mlp"}
    small |= {"SUBSAMPLE": 600, "FOLDS": 2, "TRIALS": 1, "EPOCHS": 1}
    for name, value in small.items():
        monkeypatch.setenv(f"KAGGLE_DIGITS_EXAMPLE_{name}", str(value))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # a failing cell raises CellExecutionError with its traceback

    def text(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    everything = "\n".join(text(cell) for cell in notebook.cells if cell.cell_type == "code")
    assert "ensemble CV 0." in everything and "local leaderboard 0." in everything

    def images(cell) -> int:
        return sum("image/png" in o.get("data", {}) for o in cell.outputs)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    report, drawn = (next(c for c in code if marker in c.source) for marker in ("report.build()", "to_mnist("))
    assert images(report) >= 3 and images(drawn) == 1, "the report's figures and the drawn digit, inline"
    assert "Traceback" not in everything
    assert "most likely: " in everything
    assert "valid, 500 rows" in everything and "dry run: nothing was sent" in everything
    submissions = list((tmp_path / "work" / "submissions").glob("*-cv*.csv"))
    assert len(submissions) == 1 and (tmp_path / "work" / "reports" / "example" / "index.html").is_file()
    assert not (tmp_path / "work" / "submissions" / "history.csv").read_text().count("kaggle-digits example")
