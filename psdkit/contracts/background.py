"""The background contract: colour seen along rays that leave the scene."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class Background(nn.Module, abc.ABC):
    """Colour behind the scene."""

    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @abc.abstractmethod
    def forward(self, dirs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B, H, W, 3] colour in [0, 1] for unit ray directions ``dirs`` [B, H, W, 3].

        ``generator`` is given during training (random backgrounds), ``None`` at evaluation.
        """
