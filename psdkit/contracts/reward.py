"""The reward-model contract: a differentiable preference score of images and prompts."""

from __future__ import annotations

import abc

from torch import Tensor

from psdkit.contracts.component import Component
from psdkit.contracts.weights import LoadsWeights


class RewardModel(Component, LoadsWeights, abc.ABC):
    """A frozen 2D reward model. Higher is better.

    Reward models are never optimized and never checkpointed by psdkit. One that loads weights declares them
    with :meth:`required_weights` (and may offer :meth:`random_weights`).
    """

    @abc.abstractmethod
    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        """[B] scores of ``images`` [B, 3, H, W] (RGB in [0, 1], any H, W) for ``prompts`` (len B).

        Must be differentiable with respect to ``images``.
        """
