"""UV unwrapping (xatlas): charts packed into one square atlas."""

from __future__ import annotations

import dataclasses

import numpy as np
import trimesh
import xatlas


@dataclasses.dataclass
class UVMesh:
    """A mesh whose vertices are split along UV seams."""

    verts: np.ndarray
    """[V, 3] positions, world units."""
    faces: np.ndarray
    """[F, 3] vertex indices."""
    uv: np.ndarray
    """[V, 2] texture coordinates in [0, 1], origin at the image's bottom-left (OBJ's convention)."""


def unwrap(mesh: trimesh.Trimesh, texture_size: int, chart_padding: int) -> UVMesh:
    """Charts of ``mesh`` packed for a ``texture_size`` texture with ``chart_padding`` texels between charts."""
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(mesh.vertices, dtype=np.float32), np.ascontiguousarray(mesh.faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = texture_size
    pack.padding = chart_padding
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    vmapping, indices, uvs = atlas[0]
    return UVMesh(np.asarray(mesh.vertices)[vmapping], indices.astype(np.int64), uvs.astype(np.float64))
