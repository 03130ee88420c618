"""Multi-resolution hash encoding as a Triton kernel (forward and backward): no CUDA extension to build.

The same arithmetic as :func:`psdkit.ops.hashgrid.hash_encode` (dense indexing for levels whose grid fits
the table, Instant-NGP's xor hash for the others) in one kernel launch per pass: each program encodes
``block`` points at one level. The backward scatters into the table gradient with ``atomic_add``.
Runs on a CUDA GPU, or on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``, for tests).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from psdkit.ops.hashgrid import PRIMES

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch backend needs none of this
    triton = None


def triton_status(device: torch.device | str) -> str | None:
    """None if the Triton encoding can run on ``device``, else why not."""
    if triton is None:
        return "triton is not installed (pip install triton; it comes with CUDA builds of torch)"
    if torch.device(device).type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return "the Triton encoding needs a CUDA device (or TRITON_INTERPRET=1 on the CPU, slow, for tests)"


if triton is not None:

    @triton.jit
    def _corner(px, py, pz, side, dense, corner: tl.constexpr, T: tl.constexpr):
        """Table row (within the level) and trilinear weight of one cell corner, for a block of points."""
        bx: tl.constexpr = (corner >> 2) & 1
        by: tl.constexpr = (corner >> 1) & 1
        bz: tl.constexpr = corner & 1
        fx, fy, fz = tl.floor(px), tl.floor(py), tl.floor(pz)
        w = (bx * (px - fx) + (1 - bx) * (1 - px + fx)) * (by * (py - fy) + (1 - by) * (1 - py + fy))
        w = w * (bz * (pz - fz) + (1 - bz) * (1 - pz + fz))
        cx = fx.to(tl.int64) + bx
        cy = fy.to(tl.int64) + by
        cz = fz.to(tl.int64) + bz
        hashed = ((cx * P0) ^ (cy * P1) ^ (cz * P2)) & (T - 1)
        idx = tl.where(dense != 0, cx + cy * side + cz * side * side, hashed)
        return idx, w

    @triton.jit
    def _block(x_ptr, res_ptr, side_ptr, dense_ptr, n, BLOCK: tl.constexpr):
        """This program's level, point offsets [BLOCK], mask, scaled positions, dense side and dense flag."""
        lvl = tl.program_id(1)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        res = tl.load(res_ptr + lvl)
        px = tl.load(x_ptr + offs * 3, mask=mask, other=0.0) * res
        py = tl.load(x_ptr + offs * 3 + 1, mask=mask, other=0.0) * res
        pz = tl.load(x_ptr + offs * 3 + 2, mask=mask, other=0.0) * res
        return lvl, offs, mask, px, py, pz, tl.load(side_ptr + lvl).to(tl.int64), tl.load(dense_ptr + lvl)

    @triton.jit
    def _forward_kernel(
        x_ptr,
        table_ptr,
        res_ptr,
        side_ptr,
        dense_ptr,
        out_ptr,
        n,
        L: tl.constexpr,
        T: tl.constexpr,
        F: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        lvl, offs, mask, px, py, pz, side, dense = _block(x_ptr, res_ptr, side_ptr, dense_ptr, n, BLOCK)
        feat = tl.arange(0, F)
        acc = tl.zeros((BLOCK, F), dtype=tl.float32)
        for corner in tl.static_range(8):
            idx, w = _corner(px, py, pz, side, dense, corner, T)
            rows = (lvl * T + idx)[:, None] * F + feat[None, :]
            acc += w[:, None] * tl.load(table_ptr + rows, mask=mask[:, None], other=0.0)
        tl.store(out_ptr + offs[:, None] * (L * F) + lvl * F + feat[None, :], acc, mask=mask[:, None])

    @triton.jit
    def _backward_kernel(
        x_ptr,
        grad_out_ptr,
        res_ptr,
        side_ptr,
        dense_ptr,
        grad_table_ptr,
        n,
        L: tl.constexpr,
        T: tl.constexpr,
        F: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        lvl, offs, mask, px, py, pz, side, dense = _block(x_ptr, res_ptr, side_ptr, dense_ptr, n, BLOCK)
        feat = tl.arange(0, F)
        g = tl.load(grad_out_ptr + offs[:, None] * (L * F) + lvl * F + feat[None, :], mask=mask[:, None], other=0.0)
        for corner in tl.static_range(8):
            idx, w = _corner(px, py, pz, side, dense, corner, T)
            rows = (lvl * T + idx)[:, None] * F + feat[None, :]
            tl.atomic_add(grad_table_ptr + rows, w[:, None] * g, mask=mask[:, None])

    P0: tl.constexpr = tl.constexpr(PRIMES[0])
    P1: tl.constexpr = tl.constexpr(PRIMES[1])
    P2: tl.constexpr = tl.constexpr(PRIMES[2])


def _level_tensors(resolutions: list[int], size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Per-level resolution [L] float32, dense side length [L] int32 and dense flag [L] int32."""
    res = torch.tensor(resolutions, dtype=torch.float32, device=device)
    side = torch.tensor([r + 1 for r in resolutions], dtype=torch.int32, device=device)
    dense = torch.tensor([int((r + 1) ** 3 <= size) for r in resolutions], dtype=torch.int32, device=device)
    return res, side, dense


class _TritonHashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, resolutions: list[int], block: int) -> Tensor:
        n_lvl, size, feat = table.shape
        levels = _level_tensors(resolutions, size, x.device)
        out = torch.empty(x.shape[0], n_lvl * feat, dtype=torch.float32, device=x.device)
        grid = (triton.cdiv(x.shape[0], block), n_lvl)
        _forward_kernel[grid](x, table, *levels, out, x.shape[0], L=n_lvl, T=size, F=feat, BLOCK=block)
        ctx.save_for_backward(x, *levels)
        ctx.meta = (table.shape, block)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        """Gradient of the table [L, T, F] (scattered with atomic adds); none for the points."""
        x, *levels = ctx.saved_tensors
        (n_lvl, size, feat), block = ctx.meta
        grad_table = torch.zeros(n_lvl, size, feat, dtype=torch.float32, device=x.device)
        grid = (triton.cdiv(x.shape[0], block), n_lvl)
        _backward_kernel[grid](
            x, grad_out.contiguous(), *levels, grad_table, x.shape[0], L=n_lvl, T=size, F=feat, BLOCK=block
        )
        return None, grad_table, None, None


def hash_encode_triton(x: Tensor, table: Tensor, resolutions: list[int], block: int = 128) -> Tensor:
    """Triton version of :func:`psdkit.ops.hashgrid.hash_encode`.

    Args:
        x: [N, 3] points in [0, 1] (no gradient flows to them).
        table: [L, T, F] float32 table, T a power of two, F a power of two.
        resolutions: grid resolution of each level.
        block: points per program (a power of two).

    Returns:
        [N, L * F] features, level-major.
    """
    why = triton_status(x.device)
    if why:
        raise RuntimeError(why)
    feat = table.shape[-1]
    if feat & (feat - 1):
        raise ValueError(f"the Triton encoding needs a power-of-two features_per_level, got {feat}")
    if x.requires_grad:
        raise ValueError("the Triton encoding does not differentiate with respect to the points")
    return _TritonHashEncode.apply(x.contiguous().float(), table.contiguous(), list(resolutions), block)
