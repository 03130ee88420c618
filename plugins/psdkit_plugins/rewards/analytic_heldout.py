"""The analytic held-out reward, for evaluation only (never train on it).

A different closed form from the training reward: warmth of the *mean foreground colour* (area
normalized, so painting more pixels does not pay), agreement with the prompt's colours, minus a
penalty on non-white image borders (every world object sits well inside the frame) and on
high-frequency noise (total variation).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from psdkit.config.schema import knob
from psdkit.contracts import RewardModel
from psdkit_plugins.rewards._color import color_alignment, foreground


@dataclasses.dataclass(frozen=True)
class AnalyticHeldoutRewardConfig:
    """Config of the analytic held-out reward."""

    align_weight: float = knob(2.0, ge=0.0)
    """Weight of the agreement with colours named in the prompt."""
    border_weight: float = knob(2.0, ge=0.0)
    """Weight of the non-white-border penalty."""
    border: float = knob(0.12, gt=0.0, lt=0.5)
    """Border width as a fraction of the image side."""
    tv_weight: float = knob(2.0, ge=0.0)
    """Weight of the total-variation penalty."""


class AnalyticHeldoutReward(RewardModel):
    """Closed-form evaluation reward, distinct from the training one."""

    Config = AnalyticHeldoutRewardConfig

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        c = self.config
        m = foreground(images)
        area = m.sum((1, 2)) + 1e-3
        warmth = (m * (images[:, 0] - images[:, 2])).sum((1, 2)) / area
        align = color_alignment(images, prompts, m).sum((1, 2)) / area
        h, w = m.shape[-2:]
        bh, bw = max(int(h * c.border), 1), max(int(w * c.border), 1)
        frame = torch.ones_like(m[0], dtype=torch.bool)
        frame[bh:-bh, bw:-bw] = False
        border = m[:, frame].mean(-1)
        tv = (images[..., 1:, :] - images[..., :-1, :]).abs().mean((1, 2, 3)) + (
            images[..., 1:] - images[..., :-1]
        ).abs().mean((1, 2, 3))
        return warmth + c.align_weight * align - c.border_weight * border - c.tv_weight * tv
