"""The package's shape: no import cycle, the commands (`cli`) on top of the library and the only code
that prints, and a model family that is one module plus one registry line."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from kaggle_digits import models
from kaggle_digits.cli import main

PACKAGE = Path(__file__).resolve().parents[1] / "kaggle_digits"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `path` imports, anywhere in the file (lazy imports count too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(path, known) for name, path in known.items()}


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_only_the_commands_import_the_commands():
    offenders = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        if not name.startswith("kaggle_digits.cli") and name != "kaggle_digits.__main__"
        for target in targets
        if target.startswith("kaggle_digits.cli")
    ]
    assert not offenders, offenders


def _writes_to_the_terminal(node: ast.AST) -> bool:
    """print(...), or sys.stdout.write / sys.stderr.write."""
    if not isinstance(node, ast.Call):
        return False
    if isinstance(node.func, ast.Name):
        return node.func.id == "print"
    return ast.unparse(node.func) in ("sys.stdout.write", "sys.stderr.write")


def test_only_the_commands_print():
    offenders = []
    for name, path in _modules().items():
        if name.startswith("kaggle_digits.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if _writes_to_the_terminal(node):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not offenders, "print outside kaggle_digits/cli: " + ", ".join(offenders)


# --- a new family: one module (tests/toy_family.py) plus one registry line ---------------------------


def test_a_new_family_is_one_module_and_one_registry_line(monkeypatch, small_data, tmp_path, capsys):
    monkeypatch.setitem(models.FAMILIES, "toy", "tests.toy_family")  # the one registry line
    folders = ["--data-dir", str(small_data), "--runs-dir", str(tmp_path / "runs")]
    folders += ["--submissions-dir", str(tmp_path / "subs"), "--reports-dir", str(tmp_path / "reports")]

    assert main(["tune", "--model", "toy", "--preset", "quick", *folders]) == 0
    out = capsys.readouterr().out
    assert "study 'toy'" in out
    trial = tmp_path / "runs" / "toy" / "trial-0"
    assert (trial / "oof.npy").is_file() and (trial / "fold-0.npz").is_file()
    oof = np.load(trial / "oof.npy")
    assert oof.shape == (1500, 10) and np.allclose(oof.sum(axis=1), 1, atol=1e-5)

    assert main(["ensemble", "--studies", "toy", "--method", "mean", *folders]) == 0
    manifests = sorted((tmp_path / "subs").glob("*.json"))
    assert len(manifests) == 1

    from PIL import Image

    from kaggle_digits.data.dataset import load_test

    image = tmp_path / "digit.png"
    Image.fromarray(255 - load_test(small_data / "test.csv")[0]).resize((140, 140)).save(image)
    assert main(["predict", str(image), "--ensemble", str(manifests[0]), *folders]) == 0
    assert "digit.png:" in capsys.readouterr().out
