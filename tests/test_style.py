"""Code style checks that CI enforces: lint, and the size budget of the style guide."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "psdkit", ROOT / "plugins"]


def _dev_tool(module: str) -> None:
    """The checkers are part of the test command: missing, they fail rather than skip."""
    import importlib.util

    assert importlib.util.find_spec(module), f"{module} is in psdkit[dev]: pip install -e '.[dev]'"


def test_ruff_format_clean():
    _dev_tool("ruff")
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "psdkit", "plugins", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + "\nfix with: ruff format psdkit plugins tests"


def test_mypy_clean():
    """mypy over psdkit/ and plugins/psdkit_plugins (config: pyproject.toml's [tool.mypy])."""
    _dev_tool("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_ruff_clean():
    if (
        shutil.which("ruff") is None
        and subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode != 0
    ):
        pytest.skip("ruff is in psdkit[dev]")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--select",
            "F,E,I",
            "--line-length",
            "119",
            "psdkit",
            "plugins",
            "tests",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


def test_size_budget():
    """Files <= 500 lines, functions <= 60 lines (../shared/docs/style.md)."""
    offenders = []
    for src in SOURCES:
        for path in src.rglob("*.py"):
            text = path.read_text()
            if text.count("\n") > 500:
                offenders.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > 60:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert not offenders, "\n".join(offenders)


OVERRIDES = {  # contract methods whose docstring lives on the base class
    "forward",
    "setup",
    "training_step",
    "configure_optimizers",
    "train_dataloader",
    "param_groups",
    "set_progress",
    "refresh",
    "regularizers",
    "sample",
    "orbit",
    "bound",
    "encode_text",
    "encode_images",
    "decode",
    "alpha_sigma",
    "predict_noise",
    "num_train_timesteps",
    "references",
    "answers",
    "required_weights",
    "random_weights",
    "add_adapter",
    "adapter_enabled",
    "updating",
    "get_metrics",
    "density",
}


def _public_defs(tree: ast.Module):
    """Module-level functions and classes, and the methods of those classes (not nested helpers)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node
        if isinstance(node, ast.ClassDef):
            yield from (n for n in node.body if isinstance(n, ast.FunctionDef))


def test_public_functions_documented():
    """Every public function, class and method in psdkit/ and the built-in plugins has a docstring."""
    missing = []
    for src in SOURCES:
        for path in src.rglob("*.py"):
            if "tests" in path.parts or path.name == "conformance.py":
                continue
            for node in _public_defs(ast.parse(path.read_text())):
                name = node.name
                if name.startswith("_") or name in OVERRIDES or name.startswith("on_") or ast.get_docstring(node):
                    continue
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not missing, "\n".join(missing)
