"""A learnable 2D image, for debugging guidance strategies fast (``recipes/psd_2d.yaml``).

Pair it with the ``image`` renderer and a camera sampler pinned to one view. As a field it is a plane:
``forward`` samples the image at the points' (x, y) and reports zero density, so 3D exporters see
nothing.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import FieldOutput, ParamGroup, Representation


@dataclasses.dataclass(frozen=True)
class Image2DConfig:
    """Config of the 2D image."""

    height: int = knob(32, ge=4, le=8192)
    """Image height, pixels."""
    width: int = knob(32, ge=4, le=8192)
    """Image width, pixels."""
    init: float = knob(0.9, gt=0.0, lt=1.0)
    """Initial grey level in (0, 1)."""
    lr: float = knob(0.05, gt=0.0)
    """Learning rate of the pixels."""


class Image2D(Representation):
    """An image stored as logits [3, H, W]; colours are their sigmoid."""

    Config = Image2DConfig

    def __init__(self, config: Image2DConfig) -> None:
        super().__init__(config)
        logit = torch.logit(torch.tensor(config.init))
        self.logits = nn.Parameter(torch.full((3, config.height, config.width), float(logit)))

    @property
    def bound(self) -> float:
        return 1.0

    def image(self) -> Tensor:
        """[3, H, W] in (0, 1)."""
        return torch.sigmoid(self.logits)

    def forward(self, points: Tensor, dirs: Tensor | None = None) -> FieldOutput:
        grid = points[None, None, :, :2].clamp(-1, 1)  # [1, 1, N, 2]
        rgb = F.grid_sample(self.image()[None], grid, align_corners=False)[0, :, 0].T
        return FieldOutput(density=torch.zeros(points.shape[0], device=points.device), rgb=rgb)

    def param_groups(self) -> list[ParamGroup]:
        """The pixel logits at a constant learning rate."""
        return [ParamGroup("pixels", [self.logits], Schedule(self.config.lr))]
