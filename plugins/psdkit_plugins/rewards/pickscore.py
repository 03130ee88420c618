"""PickScore (Kirstain et al., https://arxiv.org/abs/2305.01569): a CLIP-H fine-tuned on Pick-a-Pic preferences.

``score = exp(logit_scale) * cos(image, prompt)``, the model's own logit. An evaluation metric of the
PSD paper: prefer not to train on it when you also report it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import Tensor

from psdkit import hub
from psdkit.contracts import RewardModel
from psdkit.contracts.weights import WeightSize
from psdkit_plugins.backbones.clip import ClipScorer, load_clip, load_tokenizer
from psdkit_plugins.backbones.tower_speed import TowerSpeedConfig, speed_up_towers


@dataclasses.dataclass(frozen=True)
class PickScoreConfig(TowerSpeedConfig):
    """Config of PickScore."""

    model: str = "yuvalkirstain/PickScore_v1"
    """Hub id or local folder of the PickScore CLIPModel."""
    tokenizer: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    """Hub id or folder of its tokenizer (PickScore ships none)."""


class PickScore(RewardModel):
    """Human-preference score of a CLIP-H fine-tuned on Pick-a-Pic."""

    Config = PickScoreConfig
    packages = {"transformers": "psdkit[rewards]"}

    @classmethod
    def required_weights(cls, config: PickScoreConfig) -> list[tuple[str, bool]]:
        """(model, present locally) for the model and the tokenizer."""
        return [
            (config.model, hub.status(config.model, "config.json")),
            (config.tokenizer, hub.status(config.tokenizer, "tokenizer_config.json")),
        ]

    @classmethod
    def random_weights(cls, config: PickScoreConfig, folder: Path, size: WeightSize) -> list[str]:
        """A tiny transformers CLIPModel folder (PickScore's layout), tokenizer included."""
        if size != "tiny":
            raise NotImplementedError("pickscore offers tiny random weights only")
        from psdkit_plugins.rewards.checkpoints import save_clip

        save_clip(folder)
        return [f"model={folder}", f"tokenizer={folder}"]

    def __init__(self, config: PickScoreConfig) -> None:
        super().__init__(config)
        what = "reward pickscore"
        self.scorer = ClipScorer(load_clip(config.model, what), load_tokenizer(config.tokenizer, what))
        speed_up_towers(self.scorer.model, config, [self.scorer.model.vision_model])

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        return self.scorer.model.logit_scale.exp() * self.scorer.cosine(images, prompts)
