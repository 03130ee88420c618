"""Image metrics shared by evaluation and the export check."""

from __future__ import annotations

import torch
from torch import Tensor


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """[B] PSNR in dB between images [B, 3, H, W] in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)
