"""The gsplat backend (CUDA): the same scene through ``gsplat.rasterization``."""

from __future__ import annotations

import torch
from torch import Tensor

from psdkit.contracts import Cameras
from psdkit.contracts.capabilities import Gaussians, GaussianSet
from psdkit.ops.gaussians import sh_degree_of
from psdkit_plugins.renderers._splat_torch import Raster, report_view_grads

GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
"""psdkit's cameras look down -z with y up (OpenGL); gsplat's down +z with y down (OpenCV)."""


def rasterize(rep: GaussianSet, g: Gaussians, cameras: Cameras, r: Raster) -> tuple[Tensor, Tensor, Tensor]:
    """([B, 3, H, W] premultiplied colour, [B, 1, H, W] alpha, [B, 1, H, W] expected depth)."""
    from gsplat import rasterization

    c2w = cameras.c2w @ GL_TO_CV.to(cameras.c2w)
    focal = cameras.focal()
    ks = torch.zeros(len(cameras), 3, 3, device=c2w.device, dtype=c2w.dtype)
    ks[:, 0, 0], ks[:, 1, 1] = focal, focal
    ks[:, 0, 2], ks[:, 1, 2], ks[:, 2, 2] = 0.5 * cameras.width, 0.5 * cameras.height, 1.0
    colors, alphas, meta = rasterization(
        g.means,
        g.quats,
        g.scales,
        g.opacities,
        g.sh,
        torch.linalg.inv(c2w),
        ks,
        cameras.width,
        cameras.height,
        near_plane=r.near,
        eps2d=r.eps2d,
        sh_degree=sh_degree_of(g.sh.shape[1]),
        packed=False,
        tile_size=r.tile_size,
        render_mode="RGB+ED",
    )
    means2d = meta["means2d"]  # [B, N, 2] pixels
    if means2d.requires_grad:
        seen = (meta["radii"] > 0).all(-1) if meta["radii"].dim() == 3 else meta["radii"] > 0
        report_view_grads(rep, g.ids, means2d, seen, cameras.width, cameras.height)
    out = colors.permute(0, 3, 1, 2)
    return out[:, :3], alphas.permute(0, 3, 1, 2), out[:, 3:4]
