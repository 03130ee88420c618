"""Docs that are generated from code stay in sync with it."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from psdkit.cli.refdoc import render

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_reference_is_up_to_date():
    assert (ROOT / "docs" / "recipes.md").read_text() == render(), (
        "docs/recipes.md is stale: run `python -m psdkit.cli.refdoc > docs/recipes.md`"
    )


def test_readme_starts_with_the_two_setup_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    commands = [line for line in block if not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("psdkit fit recipes/quickstart.yaml")
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    pytest_command = commands[1][commands[1].index("python -m pytest") :]
    assert "pip install -q torch==2.13.0" in ci and f"\n{pytest_command}\n" in ci, "CI must run the README's tests"


def test_plugin_hooks_list_is_up_to_date():
    from psdkit.cli.hookdoc import BEGIN, END, render

    text = (ROOT / "docs" / "plugins.md").read_text()
    assert text[text.index(BEGIN) : text.index(END) + len(END)] == render(), (
        "docs/plugins.md's hook list is stale: paste the output of `python -m psdkit.cli.hookdoc`"
    )


def tutorial_module(marker: str) -> types.ModuleType:
    """The python block after ``<!-- tutorial: NAME -->`` in docs/plugins.md, executed as a module."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    start = text.index("```python\n", text.index(f"<!-- tutorial: {marker} -->")) + len("```python\n")
    module = types.ModuleType(f"psdkit_tutorial_{marker}")
    sys.modules[module.__name__] = module  # dataclasses and field_docs look the class up by module
    exec(compile(text[start : text.index("```", start)], module.__name__, "exec"), module.__dict__)
    return module


def test_guidance_tutorial_passes_conformance_and_trains(tmp_path, monkeypatch):
    import importlib.metadata as md
    import inspect

    import psdkit.registry as registry
    from psdkit.cli.main import main
    from psdkit.testing.conformance import GuidanceConformance

    mod = tutorial_module("guidance")
    monkeypatch.setattr(inspect, "getsource", lambda obj, _real=inspect.getsource: _source_of(obj, mod, _real))

    class Check(GuidanceConformance):
        plugin_cls = mod.AnnealedSDS

    checks = [name for name in dir(Check) if name.startswith("test_")]
    assert len(checks) >= 5
    for name in checks:
        getattr(Check(), name)()

    class EntryPoint:
        name, value, group = "annealed-sds", f"{mod.__name__}:AnnealedSDS", "psdkit.guidance"
        dist = md.distribution("psdkit")

        def load(self):
            return mod.AnnealedSDS

    real = md.entry_points
    extra = registry.Registry(
        lambda group: [*real(group=group), *([EntryPoint()] if group == EntryPoint.group else [])]
    )
    monkeypatch.setattr(registry, "_default", extra)
    recipe = str(ROOT / "recipes" / "quickstart.yaml")
    small = ["trainer.max_steps=2", "trainer.progress=false", "output.video_views=0", "output.mesh=false"]
    argv = ["fit", recipe, "guidance.name=annealed-sds", f"output.root={tmp_path}", *small]
    assert main([*argv, "guidance.config.guidance_scale={start: 10.0, end: 2.0, to_step: 1}"]) == 0
    assert (tmp_path / "quickstart" / "metrics.json").is_file()


def _source_of(obj, mod, real):
    """inspect.getsource for the tutorial's classes (they have no file), from the same docs block."""
    if getattr(obj, "__module__", None) != mod.__name__:
        return real(obj)
    text = (ROOT / "docs" / "plugins.md").read_text()
    start = text.index(f"class {obj.__name__}")
    end = text.find("\n\n\nclass ", start)
    return text[start : end if end != -1 else text.index("```", start)]
