"""Volume renderer: stratified ray marching with alpha compositing and empty-space skipping.

An occupancy grid (a density grid refreshed every ``occupancy_every`` steps, with an EMA) marks cells
worth sampling; samples in empty cells are not sent to the field. The grid is a buffer, so it is
checkpointed and identical on every DDP rank.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit.config.schema import knob
from psdkit.contracts import Background, Cameras, Renderer, RenderOutput, Representation
from psdkit.ops.opacity import opacity_terms


@dataclasses.dataclass(frozen=True)
class VolumeRendererConfig:
    """Config of the volume renderer."""

    num_samples: int = knob(48, ge=2, le=1024)
    """Samples per ray between the entry and exit of the scene box."""
    jitter: bool = True
    """Stratified random offsets of the samples during training."""
    occupancy: bool = True
    """Skip samples in cells the occupancy grid marks empty."""
    occupancy_resolution: int = knob(32, ge=4, le=256)
    """Cells per axis of the occupancy grid."""
    occupancy_threshold: float = knob(0.5, ge=0.0)
    """Density below which a cell counts as empty."""
    occupancy_every: int = knob(16, ge=1)
    """Refresh the grid every this many steps."""
    occupancy_warmup: int = knob(32, ge=0)
    """First step at which the grid is built and used (everything is sampled before)."""
    occupancy_decay: float = knob(0.9, ge=0.0, lt=1.0)
    """EMA decay of the grid's density (each refresh: max(decay * old, new))."""
    chunk: int = knob(1 << 18, ge=1024)
    """Most points sent to the field at once (bounds memory at evaluation)."""
    opacity_sparsity: float = knob(0.0, ge=0.0)
    """Weight of the mean opacity of training renders (discourages floaters)."""
    opacity_entropy: float = knob(0.0, ge=0.0)
    """Weight of the binary entropy of training renders' opacity (pushes alpha to 0 or 1)."""


