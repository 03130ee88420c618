"""HPSv2 / HPSv2.1 (Wu et al., https://arxiv.org/abs/2306.09341): human preference score of an open_clip ViT-H/14.

``score = cos(image, prompt)`` with the fine-tuned CLIP (the released scoring code's diagonal of
``image_features @ text_features.T``). The released ``.pt`` checkpoint is in open_clip format; it is
converted to transformers' CLIPModel on load, so neither open_clip nor torchvision is needed. Images are
fitted like the reference's ``light_augmentation`` (longest side to 224, zero padding; ``_clip.geometry``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from psdkit import hub
from psdkit.config.schema import knob
from psdkit.contracts import RewardModel
from psdkit.contracts.weights import WeightSize
from psdkit.errors import PluginError
from psdkit_plugins.backbones.clip import ClipScorer, load_tokenizer
from psdkit_plugins.backbones.open_clip import clip_config_from_open_clip, open_clip_to_hf
from psdkit_plugins.backbones.tower_speed import TowerSpeedConfig, speed_up_towers

FILES = {"v2": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}


@dataclasses.dataclass(frozen=True)
class HPSv2Config(TowerSpeedConfig):
    """Config of HPSv2."""

    version: Literal["v2", "v2.1"] = "v2.1"
    """Checkpoint version."""
    checkpoint: str = "xswu/HPSv2"
    """Hub repo, folder or .pt file of the open_clip-format checkpoint."""
    tokenizer: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    """Hub id or folder of the CLIP tokenizer."""
    vision_heads: int = knob(16, ge=1)
    """Attention heads of the vision tower (16 for ViT-H/14; not stored in the checkpoint)."""
    text_heads: int = knob(16, ge=1)
    """Attention heads of the text tower (16 for ViT-H/14)."""


class HPSv2(RewardModel):
    """Human Preference Score v2 / v2.1."""

    Config = HPSv2Config
    packages = {"transformers": "psdkit[rewards]"}

    @classmethod
    def required_weights(cls, config: HPSv2Config) -> list[tuple[str, bool]]:
        """(weights, present locally) for the checkpoint and the tokenizer."""
        ckpt = FILES[config.version]
        return [
            (f"{config.checkpoint}/{ckpt}", hub.file_status(config.checkpoint, ckpt)),
            (config.tokenizer, hub.status(config.tokenizer, "tokenizer_config.json")),
        ]

    @classmethod
    def random_weights(cls, config: HPSv2Config, folder: Path, size: WeightSize) -> list[str]:
        """A tiny CLIP in HPSv2's open_clip checkpoint layout."""
        if size != "tiny":
            raise NotImplementedError("hpsv2 offers tiny random weights only")
        from psdkit_plugins.rewards.checkpoints import save_hpsv2

        save_hpsv2(folder)
        return [
            f"checkpoint={folder}",
            "version=v2.1",
            f"tokenizer={folder / 'clip'}",
            "vision_heads=4",
            "text_heads=4",
        ]

    def __init__(self, config: HPSv2Config) -> None:
        super().__init__(config)
        from transformers import CLIPModel

        what = "reward hpsv2"
        path = hub.resolve_file(config.checkpoint, FILES[config.version], what)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.get("state_dict", state).items()}
        model = CLIPModel(clip_config_from_open_clip(state, config.vision_heads, config.text_heads))
        try:
            converted = open_clip_to_hf(state)
        except (KeyError, ValueError) as err:
            raise PluginError(f"{what}: {path} is not an open_clip CLIP checkpoint: {err}") from err
        result = model.load_state_dict(converted, strict=False)
        bad = [k for k in result.missing_keys if not k.endswith("position_ids")] + list(result.unexpected_keys)
        if bad:
            raise PluginError(f"{what}: {path} does not match a CLIP model: {bad[:5]}")
        self.scorer = ClipScorer(model, load_tokenizer(config.tokenizer, what), fit="pad")
        speed_up_towers(self.scorer.model, config, [self.scorer.model.vision_model])

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        return self.scorer.cosine(images, prompts)
