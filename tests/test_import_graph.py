"""Imports flow one way: entry point -> kubeflow -> pipelines -> serving -> data -> components
-> the leaf ``components.spec``. Read from the source (every import statement, including the
ones inside functions), so a lazy upward import is caught too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("pipelines", "components", "data", "serving", "kubeflow")
LEAF = "emotion_ai.components.spec"
ENTRY_POINTS = {"emotion_ai.pipelines.cli"}
# Higher may import lower; a package may import itself (the leaf excepted: it imports nothing).
RANK = {"emotion_ai.kubeflow": 5, "emotion_ai.pipelines": 4, "emotion_ai.serving": 3, "emotion_ai.data": 2,
        "emotion_ai.components": 1}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("emotion_ai", *parts))


def _imports(source: str, label: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import statement in the source."""
    found = []
    for node in ast.walk(ast.parse(source, label)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from emotion_ai.components import spec`` imports the module ``...components.spec``
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def _rank(module: str) -> int:
    if module in ENTRY_POINTS:
        return 9
    if module == LEAF or module.startswith(LEAF + "."):
        return 0
    return max((r for p, r in RANK.items() if module == p or module.startswith(p + ".")), default=-1)


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def violations(relative_path: str, source: str) -> list[str]:
    """What is wrong with the imports of the project file at ``relative_path``."""
    importer = _module_name(ROOT / relative_path)
    problems = []
    for line, imported in _imports(source, relative_path):
        where = f"{relative_path}:{line}: {importer} imports {imported}"
        if imported.startswith("."):
            problems.append(f"{where} (relative import; use emotion_ai.)")
        elif imported.split(".")[0] in FOLDERS:
            problems.append(f"{where} (bare top-level name; the installed package is emotion_ai)")
        elif imported.startswith("emotion_ai."):
            if _rank(importer) == 0:
                problems.append(f"{where} (the leaf imports nothing of the project)")
            elif _rank(imported) > _rank(importer) or (
                    _rank(imported) == _rank(importer) and _package(imported) != _package(importer)):
                problems.append(f"{where} (a lower layer imports a higher one)")
    return problems


def test_imports_flow_one_way():
    files = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))
    assert len(files) > 30, "project modules not found"
    problems = [v for p in files for v in violations(str(p.relative_to(ROOT)), p.read_text())]
    assert problems == []


@pytest.mark.parametrize("path, source, expected", [
    ("components/keypoints/trainer.py", "from emotion_ai.pipelines import config\n", "a lower layer imports a higher"),
    ("serving/predict.py", "def f():\n    from emotion_ai.pipelines import report\n", "a lower layer imports a higher"),
    ("data/readers.py", "import emotion_ai.serving.server\n", "a lower layer imports a higher"),
    ("serving/server.py", "from emotion_ai.kubeflow import deploy\n", "a lower layer imports a higher"),
    ("components/spec.py", "from emotion_ai.components.common import image\n", "the leaf imports nothing"),
    ("pipelines/report.py", "from components import spec\n", "bare top-level name"),
    ("pipelines/report.py", "from . import config\n", "relative import"),
])
def test_the_check_catches_a_wrong_import(path, source, expected):
    found = violations(path, source)
    assert len(found) == 1 and expected in found[0] and found[0].startswith(f"{path}:")


@pytest.mark.parametrize("path, source", [
    ("pipelines/cli.py", "from emotion_ai.kubeflow import runner\n"),  # the entry point
    ("kubeflow/runner.py", "from emotion_ai.pipelines.pipeline import create_pipeline\n"),
    ("pipelines/evaluate.py", "from emotion_ai.serving.local_model import ServedModel\n"),
    ("serving/predict.py", "from emotion_ai.data import readers\n"),
    ("components/keypoints/trainer.py", "from emotion_ai.components import spec\n"),
])
def test_the_check_allows_downward_imports(path, source):
    assert violations(path, source) == []
