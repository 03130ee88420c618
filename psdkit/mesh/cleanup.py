"""Mesh cleanup: merged vertices, no degenerate faces, the largest components, outward normals."""

from __future__ import annotations

import numpy as np
import trimesh


def clean(verts: np.ndarray, faces: np.ndarray, keep_components: int) -> trimesh.Trimesh:
    """A clean mesh from raw triangles: duplicate vertices merged, degenerate and duplicate faces removed, the
    ``keep_components`` largest connected components kept (0: all), consistent winding with normals pointing
    out of each closed component."""
    mesh = trimesh.Trimesh(verts, faces, process=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    if keep_components > 0 and len(mesh.faces):
        parts = mesh.split(only_watertight=False)
        if len(parts) > keep_components:
            parts = sorted(parts, key=lambda m: len(m.faces), reverse=True)[:keep_components]
            mesh = trimesh.util.concatenate(parts)
    trimesh.repair.fix_normals(mesh, multibody=True)
    return mesh
