"""CLIP score: ``scale * cos(image, prompt)`` with a CLIP model (Radford et al., 2021; Hessel et al., 2021)."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from psdkit import hub
from psdkit.config.schema import knob
from psdkit.contracts import RewardModel
from psdkit_plugins.rewards._clip import ClipScorer, load_clip, load_tokenizer
from psdkit_plugins.rewards._speed import TowerSpeedConfig, speed_up_towers


@dataclasses.dataclass(frozen=True)
class ClipScoreConfig(TowerSpeedConfig):
    """Config of the CLIP score."""

    model: str = "openai/clip-vit-large-patch14"
    """Hub id or local folder of a transformers CLIPModel."""
    tokenizer: str | None = None
    """Tokenizer hub id or folder; null: the model's."""
    scale: float = knob(100.0, gt=0.0)
    """Multiplier of the cosine similarity."""


class ClipScore(RewardModel):
    """Text-image agreement of a CLIP model."""

    Config = ClipScoreConfig

    @classmethod
    def required_weights(cls, config: ClipScoreConfig) -> list[tuple[str, bool]]:
        """(model, present locally)."""
        return [(config.model, hub.status(config.model, "config.json"))]

    def __init__(self, config: ClipScoreConfig) -> None:
        super().__init__(config)
        what = "reward clip-score"
        self.scorer = ClipScorer(load_clip(config.model, what), load_tokenizer(config.tokenizer or config.model, what))
        speed_up_towers(self.scorer.model, config, [self.scorer.model.vision_model])

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        return self.config.scale * self.scorer.cosine(images, prompts)

    def weights(self) -> list[str]:
        return [self.config.model]
