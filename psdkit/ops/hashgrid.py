"""Multi-resolution hash encoding (Instant-NGP) in pure PyTorch, vectorized over levels.

Speed choices (measured with ``psdkit bench hashgrid``, docs/benchmarks.md): all levels in one batch of
tensor ops; int32 wrap-around hashing and ``& (T - 1)`` instead of int64 and ``%``; coarse levels whose
grid fits in the table indexed densely (no collisions) and without computing a hash; corner indices built
corner by corner on contiguous [L, N] tensors; the gather and the trilinear sum fused in one
``embedding_bag`` call, whose table gradient is an ``index_add_`` per feature. Indices and weights carry no
gradient: points are not differentiated. :func:`hash_encode_reference` is the straightforward per-level
loop that the fast path is tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


def _axis_terms(x: Tensor, resolutions: list[int], size: int) -> tuple[list[list[Tensor]], list[list[Tensor]], int]:
    """Per-axis index terms and weights of the two cell corners along each axis, and the dense-level count.

    Returns ``terms[axis][corner]`` [L, N] int32 (``p * multiplier``: dense strides or hash primes) and
    ``weights[axis][corner]`` [L, N] (``1 - frac`` and ``frac``). Dense levels come first (coarse to fine).
    """
    n_dense = sum((r + 1) ** 3 <= size for r in resolutions)
    side = torch.tensor([r + 1 for r in resolutions], device=x.device, dtype=torch.int32)
    primes = torch.tensor(_PRIMES_I32, device=x.device, dtype=torch.int32)
    strides = torch.stack([torch.ones_like(side), side, side * side], -1)  # [L, 3]
    is_dense = (torch.arange(len(resolutions), device=x.device) < n_dense).view(-1, 1)
    mult = torch.where(is_dense, strides, primes.view(1, 3)).unsqueeze(1)  # [L, 1, 3]
    pos = x.unsqueeze(0) * torch.tensor(resolutions, device=x.device, dtype=x.dtype).view(-1, 1, 1)
    p0 = pos.floor()
    frac = (pos - p0).unbind(-1)
    lo = p0.to(torch.int32) * mult
    terms = [[a, a + m] for a, m in zip(lo.unbind(-1), mult.unbind(-1))]
    weights = [[1 - f, f] for f in frac]
    return terms, weights, n_dense


def _corners(x: Tensor, resolutions: list[int], size: int) -> tuple[Tensor, Tensor]:
    """Rows into the flattened [L * T, F] table [L, N, 8] int32 and trilinear weights [L, N, 8].

    Corner-by-corner ops on [L, N] tensors (no broadcasting over a tiny inner dimension, which is slow on
    CPUs); the x-y part is shared by the two z corners. Dense levels add the terms, hashed ones xor them.
    """
    n_lvl, n = len(resolutions), x.shape[0]
    terms, weights, k = _axis_terms(x, resolutions, size)
    offsets = (torch.arange(n_lvl, device=x.device, dtype=torch.int32) * size).view(-1, 1)
    idx = torch.empty(n_lvl, n, 8, device=x.device, dtype=torch.int32)
    for levels, dense in ((slice(0, k), True), (slice(k, n_lvl), False)):
        if levels.start == levels.stop:
            continue
        tx, ty, tz = ([t[levels] for t in axis] for axis in terms)
        off = offsets[levels]
        xy = {(i, j): (tx[i] + ty[j] + off) if dense else (tx[i] ^ ty[j]) for i in (0, 1) for j in (0, 1)}
        rows = [
            xy[c >> 2, (c >> 1) & 1] + tz[c & 1]
            if dense
            else ((xy[c >> 2, (c >> 1) & 1] ^ tz[c & 1]) & (size - 1)) + off
            for c in range(8)
        ]
        torch.stack(rows, -1, out=idx[levels])
    (wx, wy, wz) = weights
    wxy = {(i, j): wx[i] * wy[j] for i in (0, 1) for j in (0, 1)}
    w = torch.stack([wxy[c >> 2, (c >> 1) & 1] * wz[c & 1] for c in range(8)], -1)
    return idx, w


class _WeightedGather(torch.autograd.Function):
    """``out[b] = sum_c w[b, c] * table[idx[b, c]]`` ([B, F]) by ``embedding_bag``; the table gradient by
    ``index_add_`` per feature (``embedding_bag``'s own backward sorts the indices: ~3x slower on CPUs)."""

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(idx, w)
        ctx.rows = table.shape[0]
        return F.embedding_bag(idx, table, mode="sum", per_sample_weights=w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        """Table gradient [rows, F]; none for the indices and weights."""
        idx, w = ctx.saved_tensors
        flat = idx.reshape(-1)
        cols = [
            grad.new_zeros(ctx.rows).index_add_(0, flat, (w * grad[:, f : f + 1]).reshape(-1))
            for f in range(grad.shape[1])
        ]
        return torch.stack(cols, -1), None, None


def hash_encode(x: Tensor, table: Tensor, resolutions: list[int]) -> Tensor:
    """Encode points ``x`` [N, 3] in [0, 1] with ``table`` [L, T, F] (T a power of two).

    Returns:
        [N, L * F] features, level-major. Differentiable with respect to ``table`` (not ``x``).
    """
    n_lvl, size, feat = table.shape
    with torch.no_grad():
        idx, w = _corners(x, resolutions, size)
    out = _WeightedGather.apply(table.reshape(-1, feat), idx.view(-1, 8), w.view(-1, 8).to(table.dtype))
    return out.view(n_lvl, x.shape[0], feat).permute(1, 0, 2).reshape(x.shape[0], n_lvl * feat)


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
