"""Adaptive density control of Gaussians (Kerbl et al. 2023): clone small and split large Gaussians whose
screen-space gradient is high, prune transparent and oversized ones, reset opacities; on a schedule.

Operates on slots: a new Gaussian takes a free slot, a pruned one frees its slot. Returns the slots whose
optimizer state must restart.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from psdkit.ops.gaussians import quat_to_rotmat

if TYPE_CHECKING:
    from psdkit_plugins.representations.gaussians import Gaussians3D

Resets = list[tuple[nn.Parameter, Tensor]]


def step(rep: Gaussians3D, step: int, generator: torch.Generator) -> Resets:
    """Densify and prune at the configured steps, then reset opacities when due."""
    c = rep.config
    if not c.densify_from <= step < c.densify_until or step == 0:
        return []
    resets: Resets = []
    if (step - c.densify_from) % c.densify_every == 0 and step > c.densify_from:
        resets += densify(rep, generator)
        resets += prune(rep)
        rep.grad_accum.zero_()
        rep.grad_count.zero_()
    if c.opacity_reset_every and step % c.opacity_reset_every == 0:
        resets += reset_opacity(rep)
    return resets


def _params(rep: Gaussians3D) -> list[nn.Parameter]:
    return [rep.means, rep.log_scales, rep.quats, rep.opacity_logits, rep.sh]


@torch.no_grad()
def densify(rep: Gaussians3D, generator: torch.Generator) -> Resets:
    """Clone or split the active Gaussians whose mean gradient reaches ``grad_threshold``, as free slots allow
    (the highest gradients first)."""
    c = rep.config
    mean_grad = rep.grad_accum / rep.grad_count.clamp_min(1)
    seen = rep.active & (rep.grad_count > 0)
    threshold = c.grad_threshold
    if c.grad_quantile > 0 and seen.any():
        threshold = max(threshold, float(torch.quantile(mean_grad[seen], c.grad_quantile)))
    chosen = (seen & (mean_grad >= threshold)).nonzero().squeeze(1)
    free = (~rep.active).nonzero().squeeze(1)
    if len(chosen) == 0 or len(free) == 0:
        return []
    if len(chosen) > len(free):
        chosen = chosen[mean_grad[chosen].argsort(descending=True, stable=True)[: len(free)]]
    new = free[: len(chosen)]
    extent = 2 * c.bound
    large = rep.log_scales[chosen].exp().amax(-1) > c.dense_fraction * extent
    for p in _params(rep):
        p[new] = p[chosen]
    rep.active[new] = True
    split, split_new = chosen[large], new[large]
    if len(split):
        std = rep.log_scales[split].exp()
        rot = quat_to_rotmat(rep.quats[split])
        centre = rep.means[split].clone()
        for slot in (split, split_new):
            noise = torch.randn(len(split), 3, generator=generator).to(std)
            rep.means[slot] = centre + (rot @ (std * noise)[..., None])[..., 0]
        shrunk = rep.log_scales[split] - math.log(c.split_shrink)
        rep.log_scales[split] = shrunk
        rep.log_scales[split_new] = shrunk
        rep.means.clamp_(-c.bound, c.bound)
    touched = torch.cat([new, split])
    return [(p, touched) for p in _params(rep)]


@torch.no_grad()
def prune(rep: Gaussians3D) -> Resets:
    """Free the slots of Gaussians less opaque than ``prune_opacity`` or larger than ``prune_scale`` of the
    scene's extent (keeping at least one Gaussian)."""
    c = rep.config
    weak = torch.sigmoid(rep.opacity_logits) < c.prune_opacity
    big = rep.log_scales.exp().amax(-1) > c.prune_scale * 2 * c.bound
    drop = rep.active & (weak | big)
    if int(drop.sum()) >= rep.count():
        keep = torch.where(rep.active, rep.opacity_logits, torch.full_like(rep.opacity_logits, -math.inf)).argmax()
        drop[keep] = False
    rep.active &= ~drop
    return []


@torch.no_grad()
def reset_opacity(rep: Gaussians3D) -> Resets:
    """Clamp every active opacity down to ``opacity_reset_value`` (Adam's moments of the opacities restart)."""
    v = rep.config.opacity_reset_value
    limit = math.log(v / (1 - v))
    ids = rep.active.nonzero().squeeze(1)
    rep.opacity_logits[ids] = rep.opacity_logits[ids].clamp_max(limit)
    return [(rep.opacity_logits, ids)]
