"""The Hasler-Suesstrunk colourfulness metric as a psdkit reward."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from psdkit.config.schema import knob
from psdkit.contracts import RewardModel


@dataclasses.dataclass(frozen=True)
class ColorfulnessConfig:
    """Config of the colourfulness reward."""

    scale: float = knob(0.01, gt=0.0)
    """Multiplier of the metric (the raw metric is in 0-255 units, ~0-150 for natural images)."""
    eps: float = knob(1e-6, gt=0.0)
    """Added under square roots so gradients stay finite on flat images."""


class ColorfulnessReward(RewardModel):
    """Colourfulness of each image (Hasler and Suesstrunk, 2003); the prompt is ignored."""

    Config = ColorfulnessConfig

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        x = images * 255.0
        rg = x[:, 0] - x[:, 1]
        yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
        eps = self.config.eps
        std = torch.sqrt(rg.var((1, 2), unbiased=False) + yb.var((1, 2), unbiased=False) + eps)
        mean = torch.sqrt(rg.mean((1, 2)) ** 2 + yb.mean((1, 2)) ** 2 + eps)
        return self.config.scale * (std + 0.3 * mean)
