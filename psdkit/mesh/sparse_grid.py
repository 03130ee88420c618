"""A density grid evaluated only near the surface: a coarse lattice first, then the fine samples of the blocks
the level crosses, flooding along the surface until no crossing block has an unevaluated neighbour.

Cells of skipped blocks hold the coarse lattice's trilinear interpolation, which stays on one side of the
level inside a block whose corners do, so marching cubes finds no surface there. A feature that fits between
coarse samples and touches no crossing block is missed: ``grid_skip: 1`` evaluates every cell.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Density = Callable[[Tensor], Tensor]
"""Densities [N] at world points [N, 3] (CPU tensors in, CPU tensors out)."""


def lattice_size(resolution: int, skip: int) -> int:
    """Samples per side of the fine grid: at least ``resolution``, and one more than a multiple of ``skip``."""
    blocks = -(-(resolution - 1) // skip)
    return blocks * skip + 1


def sparse_grid(
    density: Density, bound: float, resolution: int, skip: int, level_of: Callable[[Tensor], float]
) -> tuple[Tensor, float, float]:
    """([R, R, R] densities, level, share of the fine samples evaluated); R = :func:`lattice_size`.

    ``level_of`` picks the level from the coarse lattice's densities (the recipe's fixed level, or automatic).
    """
    size = lattice_size(resolution, skip)
    blocks = (size - 1) // skip
    axis = torch.linspace(-bound, bound, size)
    coarse = _evaluate(density, axis[::skip], axis[::skip], axis[::skip])  # [B+1]^3
    level = level_of(coarse)
    if skip == 1:
        return coarse, level, 1.0
    grid = F.interpolate(coarse[None, None], size=(size,) * 3, mode="trilinear", align_corners=True)[0, 0]
    lo, hi = _corner_range(coarse)
    todo = _dilate((lo < level) & (hi >= level))
    done = torch.zeros(blocks, blocks, blocks, dtype=torch.bool)
    while (todo & ~done).any():
        ids = (todo & ~done).nonzero()
        values = _fill_blocks(density, axis, grid, ids, skip)
        done |= todo
        crossing = torch.zeros_like(done)
        crossing[tuple(ids.T)] = (values.amin(1) < level) & (values.amax(1) >= level)
        todo = done | _dilate(crossing)
    evaluated = float(done.float().mean())
    return grid, level, evaluated


def _evaluate(density: Density, xs: Tensor, ys: Tensor, zs: Tensor) -> Tensor:
    """Densities on the lattice xs x ys x zs."""
    pts = torch.stack(torch.meshgrid(xs, ys, zs, indexing="ij"), -1)
    return density(pts.view(-1, 3)).view(pts.shape[:3])


def _corner_range(coarse: Tensor) -> tuple[Tensor, Tensor]:
    """[B]^3 min and max of each block's 8 coarse corners."""
    corners = torch.stack(
        [
            coarse[i : i + coarse.shape[0] - 1, j : j + coarse.shape[1] - 1, k : k + coarse.shape[2] - 1]
            for i in (0, 1)
            for j in (0, 1)
            for k in (0, 1)
        ]
    )
    return corners.amin(0), corners.amax(0)


def _dilate(mask: Tensor) -> Tensor:
    """``mask`` grown by one block in every direction (26-neighbourhood)."""
    return F.max_pool3d(mask.float()[None, None], 3, 1, 1)[0, 0] > 0


def _fill_blocks(density: Density, axis: Tensor, grid: Tensor, ids: Tensor, skip: int) -> Tensor:
    """Evaluate every fine sample of blocks ``ids`` [K, 3] (faces included) into ``grid``; returns [K, (s+1)^3]."""
    off = torch.arange(skip + 1)
    local = torch.stack(torch.meshgrid(off, off, off, indexing="ij"), -1).view(-1, 3)  # [(s+1)^3, 3]
    idx = ids[:, None, :] * skip + local[None]  # [K, (s+1)^3, 3]
    flat = idx.reshape(-1, 3)
    values = density(axis[flat]).view(len(ids), -1)
    grid[flat[:, 0], flat[:, 1], flat[:, 2]] = values.view(-1)
    return values
