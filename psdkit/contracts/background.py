"""The background contract: colour seen along rays that leave the scene."""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from psdkit.contracts.component import Component


class Background(Component, abc.ABC):
    """Colour behind the scene."""

    @abc.abstractmethod
    def forward(self, dirs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B, H, W, 3] colour in [0, 1] for unit ray directions ``dirs`` [B, H, W, 3].

        ``generator`` is given during training (random backgrounds), ``None`` at evaluation.
        """
