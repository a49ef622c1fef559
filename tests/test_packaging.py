"""One distribution whose modules all live under ``emotion_ai``, declaring what it imports."""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _setup_keywords() -> dict:
    call = next(node for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    return {k.arg: k.value for k in call.keywords}


def _folders() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    assign = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "FOLDERS")
    return ast.literal_eval(assign.value)


def _third_party_imports() -> set[str]:
    """Dotted names imported by the project's modules that are neither stdlib nor ours."""
    found = set()
    for folder in _folders():
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    found.add(node.module)
    return {m for m in found if m.split(".")[0] not in sys.stdlib_module_names | {"emotion_ai", "__future__"}}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_distribution_is_declared():
    requirements = ast.literal_eval(_setup_keywords()["install_requires"])
    declared = {_normalize(re.split(r"[<>=!~ \[]", r)[0]) for r in requirements}
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_third_party_imports()):
        top = module.split(".")[0]
        dists = {_normalize(d) for d in providers.get(top, [])}
        if top == "google":  # a namespace many distributions share: find the one with this subpackage
            sub = "/".join(module.split(".")[:2]) + "/"
            dists = {_normalize(d) for d in providers["google"]
                     if any(str(f).startswith(sub) for f in importlib.metadata.files(d) or [])}
        if not dists & declared:
            missing[module] = sorted(dists)
    assert missing == {}, f"imported but not in setup.py install_requires: {missing}"


def test_the_folders_install_under_emotion_ai_only():
    keywords = _setup_keywords()
    assert "emotion_ai.pipelines.cli:main" in ast.literal_eval(keywords["entry_points"])["console_scripts"][0]
    for folder in _folders():  # the (editable) install maps emotion_ai.<folder> onto the folder
        module = importlib.import_module(f"emotion_ai.{folder}")
        assert Path(module.__file__).resolve() == ROOT / folder / "__init__.py"
    assert not (ROOT / "emotion_ai").exists(), "the checkout keeps the mandated top-level folders"


@pytest.mark.e2e
def test_pip_install_in_a_fresh_venv_gives_every_command(tmp_path):
    """tools/check_install.sh: fresh venv, the lock, ``pip install .``, then from outside the
    checkout every command's --help and an import of every module."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv is installed into the venv by make setup"
    try:
        base_python = getattr(sys, "_base_executable", None) or sys.executable  # the interpreter the venv came from
        done = subprocess.run(["tools/check_install.sh", uv, str(tmp_path / "venv")], cwd=ROOT, capture_output=True,
                              text=True, timeout=900, env={**os.environ, "PYTHON311": base_python})
    finally:
        shutil.rmtree(tmp_path / "venv", ignore_errors=True)  # gigabytes; pytest keeps tmp_path around
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    from emotion_ai.pipelines.cli import main

    assert {f"help: emotion-ai {name}" for name in main.commands} <= set(done.stdout.splitlines())
    modules = sum(1 for folder in _folders() for _ in (ROOT / folder).rglob("*.py"))
    assert f"imports: {modules} modules" in done.stdout
    from emotion_ai.components import branches, curated_schema

    for branch in branches.BRANCHES:  # the curated schemas ship as package data, unchanged
        assert f"schema: {branch.name} {curated_schema.file_hash(curated_schema.source_path(branch))}" in done.stdout
    assert "framing: ['emotion', 'keypoints'] right_eye,left_eye,nose_tip,mouth_center" in done.stdout
