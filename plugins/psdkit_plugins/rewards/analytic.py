"""The analytic training reward: a closed-form "human preference" for warm colours.

``R(x, y) = warmth_weight * mean_px(m * (r - b)) + align_weight * mean_px(m * cos(x - 0.5, c_y - 0.5))``
with ``m = 1 - min_c x`` the soft foreground and ``c_y`` the colours the prompt names. On a prompt
answered by a red and a blue sphere it prefers the red one. It is not normalized by the foreground
area, so its pixel gradient can also be raised off the data manifold (painting the background):
that is the reward-hacking failure naive reward gradients show.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from psdkit.config.schema import knob
from psdkit.contracts import RewardModel
from psdkit_plugins.rewards._color import color_alignment, foreground


@dataclasses.dataclass(frozen=True)
class AnalyticRewardConfig:
    """Config of the analytic training reward."""

    warmth_weight: float = knob(1.0, ge=0.0)
    """Weight of the warm-colour preference."""
    align_weight: float = knob(1.0, ge=0.0)
    """Weight of the agreement with colours named in the prompt."""


class AnalyticReward(RewardModel):
    """Closed-form differentiable reward preferring warm objects."""

    Config = AnalyticRewardConfig

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        m = foreground(images)
        warmth = (m * (images[:, 0] - images[:, 2])).mean((1, 2))
        align = color_alignment(images, prompts, m).mean((1, 2))
        return self.config.warmth_weight * warmth + self.config.align_weight * align
