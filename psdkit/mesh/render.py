"""A small textured-mesh rasterizer in torch (no OpenGL): the export check renders the mesh it wrote from the
run's evaluation cameras."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit.contracts import Background, Cameras
from psdkit.mesh.raster2d import cover

NEAR = 1e-3
"""Faces with a vertex closer to the camera plane than this (world units) are not drawn."""


def project(verts: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """(pixel coordinates [B, V, 2] (x right, y down), depth along the view axis [B, V]) of ``verts`` [V, 3]."""
    cam = cameras.to_camera(verts.double())
    depth = -cam[..., 2]
    focal = cameras.focal().double().view(-1, 1)
    safe = depth.clamp_min(NEAR)
    x = cam[..., 0] / safe * focal + 0.5 * cameras.width
    y = -cam[..., 1] / safe * focal + 0.5 * cameras.height
    return torch.stack([x, y], -1), depth


def render_mesh(
    verts: Tensor, faces: Tensor, uv: Tensor, texture: Tensor, cameras: Cameras, background: Background
) -> Tensor:
    """[B, 3, H, W] renders of a textured mesh: ``verts`` [V, 3], ``faces`` [F, 3], ``uv`` [V, 2] (origin
    bottom-left), ``texture`` [S, S, 3] in [0, 1] sampled bilinearly; pixels no face covers show
    ``background``. Nearest face per pixel centre, perspective-correct texture coordinates."""
    b, h, w = len(cameras), cameras.height, cameras.width
    _, dirs = cameras.rays()
    out = background(dirs).float().clone()  # [B, H, W, 3]
    pix, depth = project(verts, cameras)
    tex = texture.permute(2, 0, 1).unsqueeze(0).float()
    for i in range(b):
        visible = (depth[i][faces] > NEAR).all(-1)
        f = faces[visible]
        cov = cover(pix[i][f], h, w)
        if len(cov.face) == 0:
            continue
        inv_z = 1 / depth[i][f[cov.face]]  # [M, 3]
        weights = cov.bary.double() * inv_z
        z = 1 / weights.sum(-1)
        flat = cov.row * w + cov.col
        nearest = torch.full((h * w,), float("inf"), dtype=z.dtype).scatter_reduce(0, flat, z, "amin")
        win = z <= nearest[flat]
        persp = (weights / weights.sum(-1, keepdim=True))[win]
        tuv = (persp.unsqueeze(-1) * uv[f[cov.face[win]]].double()).sum(1)
        grid = torch.stack([tuv[:, 0] * 2 - 1, 1 - tuv[:, 1] * 2], -1).float().view(1, 1, -1, 2)
        rgb = F.grid_sample(tex, grid, mode="bilinear", align_corners=False)[0, :, 0].T
        out[i].view(-1, 3)[flat[win]] = rgb
    return out.permute(0, 3, 1, 2).clamp(0, 1)
