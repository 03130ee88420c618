"""Recipes: merging, overrides, and one clear error per malformed input (exit 2, no run directory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from psdkit.cli.main import main
from psdkit.config.recipe import apply_overrides, load_recipe, merge
from psdkit.errors import RecipeError


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def quickstart_with(tmp_path: Path, recipes_dir: Path, extra: str) -> Path:
    return write(tmp_path, f"base: {recipes_dir / 'quickstart.yaml'}\n{extra}")


def test_every_shipped_recipe_validates(recipes_dir):
    for path in sorted(recipes_dir.rglob("*.yaml")):
        recipe = load_recipe(path)
        assert recipe.components["guidance"].info.dist == "psdkit"


def test_base_merge_and_override(tmp_path, recipes_dir):
    p = quickstart_with(tmp_path, recipes_dir, "name: child\ntrainer:\n  max_steps: 7\n")
    r = load_recipe(p, ["guidance.config.guidance_scale=3.5", "prompt.text=a red sphere"])
    assert r.schema.name == "child" and r.schema.trainer.max_steps == 7
    assert r.schema.trainer.val_every == 100  # from the base
    assert r.components["guidance"].config.guidance_scale(0) == 3.5
    assert r.schema.prompt.text == "a red sphere"


def test_renaming_a_component_drops_its_old_config(recipes_dir):
    r = load_recipe(recipes_dir / "quickstart.yaml", ["guidance.name=sds", "name=other"])
    assert r.schema.guidance.name == "sds" and r.schema.name == "other"
    assert merge({"g": {"name": "a", "config": {"x": 1}}}, {"g": {"name": "b"}}) == {"g": {"name": "b"}}


def test_override_syntax_errors():
    with pytest.raises(RecipeError, match=r"an override must look like key.path=value"):
        apply_overrides({}, ["trainer.max_steps"])
    with pytest.raises(RecipeError, match=r"eval_rewards\.5: no such list index"):
        apply_overrides({"eval_rewards": [{}]}, ["eval_rewards.5.name=x"])


BAD = {
    "unknown plugin": (
        "guidance:\n  name: sdss\n",
        r"guidance\.name: no guidance plugin with this name is installed "
        r"\(found 'sdss'\); allowed: .*\bpsd\b.*\bsds\b",
    ),
    "unknown key": (
        "guidance:\n  config:\n    guidance_scael: 3\n",
        r"guidance\.config\.guidance_scael: unknown key; allowed: .*guidance_scale",
    ),
    "wrong type": ("trainer:\n  max_steps: many\n", r"trainer\.max_steps: expected an integer \(found 'many'\)"),
    "out of range": (
        "renderer:\n  config:\n    num_samples: 0\n",
        r"renderer\.config\.num_samples: out of range, must be >= 2 \(found 0\)",
    ),
    "bad enum": (
        "guidance:\n  config:\n    form: p3\n",
        r"guidance\.config\.form: not an allowed value \(found 'p3'\)",
    ),
    "missing reward": ("reward: null\n", r"reward: guidance 'psd' needs a reward model"),
    "top-level typo": ("trainr:\n  max_steps: 3\n", r"trainr: unknown key"),
    "option of an option-less plugin": (
        "renderer:\n  name: image\n  config:\n    num_samples: 8\n",
        r"renderer\.config\.num_samples: unknown key: this component takes no options",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipes_raise_with_dotted_path(case, tmp_path, recipes_dir):
    extra, match = BAD[case]
    with pytest.raises(RecipeError, match=match):
        load_recipe(quickstart_with(tmp_path, recipes_dir, extra))


def test_file_errors(tmp_path):
    with pytest.raises(RecipeError, match=r"nope\.yaml: recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match=r"r\.yaml: the recipe is empty"):
        load_recipe(write(tmp_path, "# nothing\n"))
    with pytest.raises(RecipeError, match=r"r\.yaml:3: YAML syntax error"):
        load_recipe(write(tmp_path, "name: x\nprompt:\n\ttext: a\n"))
    with pytest.raises(RecipeError, match=r"a recipe must be a mapping"):
        load_recipe(write(tmp_path, "- 1\n- 2\n"))


def test_base_of_base_is_refused(tmp_path, recipes_dir):
    mid = write(tmp_path, f"base: {recipes_dir / 'quickstart.yaml'}\n", "mid.yaml")
    with pytest.raises(RecipeError, match=r"mid\.yaml: base: a base recipe cannot have a base"):
        load_recipe(write(tmp_path, f"base: {mid}\n"))


@pytest.mark.parametrize("case", ["unknown plugin", "unknown key", "wrong type", "out of range"])
def test_cli_exits_2_and_writes_nothing(case, tmp_path, recipes_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = quickstart_with(tmp_path, recipes_dir, BAD[case][0])
    code = main(["fit", str(recipe)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("psdkit: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_cli_file_errors_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "missing.yaml"]) == 2
    assert "missing.yaml: recipe file not found" in capsys.readouterr().err
    assert main(["fit", str(write(tmp_path, ""))]) == 2
    assert main(["fit", str(write(tmp_path, "a: [", "s.yaml"))]) == 2
    assert not (tmp_path / "runs").exists()


def test_console_script_exit_code(tmp_path):
    """The installed `psdkit` command (a fresh process) exits 2 on a bad override."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "psdkit.cli.main",
            "fit",
            str(Path(__file__).parents[1] / "recipes" / "quickstart.yaml"),
            "trainer.max_steps=-3",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "trainer.max_steps: out of range, must be >= 1 (found -3)" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_resolved_recipe_is_plain_data(recipes_dir):
    data = load_recipe(recipes_dir / "quickstart.yaml").to_dict()
    text = yaml.safe_dump(data)
    assert "!!python" not in text
    assert data["guidance"]["plugin"]["dist"] == "psdkit"
    assert data["eval_rewards"][0]["name"] == "analytic-heldout"


def test_exponent_floats_without_a_dot_are_numbers(tmp_path, recipes_dir):
    """YAML 1.1 (PyYAML) reads ``1e-8`` as a string; recipes read it as YAML 1.2 does."""
    path = quickstart_with(tmp_path, recipes_dir, "optim:\n  eps: 1e-8\n")
    assert load_recipe(path).schema.optim.eps == 1e-8
    assert load_recipe(path, ["optim.eps=2E-6"]).schema.optim.eps == 2e-6
    with pytest.raises(RecipeError, match="optim.eps: expected a number"):
        load_recipe(path, ["optim.eps=1e-8x"])


def test_the_old_loss_section_says_where_the_regularizers_went(tmp_path, recipes_dir):
    path = quickstart_with(tmp_path, recipes_dir, "loss:\n  opacity_sparsity: 0.1\n")
    with pytest.raises(
        RecipeError,
        match=r"^loss: the render regularizers moved to the renderer: set "
        r"renderer\.config\.opacity_sparsity",
    ):
        load_recipe(path)
