"""Docs that are generated from code stay in sync with it."""

from __future__ import annotations

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
    assert "pip install -q torch==2.13.0" in ci and "python -m pytest -q" in ci


def test_plugin_hooks_list_is_up_to_date():
    from psdkit.cli.hookdoc import BEGIN, END, render

    text = (ROOT / "docs" / "plugins.md").read_text()
    assert text[text.index(BEGIN) : text.index(END) + len(END)] == render(), (
        "docs/plugins.md's hook list is stale: paste the output of `python -m psdkit.cli.hookdoc`"
    )
