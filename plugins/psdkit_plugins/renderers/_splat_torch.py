"""The pure-torch splat rasterizer: projection, 2D covariance, depth order, per-pixel alpha compositing.

Every view of the batch at once. Each Gaussian is paired with the pixels of the box where its alpha can
reach ``alpha_min`` (as gsplat's tiles do, without the tiles); the pairs are ordered by pixel and depth, and
each pixel composites its Gaussians front to back: a segmented product of transmittances, computed as a
cumulative sum of log(1 - alpha) in float64. The same cut-offs as gsplat (``alpha_min``, ``alpha_max``,
``transmittance_min``). For CPUs, tests and small images; gsplat is the fast path.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from psdkit.contracts import Cameras
from psdkit.contracts.capabilities import Gaussians, GaussianSet
from psdkit.ops.gaussians import covariance, eval_sh, project


@dataclasses.dataclass(frozen=True)
class Raster:
    """Rasterization constants (the renderer's config)."""

    eps2d: float
    near: float
    tile_size: int
    alpha_min: float
    alpha_max: float
    transmittance_min: float
    radius_sigmas: float


@dataclasses.dataclass
class Splats:
    """Gaussians projected into B views, each view's sorted front to back: [B, N, ...]."""

    centre: Tensor
    """[B, N, 2] pixels."""
    conic: Tensor
    """[B, N, 3] the inverse 2D covariance's (xx, xy, yy)."""
    opacity: Tensor
    """[B, N] (0 for Gaussians behind the near plane)."""
    colour: Tensor
    """[B, N, 3]."""
    depth: Tensor
    """[B, N]."""
    radius: Tensor
    """[B, N] half-side of each Gaussian's pixel box (0: not drawn)."""


def project_views(rep: GaussianSet, g: Gaussians, cameras: Cameras, r: Raster) -> Splats:
    """EWA projection of ``g`` into every camera, sorted by depth; registers the screen-space gradient hook."""
    b, h, w = len(cameras), cameras.height, cameras.width
    centre, cov2d, depth = project(g.means, covariance(g.scales, g.quats), cameras, r.eps2d)
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] ** 2
    conic = torch.stack([cov2d[..., 1, 1], -cov2d[..., 0, 1], cov2d[..., 0, 0]], -1) / det.clamp_min(1e-12)[..., None]
    visible = (depth > r.near) & (det > 0)
    if centre.requires_grad:
        report_view_grads(rep, g.ids, centre, visible.detach(), w, h)
    campos = cameras.c2w[:, None, :3, 3]
    dirs = g.means[None] - campos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    colour = eval_sh(g.sh.expand(b, *g.sh.shape).reshape(-1, *g.sh.shape[1:]), dirs.reshape(-1, 3)).view(b, -1, 3)
    key = torch.where(visible, depth, torch.full_like(depth, float("inf"))).detach()
    order = torch.argsort(key, dim=1, stable=True)

    def take(v: Tensor) -> Tensor:
        idx = order if v.dim() == 2 else order[..., None].expand(-1, -1, v.shape[-1])
        return torch.gather(v, 1, idx)

    opacity = torch.where(visible, g.opacities[None].expand(b, -1), torch.zeros_like(depth))
    mid = 0.5 * (cov2d[..., 0, 0] + cov2d[..., 1, 1])
    lam = mid + (mid**2 - det).clamp_min(0.0).sqrt()
    # alpha >= alpha_min only within sqrt(2 ln(o / alpha_min)) standard deviations: the box holds every pixel
    # a Gaussian can reach (exactly gsplat's cut-off), and a faint Gaussian's box is small
    o = opacity.detach()
    reach = torch.log(o.clamp_min(1e-30) / r.alpha_min).clamp_min(0).mul(2).sqrt()
    sigmas = reach if r.radius_sigmas <= 0 else reach.clamp_max(r.radius_sigmas)
    radius = torch.where(o > r.alpha_min, (sigmas * lam.clamp_min(0).sqrt().detach()).ceil(), torch.zeros_like(o))
    return Splats(take(centre), take(conic), take(opacity), take(colour), take(depth), take(radius))


