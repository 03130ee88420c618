"""The reward-model contract: a differentiable preference score of images and prompts."""

from __future__ import annotations

import abc

from torch import Tensor

from psdkit.contracts.component import Component


class RewardModel(Component, abc.ABC):
    """A frozen 2D reward model. Higher is better.

    Reward models are never optimized and never checkpointed by psdkit.
    """

    @abc.abstractmethod
    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        """[B] scores of ``images`` [B, 3, H, W] (RGB in [0, 1], any H, W) for ``prompts`` (len B).

        Must be differentiable with respect to ``images``.
        """

    def weights(self) -> list[str]:
        """Hub ids or paths of the weights this reward needs (for ``psdkit doctor``). Default: none."""
        return []
