"""Score-distillation arithmetic shared by guidance strategies."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Weighting = Literal["sds", "uniform", "sqrt_snr_inv"]


def sample_timesteps(
    n: int, lo: float, hi: float, num_train_timesteps: int, generator: torch.Generator
) -> Tensor:
    """[n] integer timesteps uniform in ``[lo * T, hi * T]`` (fractions of T), on the CPU."""
    t_lo = int(round(lo * (num_train_timesteps - 1)))
    t_hi = max(int(round(hi * (num_train_timesteps - 1))), t_lo)
    return torch.randint(t_lo, t_hi + 1, (n,), generator=generator)


def draw_noise(
    generator: torch.Generator, shape: tuple[int, ...], lo: float, hi: float, num_train_timesteps: int,
    offset: int = 0, global_batch: int | None = None, copies: int = 1,
) -> tuple[Tensor, Tensor]:
    """Timesteps [copies * B] and noise [copies * B, ...] for rows ``offset : offset + B`` of a global batch.

    Draws for the whole global batch and slices, so the samples a rank gets do not depend on the
    number of ranks. ``copies`` independent noise draws share each sample's timestep.
    """
    b = shape[0]
    total = global_batch or b
    rows = slice(offset, offset + b)
    t = sample_timesteps(total, lo, hi, num_train_timesteps, generator)[rows]
    eps = [torch.randn((total, *shape[1:]), generator=generator)[rows] for _ in range(copies)]
    return t.repeat(copies), torch.cat(eps)


def timestep_weight(kind: Weighting, alpha: Tensor, sigma: Tensor) -> Tensor:
    """w(t) [B]: ``sds`` = sigma^2 (DreamFusion), ``uniform`` = 1, ``sqrt_snr_inv`` = sigma / alpha
    (LucidDreamer)."""
    if kind == "sds":
        return sigma**2
    if kind == "uniform":
        return torch.ones_like(sigma)
    return sigma / alpha


def residual_loss(z: Tensor, grad: Tensor) -> Tensor:
    """Scalar loss whose gradient with respect to ``z`` [B, ...] is ``grad / B``.

    The usual reparameterization ``0.5 * ||z - sg(z - grad)||^2 / B``.
    """
    target = (z - grad).detach()
    return 0.5 * ((z - target) ** 2).sum() / z.shape[0]


def broadcast(v: Tensor, like: Tensor) -> Tensor:
    """Reshape [B] to [B, 1, 1, ...] to broadcast against ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))
