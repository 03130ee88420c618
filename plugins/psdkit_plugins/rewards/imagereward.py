"""ImageReward (Xu et al., https://arxiv.org/abs/2304.05977): a BLIP reward model of human preference.

The prompt, encoded by BLIP's text encoder with cross-attention to the image, gives a [CLS] feature that an
MLP maps to a reward, normalized by the training mean and std (as the released ``score``). The released
``ImageReward.pt`` (original BLIP layout) is converted to transformers' BLIP models on load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn

from psdkit import hub
from psdkit.config.schema import knob
from psdkit.contracts import RewardModel
from psdkit.contracts.weights import WeightSize
from psdkit.errors import PluginError
from psdkit_plugins.backbones.blip import blip_configs, split, vit_to_hf
from psdkit_plugins.backbones.clip import preprocess
from psdkit_plugins.backbones.tower_speed import TowerSpeedConfig, speed_up_towers
from psdkit_plugins.rewards.aesthetic import head_from_state_dict

MEAN, STD = 0.16717362830052426, 1.0333394966054072  # ImageReward's reward normalization
# Keys the original BLIP saves that transformers' port has no use for: the text encoder's position-id buffer
# (persistent in BLIP's med.py). Any other mismatch means the checkpoint is not ImageReward's BLIP.
HARMLESS = {"vision": frozenset(), "text": frozenset({"embeddings.position_ids"})}


@dataclasses.dataclass(frozen=True)
class ImageRewardConfig(TowerSpeedConfig):
    """Config of ImageReward."""

    checkpoint: str = "THUDM/ImageReward"
    """Hub repo, folder or file of ImageReward.pt."""
    checkpoint_file: str = "ImageReward.pt"
    """File name inside ``checkpoint``."""
    tokenizer: str = "bert-base-uncased"
    """Hub id or folder of the BERT tokenizer ([DEC] and [ENC] are added as in BLIP)."""
    vision_heads: int = knob(16, ge=1)
    """Attention heads of the ViT (16 for BLIP ViT-L)."""
    text_heads: int = knob(12, ge=1)
    """Attention heads of the text encoder (12 for BERT-base)."""
    max_length: int = knob(35, ge=4, le=4096)
    """Prompt length in tokens (35 in ImageReward)."""


class ImageReward(RewardModel):
    """ImageReward's human-preference score (normalized, ~N(0, 1) over its training data)."""

    Config = ImageRewardConfig
    packages = {"transformers": "psdkit[rewards]"}

    @classmethod
    def required_weights(cls, config: ImageRewardConfig) -> list[tuple[str, bool]]:
        """(weights, present locally) for the checkpoint and the tokenizer."""
        return [
            (
                f"{config.checkpoint}/{config.checkpoint_file}",
                hub.file_status(config.checkpoint, config.checkpoint_file),
            ),
            (config.tokenizer, hub.status(config.tokenizer, "tokenizer_config.json")),
        ]

    @classmethod
    def random_weights(cls, config: ImageRewardConfig, folder: Path, size: WeightSize) -> list[str]:
        """BLIP ViT-L/16 + BERT-base (``full``, saved in fp16) or a tiny BLIP, in ImageReward.pt's layout."""
        from psdkit_plugins.rewards.checkpoints import save_imagereward

        save_imagereward(folder, size, dtype=torch.float16 if size == "full" else torch.float32)
        heads = ["vision_heads=4", "text_heads=4"] if size == "tiny" else ["vision_heads=16", "text_heads=12"]
        return [f"checkpoint={folder}", "checkpoint_file=ImageReward.pt", f"tokenizer={folder / 'tokenizer'}", *heads]

    def __init__(self, config: ImageRewardConfig) -> None:
        super().__init__(config)
        from transformers import BertTokenizer, BlipTextModel, BlipVisionModel

        what = "reward imagereward"
        path = hub.resolve_file(config.checkpoint, config.checkpoint_file, what)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        vit, text = split(state, "blip.visual_encoder."), split(state, "blip.text_encoder.")
        vcfg, tcfg = blip_configs(vit, text, config.vision_heads, config.text_heads)
        self.vision, self.text = BlipVisionModel(vcfg), BlipTextModel(tcfg, add_pooling_layer=False)
        for side, module, weights in (("vision", self.vision, vit_to_hf(vit)), ("text", self.text, text)):
            result = module.load_state_dict(weights, strict=False)
            missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
            unexpected = [k for k in result.unexpected_keys if k not in HARMLESS[side]]
            if missing or unexpected:
                raise PluginError(
                    f"{what}: {path} does not match BLIP's {side} encoder: missing {missing[:5]}, "
                    f"unexpected {unexpected[:5]}"
                )
        self.mlp = head_from_state_dict(split(state, "mlp."))
        speed_up_towers(nn.ModuleList([self.vision, self.text]), config, [self.vision, self.text])
        self.requires_grad_(False).eval()
        tok_path, local_only = hub.resolve(config.tokenizer, what, "tokenizer_config.json")
        self.tokenizer = BertTokenizer.from_pretrained(tok_path, local_files_only=local_only)
        self.tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        pixels = preprocess(images, self.vision.config.image_size, "torchvision").to(self.vision.dtype)
        image_embeds = self.vision(pixel_values=pixels).last_hidden_state
        tok = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        out = self.text(
            input_ids=tok.input_ids.to(images.device),
            attention_mask=self._mask(tok.attention_mask, images.device),
            encoder_hidden_states=image_embeds,
        )
        reward = self.mlp(out.last_hidden_state[:, 0].float()).squeeze(-1)
        return (reward - MEAN) / STD

    def _mask(self, attention_mask: Tensor, device: torch.device) -> Tensor:
        """[B, 1, L, L] additive self-attention mask built on the host from the tokenizer's [B, L] mask.

        A ready 4D mask is used as is; a 2D one makes transformers test ``mask.all()`` on the device
        (a host synchronisation every step). The image is attended in full (no encoder mask).
        """
        dtype = self.text.dtype
        blocked = (1 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        length = attention_mask.shape[-1]
        return blocked.expand(-1, 1, length, length).to(device, non_blocking=True)
