"""LAION aesthetic predictor v2: an MLP on CLIP ViT-L/14 image embeddings (scores ~1-10).

The head is the original ``.pth`` state dict (``layers.{0,2,4,6,7}``: linear layers with dropout between,
no activations); its layer sizes are read from the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn

from psdkit import hub
from psdkit.contracts import RewardModel
from psdkit.contracts.weights import WeightSize
from psdkit_plugins.backbones.clip import ClipScorer, load_clip, load_tokenizer
from psdkit_plugins.backbones.tower_speed import TowerSpeedConfig, speed_up_towers


@dataclasses.dataclass(frozen=True)
class AestheticConfig(TowerSpeedConfig):
    """Config of the LAION aesthetic predictor."""

    clip: str = "openai/clip-vit-large-patch14"
    """Hub id or folder of the CLIP ViT-L/14 the head was trained on."""
    head: str = "camenduru/improved-aesthetic-predictor"
    """Hub repo, folder or file of the head."""
    head_file: str = "sac+logos+ava1-l14-linearMSE.pth"
    """File name of the head inside ``head``."""


def head_from_state_dict(state: dict[str, Tensor]) -> nn.Sequential:
    """The MLP described by a ``layers.N.weight`` state dict (linear layers in index order)."""
    idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.endswith(".weight")})
    layers = [nn.Linear(state[f"layers.{i}.weight"].shape[1], state[f"layers.{i}.weight"].shape[0]) for i in idx]
    mlp = nn.Sequential(*layers)
    mlp.load_state_dict({f"{j}.{p}": state[f"layers.{i}.{p}"] for j, i in enumerate(idx) for p in ("weight", "bias")})
    return mlp


class AestheticReward(RewardModel):
    """Predicted aesthetic rating of each image; the prompt is ignored."""

    Config = AestheticConfig
    packages = {"transformers": "psdkit[rewards]"}

    @classmethod
    def required_weights(cls, config: AestheticConfig) -> list[tuple[str, bool]]:
        """(weights, present locally) for the CLIP model and the head."""
        return [
            (config.clip, hub.status(config.clip, "config.json")),
            (f"{config.head}/{config.head_file}", hub.file_status(config.head, config.head_file)),
        ]

    @classmethod
    def random_weights(cls, config: AestheticConfig, folder: Path, size: WeightSize) -> list[str]:
        """A tiny CLIP folder and a LAION-layout head on its 32-wide embedding."""
        if size != "tiny":
            raise NotImplementedError("aesthetic offers tiny random weights only")
        from psdkit_plugins.rewards.checkpoints import save_aesthetic_head, save_clip

        save_clip(folder / "clip")
        save_aesthetic_head(folder / "head" / config.head_file, in_dim=32)
        return [f"clip={folder / 'clip'}", f"head={folder / 'head'}"]

    def __init__(self, config: AestheticConfig) -> None:
        super().__init__(config)
        what = "reward aesthetic"
        self.scorer = ClipScorer(load_clip(config.clip, what), load_tokenizer(config.clip, what), fit="torchvision")
        speed_up_towers(self.scorer.model, config, [self.scorer.model.vision_model])
        path = hub.resolve_file(config.head, config.head_file, what)
        self.head = head_from_state_dict(torch.load(path, map_location="cpu", weights_only=True)).eval()

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        return self.head(self.scorer.image_embeds(images)).squeeze(-1)
