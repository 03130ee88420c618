"""Marching cubes on a field's density."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import mcubes
import numpy as np
import torch
from torch import Tensor

from psdkit.contracts import Representation
from psdkit.mesh.sparse_grid import sparse_grid


def field_device(field: Representation) -> torch.device:
    """The device of the field's parameters and buffers (CPU for a field with neither)."""
    tensor = next(itertools.chain(field.parameters(), field.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def density_fn(field: Representation, chunk: int = 1 << 18) -> Callable[[Tensor], Tensor]:
    """Densities [N] (CPU, float32) of world points [N, 3], evaluated on the field's device in chunks."""
    dev = field_device(field)

    @torch.no_grad()
    def density(points: Tensor) -> Tensor:
        if len(points) == 0:
            return torch.zeros(0)
        return torch.cat([field.density(p.to(dev)).float().cpu() for p in points.split(chunk)])

    return density


@torch.no_grad()
def colours_at(field: Representation, points: Tensor, chunk: int = 1 << 18) -> Tensor:
    """[N, 3] the field's colours (CPU, float32, in [0, 1]) at world ``points`` [N, 3], on its device in chunks."""
    if len(points) == 0:
        return torch.zeros(0, 3)
    dev = field_device(field)
    return torch.cat([field(p.to(dev)).rgb.float().cpu() for p in points.split(chunk)]).clamp(0, 1)


def auto_level(grid: Tensor) -> float:
    """Half the median density of the occupied cells (density above 1% of the maximum).

    Adapts to the field's density scale and does not depend on how much of the box the object fills.
    """
    occupied = grid[grid > 0.01 * grid.max()]
    return 0.5 * float(occupied.median()) if occupied.numel() else float("inf")


def marching_cubes(
    field: Representation, resolution: int, level: float | None, skip: int = 1
) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(vertices [V, 3] in world units, faces [F, 3], density level used, share of grid samples evaluated), or
    None if the level crosses no cell. ``level`` None picks it with :func:`auto_level` (on the coarse lattice
    when ``skip`` > 1, see :mod:`psdkit.mesh.sparse_grid`)."""
    fixed = level

    def level_of(values: Tensor) -> float:
        return auto_level(values) if fixed is None else fixed

    grid, level, evaluated = sparse_grid(density_fn(field), field.bound, resolution, skip, level_of)
    if not np.isfinite(level) or grid.max() < level or grid.min() > level:
        return None
    verts, faces = mcubes.marching_cubes(grid.numpy(), level)
    b, size = field.bound, grid.shape[0]
    return verts / (size - 1) * 2 * b - b, faces.astype(np.int64), level, evaluated
