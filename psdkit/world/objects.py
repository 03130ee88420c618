"""Procedural coloured primitives and their exact ray-cast renders."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit.contracts.camera import Cameras


@dataclasses.dataclass(frozen=True)
class WorldObject:
    """One object of the analytic world, centred at the origin."""

    name: str
    """Identifier (``red-sphere``)."""
    shape: Literal["sphere", "cube"]
    """Primitive type."""
    size: float
    """Sphere radius or cube half-size, world units."""
    color: tuple[float, float, float]
    """Albedo in [0, 1]."""
    words: tuple[str, ...]
    """Words that name this object; a prompt containing them selects it."""


DEFAULT_OBJECTS: tuple[WorldObject, ...] = (
    WorldObject("red-sphere", "sphere", 0.5, (0.9, 0.15, 0.1), ("red", "sphere", "ball")),
    WorldObject("blue-sphere", "sphere", 0.5, (0.1, 0.25, 0.9), ("blue", "sphere", "ball")),
    WorldObject("green-cube", "cube", 0.38, (0.15, 0.75, 0.2), ("green", "cube", "box")),
    WorldObject("purple-cube", "cube", 0.38, (0.55, 0.2, 0.8), ("purple", "cube", "box")),
)

EXTRA_OBJECTS: tuple[WorldObject, ...] = (
    WorldObject("orange-bead", "sphere", 0.3, (0.95, 0.5, 0.1), ("orange", "bead")),
    WorldObject("yellow-bead", "sphere", 0.3, (0.9, 0.8, 0.2), ("yellow", "bead")),
    WorldObject("teal-bead", "sphere", 0.3, (0.1, 0.6, 0.6), ("teal", "bead")),
    WorldObject("pink-block", "cube", 0.3, (0.9, 0.45, 0.6), ("pink", "block")),
    WorldObject("grey-block", "cube", 0.3, (0.5, 0.5, 0.5), ("grey", "block")),
)
"""Objects a prior includes only when its config names them: "a bead" has three answers, "a block" two, and
their reward margins are smaller than the spheres' (docs/analytic_world.md)."""

WORLD_OBJECTS: tuple[WorldObject, ...] = DEFAULT_OBJECTS + EXTRA_OBJECTS
"""Every object of the world, by name in ``objects`` of the analytic prior's config."""

LIGHT_DIR = (0.4, 0.3, 0.87)
AMBIENT = 0.35


def _hit_sphere(o: Tensor, d: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - radius**2
    disc = b * b - c
    s = -b - torch.sqrt(disc.clamp_min(0))
    hit = (disc > 0) & (s > 0)
    normal = o + s[..., None] * d
    return hit, normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def _hit_cube(o: Tensor, d: Tensor, half: float) -> tuple[Tensor, Tensor]:
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (-half - o) * inv, (half - o) * inv
    tmin = torch.minimum(t0, t1).amax(-1)
    tmax = torch.maximum(t0, t1).amin(-1)
    hit = (tmax > tmin) & (tmin > 0)
    p = o + tmin[..., None] * d
    axis = p.abs().argmax(-1, keepdim=True)
    normal = torch.zeros_like(p).scatter(-1, axis, torch.sign(p.gather(-1, axis)))
    return hit, normal


def render_objects(objects: tuple[WorldObject, ...], cameras: Cameras, supersample: int = 2) -> Tensor:
    """Exact renders [K, B, 3, H, W] in [0, 1] of each object alone on a white background.

    Lambertian shading under a fixed world-space light, so the colour of a surface point does not
    depend on the viewer (a view-independent radiance field can match it exactly).
    """
    hi = cameras.resized(cameras.height * supersample, cameras.width * supersample)
    origins, dirs = hi.rays()
    light = torch.tensor(LIGHT_DIR, dtype=dirs.dtype, device=dirs.device)
    light = light / light.norm()
    out = []
    for obj in objects:
        hit_fn = _hit_sphere if obj.shape == "sphere" else _hit_cube
        hit, normal = hit_fn(origins, dirs, obj.size)
        shade = AMBIENT + (1 - AMBIENT) * (normal @ light).clamp_min(0)
        color = torch.tensor(obj.color, dtype=dirs.dtype, device=dirs.device)
        img = torch.where(hit[..., None], shade[..., None] * color, torch.ones_like(origins))
        out.append(img.permute(0, 3, 1, 2))
    imgs = torch.stack(out)  # [K, B, 3, sH, sW]
    if supersample > 1:
        k, b = imgs.shape[:2]
        imgs = F.avg_pool2d(imgs.flatten(0, 1), supersample).unflatten(0, (k, b))
    return imgs


def answering(objects: tuple[WorldObject, ...], prompt: str) -> list[int]:
    """Indices of the objects that best match ``prompt`` (most shared words; all if none match)."""
    words = set(prompt.lower().replace(",", " ").split())
    counts = [len(words & set(o.words)) for o in objects]
    best = max(counts)
    return [i for i, c in enumerate(counts) if c == best] if best > 0 else list(range(len(objects)))
