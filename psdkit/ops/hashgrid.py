"""Multi-resolution hash encoding (Instant-NGP) in pure PyTorch, vectorized over levels.

Speed choices (measured in docs/benchmarks.md): all levels are processed in one batch of tensor ops;
hashing uses int32 wrap-around arithmetic and ``& (T - 1)`` instead of int64 and ``%``; coarse levels
whose grid fits in the table are indexed densely (no collisions); the lookup is ``index_select``,
whose backward is ``index_add_`` (``F.embedding``'s backward sorts indices and is ~5x slower on CPU).
:func:`hash_encode_reference` is the straightforward per-level loop that the fast path is tested against.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Instant-NGP primes; the second does not fit int32, so we use its two's-complement wrap.
PRIMES = (1, 2654435761, 805459861)
_PRIMES_I32 = tuple(p - (1 << 32) if p >= (1 << 31) else p for p in PRIMES)


def level_resolutions(levels: int, base: int, finest: int) -> list[int]:
    """Grid resolution of each level, geometric from ``base`` to ``finest``."""
    if levels == 1:
        return [base]
    growth = math.exp((math.log(finest) - math.log(base)) / (levels - 1))
    return [int(math.floor(base * growth**lvl)) for lvl in range(levels)]


def _corner_weights(frac: Tensor) -> Tensor:
    """[..., 8] trilinear weights of the 8 cell corners from ``frac`` [..., 3]."""
    wx = torch.stack([1 - frac[..., 0], frac[..., 0]], -1)
    wy = torch.stack([1 - frac[..., 1], frac[..., 1]], -1)
    wz = torch.stack([1 - frac[..., 2], frac[..., 2]], -1)
    return (wx[..., :, None, None] * wy[..., None, :, None] * wz[..., None, None, :]).flatten(-3)


def hash_encode(x: Tensor, table: Tensor, resolutions: list[int]) -> Tensor:
    """Encode points ``x`` [N, 3] in [0, 1] with ``table`` [L, T, F] (T a power of two).

    Returns:
        [N, L * F] features, level-major.
    """
    n_lvl, size, feat = table.shape
    dev = x.device
    res = torch.tensor(resolutions, device=dev, dtype=x.dtype).view(-1, 1, 1)
    pos = x.unsqueeze(0) * res  # [L, N, 3]
    p0 = pos.floor()
    frac = pos - p0
    p0 = p0.to(torch.int32)
    side = torch.tensor([r + 1 for r in resolutions], device=dev, dtype=torch.int32)
    dense = (side.long() ** 3 <= size).view(-1, 1, 1)  # [L, 1, 1]
    # per-axis multipliers: dense (1, side, side^2) or hashed primes
    primes = torch.tensor(_PRIMES_I32, device=dev, dtype=torch.int32).view(1, 1, 3)
    strides = torch.stack([torch.ones_like(side), side, side * side], -1).view(-1, 1, 3)
    mult = torch.where(dense, strides, primes)  # [L, 1, 3]
    lo = p0 * mult
    hi = (p0 + 1) * mult
    ax = torch.stack([lo, hi], -1)  # [L, N, 3, 2]
    cx = ax[:, :, 0, :, None, None]
    cy = ax[:, :, 1, None, :, None]
    cz = ax[:, :, 2, None, None, :]
    hashed = ((cx ^ cy ^ cz) & (size - 1)).flatten(-3)
    summed = (cx + cy + cz).flatten(-3)
    idx = torch.where(dense, summed, hashed)  # [L, N, 8]
    offsets = (torch.arange(n_lvl, device=dev, dtype=torch.int32) * size).view(-1, 1, 1)
    flat = (idx + offsets).reshape(-1).long()
    feats = table.reshape(-1, feat).index_select(0, flat).view(*idx.shape, feat)  # [L, N, 8, F]
    out = (feats * _corner_weights(frac).unsqueeze(-1)).sum(-2)  # [L, N, F]
    return out.permute(1, 0, 2).reshape(x.shape[0], n_lvl * feat)


def hash_encode_reference(x: Tensor, table: Tensor, resolutions: list[int]) -> Tensor:
    """Straightforward per-level loop (int64 hashing, modulo): the reference for :func:`hash_encode`."""
    n_lvl, size, feat = table.shape
    outs = []
    for lvl, r in enumerate(resolutions):
        pos = x * r
        p0 = pos.floor().long()
        frac = pos - p0
        acc = torch.zeros(x.shape[0], feat, dtype=table.dtype, device=x.device)
        for corner in range(8):
            off = torch.tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1], device=x.device)
            c = p0 + off
            if (r + 1) ** 3 <= size:
                idx = c[:, 0] + c[:, 1] * (r + 1) + c[:, 2] * (r + 1) ** 2
            else:
                idx = (c[:, 0] * PRIMES[0]) ^ (c[:, 1] * PRIMES[1]) ^ (c[:, 2] * PRIMES[2])
                idx = idx % size
            w = torch.where(off.bool(), frac, 1 - frac).prod(-1)
            acc = acc + w[:, None] * table[lvl][idx]
        outs.append(acc)
    return torch.cat(outs, -1)
