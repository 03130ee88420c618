"""A solid-colour background, optionally randomized during training."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from psdkit.config.schema import knob
from psdkit.contracts import Background


@dataclasses.dataclass(frozen=True)
class SolidBackgroundConfig:
    """Config of the solid background."""

    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB in [0, 1] used at evaluation (and in training unless randomized)."""
    random_prob: float = knob(0.0, ge=0.0, le=1.0)
    """Probability, per training image, of a uniformly random colour instead."""

    def __post_init__(self) -> None:
        if not all(0.0 <= v <= 1.0 for v in self.color):
            raise ValueError(f"color: each channel must be in [0, 1], got {self.color}")


class SolidBackground(Background):
    """One colour behind everything."""

    Config = SolidBackgroundConfig

    def forward(self, dirs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        b = dirs.shape[0]
        color = torch.tensor(self.config.color, dtype=dirs.dtype).expand(b, 3)
        if generator is not None and self.config.random_prob > 0:
            use = torch.rand(b, generator=generator) < self.config.random_prob
            color = torch.where(use[:, None], torch.rand(b, 3, generator=generator), color)
        return color.to(dirs.device).view(b, 1, 1, 3).expand_as(dirs)
