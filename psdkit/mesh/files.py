"""Mesh files: GLB (PBR base-colour texture), OBJ + MTL + PNG, PLY (vertex colours); Y-up metres by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from psdkit.mesh.unwrap import UVMesh

Z_UP_TO_Y_UP = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
"""psdkit's world (z up, the turntable's first view looking from +x with +y to its right) to glTF's (y up, that
view looking from +z with +x to its right): a rotation (x, y, z) -> (y, z, x)."""


def to_file_frame(verts: np.ndarray, up_axis: str, scale: float) -> np.ndarray:
    """[V, 3] world positions in the files' frame: rotated to ``up_axis`` up and scaled to metres."""
    rot = Z_UP_TO_Y_UP if up_axis == "y" else np.eye(3)
    return scale * verts @ rot.T


def from_file_frame(verts: np.ndarray, up_axis: str, scale: float) -> np.ndarray:
    """Inverse of :func:`to_file_frame`."""
    rot = Z_UP_TO_Y_UP if up_axis == "y" else np.eye(3)
    return (verts / scale) @ rot


def textured(mesh: UVMesh, texture: np.ndarray, up_axis: str, scale: float) -> trimesh.Trimesh:
    """A trimesh with UVs and a PBR material whose base colour is ``texture`` [S, S, 3] uint8."""
    material = trimesh.visual.material.PBRMaterial(
        name="mesh", baseColorTexture=Image.fromarray(texture), metallicFactor=0.0, roughnessFactor=1.0
    )
    visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
    verts = to_file_frame(mesh.verts, up_axis, scale)
    return trimesh.Trimesh(verts, mesh.faces, visual=visual, process=False)


def vertex_coloured(mesh: trimesh.Trimesh, rgb: np.ndarray, up_axis: str, scale: float) -> trimesh.Trimesh:
    """A copy of ``mesh`` in the files' frame with per-vertex colours ``rgb`` [V, 3] in [0, 1]."""
    colors = np.concatenate([(rgb * 255).round(), np.full((len(rgb), 1), 255)], 1).astype(np.uint8)
    verts = to_file_frame(np.asarray(mesh.vertices), up_axis, scale)
    return trimesh.Trimesh(verts, mesh.faces, vertex_colors=colors, process=False)


def write(mesh: trimesh.Trimesh, out_dir: Path, fmt: str) -> list[Path]:
    """Write ``mesh`` as ``out_dir/mesh.<fmt>``; an OBJ with a texture also writes its .mtl and .png."""
    path = out_dir / f"mesh.{fmt}"
    if fmt == "obj" and isinstance(mesh.visual, trimesh.visual.TextureVisuals):
        text, extra = trimesh.exchange.obj.export_obj(
            mesh, include_texture=True, return_texture=True, mtl_name="mesh.mtl"
        )
        path.write_text(text)
        written = [path]
        for name, data in extra.items():
            (out_dir / name).write_bytes(data)
            written.append(out_dir / name)
        return written
    mesh.export(path)
    return [path]
