"""The 2D-mode renderer: shows an ``image2d`` representation, resized to each camera's size."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from psdkit.contracts import Background, Cameras, Renderer, RenderOutput, Representation
from psdkit.errors import PluginError


@dataclasses.dataclass(frozen=True)
class ImageRendererConfig:
    """Config of the image renderer (no options: the image is the render)."""


class ImageRenderer(Renderer):
    """Returns the representation's image for every camera (2D mode)."""

    Config = ImageRendererConfig

    def forward(
        self,
        field: Representation,
        cameras: Cameras,
        background: Background,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        image = getattr(field, "image", None)
        if not callable(image):
            raise PluginError(f"renderer 'image' needs an image representation (image2d), got {type(field).__name__}")
        img = image()[None]
        if img.shape[-2:] != (cameras.height, cameras.width):
            img = F.interpolate(img, (cameras.height, cameras.width), mode="bilinear", align_corners=False)
        rgb = img.expand(len(cameras), -1, -1, -1)
        ones = torch.ones_like(rgb[:, :1])
        return RenderOutput(rgb=rgb, opacity=ones, depth=ones)