def report_view_grads(rep: GaussianSet, ids: Tensor, centre: Tensor, visible: Tensor, width: int, height: int) -> None:
    """Report each view's screen-space gradient norms (normalized device units) of the visible Gaussians to
    ``rep`` during backward: ``centre`` [B, N, 2] pixel centres, ``visible`` [B, N]."""
    half = torch.tensor([0.5 * width, 0.5 * height], dtype=centre.dtype, device=centre.device)

    def record(grad: Tensor) -> None:
        norms = (grad * half).norm(dim=-1)
        for v in range(grad.shape[0]):
            rep.record_view_grad(ids[visible[v]], norms[v][visible[v]])

    centre.register_hook(record)


def pairs(s: Splats, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """(view, Gaussian (sorted index), pixel) of every Gaussian-pixel pair within the Gaussians' boxes, ordered by
    view and pixel, then front to back."""
    b, n = s.depth.shape
    c = s.centre.detach()
    lo_x = (c[..., 0] - s.radius).clamp(0, width).long()
    hi_x = (c[..., 0] + s.radius + 1).clamp(0, width).long()
    lo_y = (c[..., 1] - s.radius).clamp(0, height).long()
    hi_y = (c[..., 1] + s.radius + 1).clamp(0, height).long()
    w_box, h_box = (hi_x - lo_x).clamp_min(0), (hi_y - lo_y).clamp_min(0)
    counts = (w_box * h_box).view(-1)  # [B * N], Gaussians in depth order within each view
    owner = torch.repeat_interleave(torch.arange(b * n, device=c.device), counts)
    first = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    local = torch.arange(len(owner), device=c.device) - first
    wb = w_box.view(-1)[owner].clamp_min(1)
    px = lo_x.view(-1)[owner] + local % wb
    py = lo_y.view(-1)[owner] + local // wb
    view = owner // n
    pixel = (view * height + py) * width + px
    order = torch.argsort(pixel, stable=True)  # stable: front to back within a pixel
    return view[order], (owner % n)[order], pixel[order]


def composite(s: Splats, height: int, width: int, r: Raster) -> tuple[Tensor, Tensor, Tensor]:
    """([B, H * W, 3] premultiplied colour, [B, H * W] alpha, [B, H * W] expected depth)."""
    b, n = s.depth.shape
    view, gid, pixel = pairs(s, height, width)
    attrs = torch.cat([s.centre, s.conic, s.opacity[..., None], s.colour, s.depth[..., None]], -1)  # [B, N, 10]
    per = attrs.view(b * n, -1).index_select(0, view * n + gid)  # one gather (one scatter in backward)
    centre, q, opacity, colour, depth = per.split([2, 3, 1, 3, 1], -1)
    px = (pixel % width).to(per.dtype) + 0.5
    py = ((pixel // width) % height).to(per.dtype) + 0.5
    dx, dy = px - centre[:, 0], py - centre[:, 1]
    power = -0.5 * (q[:, 0] * dx * dx + q[:, 2] * dy * dy) - q[:, 1] * dx * dy
    a = (opacity[:, 0] * torch.exp(power.clamp_max(0))).clamp_max(r.alpha_max)
    a = torch.where((power > 0) | (a < r.alpha_min), torch.zeros_like(a), a)
    log_t = torch.log1p(-a.double())
    before = torch.cumsum(log_t, 0) - log_t  # exclusive, over all pairs
    start = torch.ones_like(pixel, dtype=torch.bool)
    start[1:] = pixel[1:] != pixel[:-1]
    seg = torch.cumsum(start.long(), 0) - 1
    trans = torch.exp(before - before[start][seg]).to(a.dtype)  # within the pixel's own Gaussians
    weight = (a * trans * (trans >= r.transmittance_min))[:, None]
    sums = torch.zeros(b * height * width, 5, dtype=a.dtype, device=a.device)
    sums = sums.index_add(0, pixel, torch.cat([weight * colour, weight, weight * depth], -1))
    rgb, alpha, dsum = sums.view(b, -1, 5).split([3, 1, 1], -1)
    return rgb, alpha[..., 0], dsum[..., 0] / alpha[..., 0].clamp_min(1e-10)


def rasterize(rep: GaussianSet, g: Gaussians, cameras: Cameras, r: Raster) -> tuple[Tensor, Tensor, Tensor]:
    """([B, 3, H, W] premultiplied colour, [B, 1, H, W] alpha, [B, 1, H, W] expected depth)."""
    b, h, w = len(cameras), cameras.height, cameras.width
    rgb, alpha, depth = composite(project_views(rep, g, cameras, r), h, w, r)
    return rgb.transpose(1, 2).reshape(b, 3, h, w), alpha.view(b, 1, h, w), depth.view(b, 1, h, w)
