"""The mesh-export knobs (``output.export`` of a recipe, and ``psdkit export``)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from psdkit.config.schema import knob

MeshFormat = Literal["glb", "obj", "ply"]


@dataclasses.dataclass(frozen=True)
class MeshExportConfig:
    """How a density-and-colour field becomes a mesh file (docs/export.md)."""

    resolution: int = knob(128, ge=16, le=1024)
    """Marching-cubes grid resolution (cells per side of the field's box)."""
    grid_skip: int = knob(4, ge=1, le=32)
    """Evaluate the density on every ``grid_skip``-th sample first and densely only in the blocks the surface
    crosses (and their neighbours, following the surface); 1 evaluates every sample. The grid is rounded up to
    one more than a multiple of it."""
    level: float | None = knob(None, gt=0.0)
    """Density level of the surface; null: automatic (half the median density of occupied cells)."""
    keep_components: int = knob(1, ge=0, le=1_000_000)
    """Keep this many largest connected components (drops floaters); 0 keeps all."""
    faces: int | None = knob(20_000, ge=4, le=100_000_000)
    """Face budget: decimate (fast-simplification) to at most this many triangles; null: no decimation."""
    texture: Literal["uv", "vertex"] = "uv"
    """uv: a UV-unwrapped mesh with a baked base-colour texture (xatlas); vertex: per-vertex colours only."""
    texture_size: int = knob(1024, ge=16, le=16384)
    """Side of the square texture, texels."""
    chart_padding: int = knob(2, ge=0, le=64)
    """Texels between UV charts in the atlas."""
    dilate: int = knob(8, ge=0, le=256)
    """Texels to extend each chart's colours past its border (no seams under bilinear filtering or mip-maps)."""
    bake_offset: float = knob(0.0, ge=0.0)
    """Half-length (world units) of the segment along the surface normal over which each texel's colour is
    averaged; 0 queries the surface point only."""
    bake_samples: int = knob(1, ge=1, le=64)
    """Points averaged along that segment (1 when ``bake_offset`` is 0)."""
    up_axis: Literal["y", "z"] = "y"
    """Up axis of the written files: y (glTF's convention; Blender and game engines) or z (psdkit's world)."""
    scale: float = knob(1.0, gt=0.0)
    """Metres per world unit in the written files."""
    formats: tuple[MeshFormat, ...] = ("glb", "obj")
    """Files to write: glb (PBR base-colour texture), obj (+ mtl + png), ply (vertex colours)."""
    check: bool = True
    """Render the exported mesh from the run's evaluation cameras and compare with the field's renders
    (PSNR per view in export.json)."""
    check_supersample: int = knob(2, ge=1, le=8)
    """Supersampling of the check's mesh renders (the field's renders have soft edges)."""
