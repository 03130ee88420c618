"""CLIP score: ``max(scale * cos(image, prompt), floor)`` (Radford et al., 2021; Hessel et al., 2021).

The defaults follow torchmetrics' ``CLIPScore``, the implementation text-to-3D papers report:
``max(100 * cos, 0)`` with CLIPImageProcessor's geometry. torchmetrics floors the batch mean; psdkit floors each
image (the same for one image, and for any batch whose cosines are all >= 0). A floored score has no gradient:
set ``floor: null`` to train on it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import Tensor

from psdkit import hub
from psdkit.config.schema import knob
from psdkit.contracts import RewardModel
from psdkit.contracts.weights import WeightSize
from psdkit_plugins.backbones.clip import ClipScorer, load_clip, load_tokenizer
from psdkit_plugins.backbones.tower_speed import TowerSpeedConfig, speed_up_towers


@dataclasses.dataclass(frozen=True)
class ClipScoreConfig(TowerSpeedConfig):
    """Config of the CLIP score."""

    model: str = "openai/clip-vit-large-patch14"
    """Hub id or local folder of a transformers CLIPModel."""
    tokenizer: str | None = None
    """Tokenizer hub id or folder; null: the model's."""
    scale: float = knob(100.0, gt=0.0)
    """Multiplier of the cosine similarity."""
    floor: float | None = 0.0
    """Scores below this are raised to it (torchmetrics: 0); null: no floor."""


class ClipScore(RewardModel):
    """Text-image agreement of a CLIP model."""

    Config = ClipScoreConfig
    packages = {"transformers": "psdkit[rewards]"}

    @classmethod
    def required_weights(cls, config: ClipScoreConfig) -> list[tuple[str, bool]]:
        """(model, present locally)."""
        return [(config.model, hub.status(config.model, "config.json"))]

    @classmethod
    def random_weights(cls, config: ClipScoreConfig, folder: Path, size: WeightSize) -> list[str]:
        """A tiny transformers CLIPModel folder, tokenizer included."""
        if size != "tiny":
            raise NotImplementedError("clip-score offers tiny random weights only")
        from psdkit_plugins.rewards.checkpoints import save_clip

        save_clip(folder)
        return [f"model={folder}", "tokenizer=null"]

    def __init__(self, config: ClipScoreConfig) -> None:
        super().__init__(config)
        what = "reward clip-score"
        self.scorer = ClipScorer(load_clip(config.model, what), load_tokenizer(config.tokenizer or config.model, what))
        speed_up_towers(self.scorer.model, config, [self.scorer.model.vision_model])

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        score = self.config.scale * self.scorer.cosine(images, prompts)
        return score if self.config.floor is None else score.clamp_min(self.config.floor)