class VolumeRenderer(Renderer):
    """Alpha-compositing NeRF renderer."""

    Config = VolumeRendererConfig
    grid_density: Tensor
    """[R, R, R] occupancy grid's density (a buffer)."""
    grid_step: Tensor
    """Step of the last refresh, -1 before the first (a buffer)."""

    def __init__(self, config: VolumeRendererConfig) -> None:
        super().__init__(config)
        r = config.occupancy_resolution
        self.register_buffer("grid_density", torch.zeros(r, r, r))
        self.register_buffer("grid_step", torch.tensor(-1, dtype=torch.long))
        self.grid_built = False
        """Host mirror of ``grid_step >= 0``, so rendering reads nothing back from the device."""
        self.register_load_state_dict_post_hook(_sync_grid_built)

    def regularizers(self, out: RenderOutput) -> dict[str, Tensor]:
        """``sparsity`` and ``entropy`` of the render's opacity, where their weights are positive."""
        return opacity_terms(out.opacity, self.config.opacity_sparsity, self.config.opacity_entropy)

    def points_per_pixel(self) -> int:
        """Every sample of a ray is queried before the occupancy grid is built."""
        return self.config.num_samples

    @torch.no_grad()
    def refresh(self, field: Representation, step: int) -> None:
        c = self.config
        if not c.occupancy or step % c.occupancy_every != 0 or step < c.occupancy_warmup:
            return
        r = c.occupancy_resolution
        axis = (torch.arange(r, device=self.grid_density.device) + 0.5) / r * 2 - 1
        pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).view(-1, 3) * field.bound
        dens = torch.cat([field.density(p) for p in pts.split(c.chunk)]).view(r, r, r)
        if self.grid_built:
            dens = torch.maximum(self.grid_density * c.occupancy_decay, dens)
        self.grid_density.copy_(dens)
        self.grid_step.fill_(step)
        self.grid_built = True

    def occupied(self, points: Tensor, bound: float) -> Tensor:
        """[N] bool: is the (dilated) occupancy cell of each point [N, 3] occupied."""
        c = self.config
        if not c.occupancy or not self.grid_built:
            return torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
        occ = (self.grid_density > c.occupancy_threshold).float()[None, None]
        occ = F.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0
        r = c.occupancy_resolution
        idx = ((points / bound + 1) * 0.5 * r).long().clamp(0, r - 1)
        return occ[idx[:, 0], idx[:, 1], idx[:, 2]]

    def _query(self, field: Representation, pts: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, int]:
        """Density [N] and colour [N, 3] at ``pts`` [N, 3] (zero outside ``valid`` or the occupied cells),
        and how many points were sent to the field.

        With a built occupancy grid only occupied points are evaluated: compacting them needs their count,
        one device-to-host read per step. Without one, every point is evaluated and nothing is read back.
        """
        c = self.config
        if not (c.occupancy and self.grid_built):
            outs = [field(p) for p in pts.split(c.chunk)]
            keep = valid.to(pts.dtype)
            density = torch.cat([x.density for x in outs]) * keep
            return density, torch.cat([x.rgb for x in outs]) * keep[:, None], pts.shape[0]
        density = torch.zeros(pts.shape[0], device=pts.device, dtype=pts.dtype)
        rgb = torch.zeros(pts.shape[0], 3, device=pts.device, dtype=pts.dtype)
        idx = (valid & self.occupied(pts, field.bound)).nonzero().squeeze(-1)
        if idx.numel():
            outs = [field(pts[i]) for i in idx.split(c.chunk)]
            density = density.index_put((idx,), torch.cat([x.density for x in outs]))
            rgb = rgb.index_put((idx,), torch.cat([x.rgb for x in outs]))
        return density, rgb, idx.numel()

    def forward(
        self,
        field: Representation,
        cameras: Cameras,
        background: Background,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        c = self.config
        origins, dirs = cameras.rays()  # [B, H, W, 3]
        b, h, w = len(cameras), cameras.height, cameras.width
        o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        near, far = _box_hits(o, d, field.bound)  # [R]
        s = c.num_samples
        offset = torch.full((o.shape[0], s), 0.5, device=o.device)
        if generator is not None and c.jitter:
            offset = torch.rand(o.shape[0], s, generator=generator).to(o.device)
        frac = (torch.arange(s, device=o.device) + offset) / s
        t = near[:, None] + (far - near)[:, None] * frac  # [R, S]
        pts = (o[:, None] + t[..., None] * d[:, None]).reshape(-1, 3)
        valid = (far > near)[:, None].expand(-1, s).reshape(-1)
        density, rgb, sent = self._query(field, pts, valid)
        delta = ((far - near) / s)[:, None]
        alpha = 1 - torch.exp(-density.view(-1, s) * delta)
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], -1), -1)[:, :-1]
        weights = alpha * trans  # [R, S]
        acc = weights.sum(-1, keepdim=True)
        color = (weights[..., None] * rgb.view(-1, s, 3)).sum(1)
        depth = (weights * t).sum(-1, keepdim=True)
        bg = background(dirs, generator).reshape(-1, 3)
        color = color + (1 - acc) * bg

        def img(x: Tensor) -> Tensor:
            return x.view(b, h, w, -1).permute(0, 3, 1, 2)

        stats = {"active_fraction": sent / max(pts.shape[0], 1)}
        return RenderOutput(rgb=img(color), opacity=img(acc), depth=img(depth), stats=stats)


def _sync_grid_built(module: VolumeRenderer, _result) -> None:
    """After loading a checkpoint, refresh the host mirror of the grid state (one read, at load time)."""
    module.grid_built = bool(module.grid_step >= 0)


def _box_hits(o: Tensor, d: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """Entry and exit distances [R] of rays with the box [-bound, bound]^3 (near >= 0)."""
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (-bound - o) * inv, (bound - o) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, torch.maximum(far, near)
