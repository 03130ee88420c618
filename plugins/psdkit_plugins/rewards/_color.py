"""Colour features shared by the analytic rewards."""

from __future__ import annotations

import torch
from torch import Tensor

from psdkit.world.objects import WORLD_OBJECTS


def foreground(images: Tensor) -> Tensor:
    """[B, H, W] soft foreground: 1 - min over channels (0 on white)."""
    return (1 - images.min(dim=1).values).clamp(0, 1)


def prompt_colors(prompt: str) -> list[Tensor]:
    """RGB [3] of each world colour named in ``prompt``."""
    words = set(prompt.lower().replace(",", " ").split())
    return [torch.tensor(o.color) for o in WORLD_OBJECTS if o.words[0] in words]


def color_alignment(images: Tensor, prompts: list[str], mask: Tensor) -> Tensor:
    """[B, H, W] cosine similarity of each pixel's colour (about grey) to the prompt's colours (0 if
    the prompt names none), times ``mask``."""
    out = torch.zeros_like(mask)
    centred = images - 0.5
    for b, prompt in enumerate(prompts):
        cols = prompt_colors(prompt)
        if not cols:
            continue
        target = (torch.stack(cols).mean(0).to(images) - 0.5).view(3, 1, 1)
        cos = (centred[b] * target).sum(0) / (centred[b].norm(dim=0) * target.norm() + 1e-6)
        out[b] = cos * mask[b]
    return out
