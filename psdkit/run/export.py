"""Turntable videos and meshes of a trained representation."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import mcubes
import numpy as np
import torch
import trimesh

from psdkit.contracts import Representation
from psdkit.run.callbacks import to_uint8
from psdkit.system import PSDSystem


def export_video(system: PSDSystem, path: Path, frames: int, size: int, fps: int) -> Path:
    """Write an mp4 turntable of ``frames`` views at ``size`` px (even sizes only, for H.264)."""
    size += size % 2
    images = system.render_views(frames, size)
    imageio.mimwrite(path, [to_uint8(img) for img in images], fps=fps, macro_block_size=1, quality=8)
    return path


@torch.no_grad()
def density_grid(field: Representation, resolution: int, chunk: int = 1 << 18) -> np.ndarray:
    """[R, R, R] densities on a regular grid spanning the field's box (x, y, z index order)."""
    b = field.bound
    axis = torch.linspace(-b, b, resolution)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).view(-1, 3)
    dev = next(field.parameters()).device
    dens = torch.cat([field.density(p.to(dev)).cpu() for p in pts.split(chunk)])
    return dens.view(resolution, resolution, resolution).numpy()


def auto_threshold(grid: np.ndarray) -> float:
    """Half the median density of the occupied cells (density above 1% of the maximum).

    Adapts to the field's density scale and does not depend on how much of the box the object fills.
    """
    occupied = grid[grid > 0.01 * grid.max()]
    return 0.5 * float(np.median(occupied)) if occupied.size else float("inf")


@torch.no_grad()
def extract_mesh(
    field: Representation, resolution: int, threshold: float | None, keep_largest: bool = True
) -> tuple[trimesh.Trimesh | None, float]:
    """Marching-cubes surface with per-vertex colours, and the density level used; None if empty.

    ``threshold`` None picks the level with :func:`auto_threshold`. ``keep_largest`` keeps only the
    largest connected component (drops floaters).
    """
    grid = density_grid(field, resolution)
    threshold = auto_threshold(grid) if threshold is None else threshold
    if not np.isfinite(threshold) or grid.max() < threshold or grid.min() > threshold:
        return None, threshold
    verts, faces = mcubes.marching_cubes(grid, threshold)
    b = field.bound
    verts = verts / (resolution - 1) * 2 * b - b
    dev = next(field.parameters()).device
    pts = torch.from_numpy(verts).float()
    rgb = torch.cat([field(p.to(dev)).rgb.cpu() for p in pts.split(1 << 18)]).numpy()
    colors = np.concatenate([(rgb * 255).round(), np.full((len(rgb), 1), 255)], 1).astype(np.uint8)
    mesh = trimesh.Trimesh(verts, faces, vertex_colors=colors, process=True)
    parts = mesh.split(only_watertight=False) if keep_largest else [mesh]
    if len(parts) > 1:
        mesh = max(parts, key=lambda m: len(m.faces))
    return mesh, threshold


def export_mesh(
    field: Representation,
    out_dir: Path,
    resolution: int,
    threshold: float | None,
    formats: tuple[str, ...],
    keep_largest: bool = True,
) -> tuple[list[Path], float]:
    """Write the mesh in each of ``formats``; returns the paths (empty if no surface) and the level used."""
    mesh, threshold = extract_mesh(field, resolution, threshold, keep_largest)
    if mesh is None:
        return [], threshold
    paths = []
    for fmt in formats:
        path = out_dir / f"mesh.{fmt}"
        mesh.export(path)
        paths.append(path)
    return paths, threshold
