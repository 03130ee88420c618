"""Texture baking: each texel's surface point, coloured by the field, then dilated past chart borders."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit.contracts import Representation
from psdkit.mesh.extract import colours_at
from psdkit.mesh.raster2d import cover
from psdkit.mesh.unwrap import UVMesh


@dataclasses.dataclass
class TexelSurface:
    """The surface point of every covered texel of a ``size`` x ``size`` texture, M of them."""

    size: int
    index: Tensor
    """[M] flat texel index (row * size + col, row 0 = the image's top)."""
    points: Tensor
    """[M, 3] surface point, world units."""
    normals: Tensor
    """[M, 3] unit normal of its face."""


def texel_surface(mesh: UVMesh, size: int) -> TexelSurface:
    """Rasterize the triangles in UV space: texel centres inside a triangle get its barycentric 3D point."""
    verts = torch.from_numpy(mesh.verts).double()
    faces = torch.from_numpy(mesh.faces).long()
    uv = torch.from_numpy(mesh.uv).double()
    pix = torch.stack([uv[:, 0] * size, (1 - uv[:, 1]) * size], -1)  # x right, y down
    cov = cover(pix[faces], size, size)
    tri = verts[faces[cov.face]]  # [M, 3, 3]
    points = (cov.bary.double().unsqueeze(-1) * tri).sum(1)
    normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return TexelSurface(size, cov.row * size + cov.col, points.float(), normals.float())


def bake(field: Representation, surf: TexelSurface, offset: float, samples: int) -> tuple[Tensor, Tensor]:
    """(texture [size, size, 3] in [0, 1], covered mask [size, size]); each texel's colour is the field's at
    its surface point, averaged over ``samples`` points spread along the normal within +-``offset``."""
    steps = torch.linspace(-offset, offset, samples) if samples > 1 and offset > 0 else torch.zeros(1)
    rgb = sum(colours_at(field, surf.points + float(s) * surf.normals) for s in steps) / len(steps)
    n = surf.size
    tex = torch.zeros(n * n, 3)
    mask = torch.zeros(n * n, dtype=torch.bool)
    tex[surf.index] = rgb
    mask[surf.index] = True
    return tex.view(n, n, 3), mask.view(n, n)


def dilate(texture: Tensor, mask: Tensor, texels: int) -> Tensor:
    """``texture`` [S, S, 3] with empty texels within ``texels`` of a covered one filled by the mean of their
    covered (or already filled) 8-neighbours, ring by ring: bilinear filtering and mip-maps at a chart border
    then blend only chart colours, never the empty background."""
    img = texture.permute(2, 0, 1).unsqueeze(0).clone()
    m = mask.float().view(1, 1, *mask.shape)
    kernel = torch.ones(1, 1, 3, 3)
    for _ in range(texels):
        count = F.conv2d(m, kernel, padding=1)
        total = F.conv2d(img * m, kernel.expand(3, 1, 3, 3), padding=1, groups=3)
        grow = (m == 0) & (count > 0)
        if not grow.any():
            break
        img = torch.where(grow, total / count.clamp_min(1), img)
        m = torch.where(grow, torch.ones_like(m), m)
    return img[0].permute(1, 2, 0)
