"""Reading a textured mesh file back into the world frame (the export check and ``psdkit eval --mesh``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import trimesh
from torch import Tensor

from psdkit.errors import RunDirError
from psdkit.mesh.files import from_file_frame


@dataclasses.dataclass
class TexturedMesh:
    """A textured mesh in psdkit's world frame, as tensors."""

    verts: Tensor
    """[V, 3] world units."""
    faces: Tensor
    """[F, 3]."""
    uv: Tensor
    """[V, 2] in [0, 1], origin bottom-left."""
    texture: Tensor
    """[S, S, 3] in [0, 1]."""


def load_textured(path: Path, up_axis: str, scale: float) -> TexturedMesh:
    """Load a GLB or OBJ written with a base-colour texture; vertices back in world units (z up)."""
    mesh = trimesh.load(path, force="mesh")
    visual = mesh.visual
    if not isinstance(visual, trimesh.visual.TextureVisuals) or visual.uv is None:
        raise RunDirError(f"{path}: no texture coordinates (export with output.export.texture=uv)")
    material = visual.material
    image = None
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        image = material.baseColorTexture
    elif isinstance(material, trimesh.visual.material.SimpleMaterial):
        image = material.image
    if image is None:
        raise RunDirError(f"{path}: no base-colour texture image")
    tex = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    verts = from_file_frame(np.asarray(mesh.vertices, dtype=np.float64), up_axis, scale)
    return TexturedMesh(
        torch.from_numpy(verts).float(),
        torch.from_numpy(np.asarray(mesh.faces, dtype=np.int64)),
        torch.from_numpy(np.asarray(visual.uv, dtype=np.float64)).float(),
        torch.from_numpy(tex),
    )
