"""The plugin passes psdkit's reward conformance checks and works in a recipe."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from psdkit_reward_colorfulness import ColorfulnessReward

from psdkit.cli.main import main
from psdkit.registry import Registry
from psdkit.testing.conformance import RewardConformance

ROOT = Path(__file__).resolve().parents[3]


class TestColorfulnessConformance(RewardConformance):
    plugin_cls = ColorfulnessReward


def test_discovered_through_entry_point():
    reg = Registry()
    info = reg.get_info("reward", "colorfulness")
    assert info.dist == "psdkit-reward-colorfulness"
    assert reg.load("reward", "colorfulness") is ColorfulnessReward


def test_grey_scores_zero_and_colour_scores_higher():
    model = ColorfulnessReward(ColorfulnessReward.Config())
    grey = torch.full((1, 3, 8, 8), 0.5)
    half = torch.zeros(1, 3, 8, 8)
    half[:, 0, :, :4] = 1.0  # red half
    half[:, 2, :, 4:] = 1.0  # blue half
    scores = model(torch.cat([grey, half]), ["", ""])
    assert scores[0] < 1e-3 and scores[1] > 1.0


def test_recipe_names_the_plugin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "fit",
            str(ROOT / "recipes" / "quickstart.yaml"),
            "name=color",
            "trainer.max_steps=2",
            "eval_rewards=[{name: colorfulness}]",
            "output.video_views=0",
            "output.mesh=false",
            "trainer.progress=false",
            "logger.name=none",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "runs" / "color" / "metrics.json").read_text())
    assert "colorfulness" in metrics["heldout_rewards"]
    assert metrics["heldout_rewards"]["colorfulness"] >= 0
