"""The house rules that keep the architecture as issue 11 left it: the core knows no plugin, every hook is on
a contract, private modules stay private, references resolve, and the package has a face."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

import psdkit
from psdkit.cli.main import main
from psdkit.contracts import RewardModel
from psdkit.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
CORE = sorted((ROOT / "psdkit").rglob("*.py"))
COMPONENT_WORDS = (
    "cls",
    "comp",
    "prior",
    "reward",
    "guidance",
    "representation",
    "renderer",
    "camera",
    "background",
    "plugin",
    "strategy",
)


def test_the_core_never_names_the_built_in_plugins():
    """Entry points are the only link: no import of psdkit_plugins, not even a mention, under psdkit/."""
    offenders = [str(p.relative_to(ROOT)) for p in CORE if "psdkit_plugins" in p.read_text()]
    assert not offenders, offenders


def test_no_attribute_probing_of_plugins_in_the_core():
    """Optional hooks live on the contracts with defaults; the core never asks a component with getattr/hasattr."""
    offenders = []
    for path in CORE:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and node.args
            ):
                target = ast.unparse(node.args[0])
                if any(word in target for word in COMPONENT_WORDS):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, offenders


def test_private_modules_are_imported_only_by_their_own_kind():
    pattern = re.compile(r"psdkit_plugins\.(\w+)\.(_\w+)")
    offenders = []
    for path in [*ROOT.glob("plugins/**/*.py"), *ROOT.glob("tests/*.py"), *CORE]:
        for kind, module in pattern.findall(path.read_text()):
            if path.parent != ROOT / "plugins" / "psdkit_plugins" / kind:
                offenders.append(f"{path.relative_to(ROOT)}: psdkit_plugins.{kind}.{module}")
    assert not offenders, offenders


def test_path_references_in_code_and_docs_resolve():
    """A comment or doc naming tests/..., docs/..., recipes/... must name a file that exists."""
    ref = re.compile(
        r"(?<![\w/.-])((?:tests|docs|recipes|scripts|psdkit|plugins|sweeps)/[\w./-]+"
        r"\.(?:py|md|yaml|sh|json|png))"
    )
    files = [
        *CORE,
        *ROOT.glob("plugins/**/*.py"),
        *ROOT.glob("tests/*.py"),
        *ROOT.glob("docs/*.md"),
        ROOT / "README.md",
        *ROOT.glob("recipes/**/*.yaml"),
        *ROOT.glob("scripts/*"),
    ]
    missing = set()
    for path in files:
        for found in ref.findall(path.read_text(errors="replace")):
            found = found.rstrip(".")
            if not (ROOT / found).exists() and not any((p / found).exists() for p in ROOT.glob("plugins/*")):
                missing.add(f"{path.relative_to(ROOT)} -> {found}")
    assert not missing, sorted(missing)


def test_the_package_has_a_face():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", psdkit.__version__)
    for name in psdkit.__all__:
        assert getattr(psdkit, name) is not None, name
    assert {"DiffusionPrior", "RewardModel", "GuidanceStrategy", "knob", "Schedule", "RewardConformance"} <= set(
        psdkit.__all__
    )
    out = subprocess.run(
        [sys.executable, "-m", "psdkit.cli.main", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"psdkit {psdkit.__version__}"


# ---- a third-party reward's weights reach doctor and the bench through its contract alone -----------------
@dataclasses.dataclass(frozen=True)
class WeightedConfig:
    """Config."""

    checkpoint: str = "someone/their-reward"
    """Hub id of the checkpoint."""


class WeightedReward(RewardModel):
    """A reward of a third party that declares one checkpoint."""

    Config = WeightedConfig

    @classmethod
    def required_weights(cls, config: WeightedConfig) -> list[tuple[str, bool]]:
        return [(f"{config.checkpoint}/model.safetensors", False)]

    def forward(self, images, prompts):
        return images.mean(dim=(1, 2, 3))


class _EntryPoint:
    def __init__(self, name: str, value: str, group: str) -> None:
        self.name, self.value, self.group = name, value, group
        self.dist = type("Dist", (), {"name": "their-reward", "version": "0.3"})()

    def load(self):
        return WeightedReward


@pytest.fixture
def third_party(monkeypatch):
    """The installed plugins plus ``weighted`` (a reward defined in this test) in the process registry."""
    import importlib.metadata as md

    import psdkit.registry as registry

    def entry_points(group: str | None = None, **kw):
        found = list(md.entry_points(group=group, **kw))
        if group == "psdkit.rewards":
            found.append(_EntryPoint("weighted", f"{__name__}:WeightedReward", group))
        return found

    monkeypatch.setattr(registry, "_default", Registry(entry_points))


def test_a_third_party_reward_with_required_weights_appears_in_doctor(third_party, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base: {ROOT / 'recipes' / 'quickstart.yaml'}\neval_rewards: [{{name: weighted}}]\n")
    assert main(["doctor", str(recipe)]) == 1  # a declared weight is missing
    out = capsys.readouterr().out
    assert "eval_rewards[0]  weighted: someone/their-reward/model.safetensors MISSING" in out
    assert "prior            analytic: no weights needed" in out


def test_a_third_party_reward_without_random_weights_is_named_by_the_bench(third_party, tmp_path):
    from psdkit.bench.random_weights import random_weight_overrides
    from psdkit.config.recipe import load_recipe
    from psdkit.errors import RecipeError

    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", ["reward.name=weighted"])
    with pytest.raises(RecipeError, match=r"reward\.name: cannot build random weights.*\(found 'weighted'\)"):
        random_weight_overrides(recipe, "tiny", tmp_path)
