"""The renderer contract: images of a representation seen by cameras."""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from psdkit.contracts.background import Background
from psdkit.contracts.camera import Cameras
from psdkit.contracts.component import Component
from psdkit.contracts.representation import Representation


@dataclasses.dataclass
class RenderOutput:
    """Images of B cameras at H x W."""

    rgb: Tensor
    """[B, 3, H, W] composited colour in [0, 1]."""
    opacity: Tensor
    """[B, 1, H, W] accumulated alpha in [0, 1]."""
    depth: Tensor
    """[B, 1, H, W] expected ray distance of the opaque part (0 where empty)."""
    stats: dict[str, float] = dataclasses.field(default_factory=dict)
    """Cheap diagnostics (e.g. fraction of samples skipped), for logging."""


class Renderer(Component, abc.ABC):
    """Turns a representation into images. May hold buffers (e.g. an occupancy grid)."""

    requires: ClassVar[tuple[type, ...]] = ()
    """Capabilities (``psdkit.contracts.capabilities``) the representation must declare, e.g. ``GaussianSet``
    for a splat renderer; a recipe that pairs this renderer with a representation lacking one is refused at
    validation. Default: none (any field)."""

    @abc.abstractmethod
    def forward(
        self,
        field: Representation,
        cameras: Cameras,
        background: Background,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Render ``cameras``; ``generator`` drives sample jitter during training (None: none)."""

    def points_per_pixel(self) -> int:
        """Most field queries per pixel of a training render (sizes the pre-start memory check). Default: 1."""
        return 1

    def refresh(self, field: Representation, step: int) -> None:
        """Called before every training step (e.g. to refresh an occupancy grid). Default: nothing."""

    def regularizers(self, out: RenderOutput) -> dict[str, Tensor]:
        """Weighted regularizer terms of a training render, added to the loss and logged under ``loss/<name>``.
        Default: none."""
        return {}
