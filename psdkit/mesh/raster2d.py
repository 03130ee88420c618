"""Which pixel centres each 2D triangle covers: the rasterizer shared by texture baking (UV space) and the
export check (screen space)."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor


@dataclasses.dataclass
class Coverage:
    """(pixel, triangle) pairs whose pixel centre lies inside the triangle, M of them."""

    face: Tensor
    """[M] triangle index."""
    row: Tensor
    """[M] pixel row (0 = top)."""
    col: Tensor
    """[M] pixel column."""
    bary: Tensor
    """[M, 3] barycentric coordinates of the pixel centre in the triangle."""


def cover(tri: Tensor, height: int, width: int, chunk: int = 1 << 22) -> Coverage:
    """Pixel centres covered by triangles ``tri`` [F, 3, 2] given in pixel units (x right, y down).

    Enumerates each triangle's bounding box clipped to the image, in chunks of about ``chunk`` candidates,
    and keeps centres inside or on an edge (so a closed mesh leaves no holes). Degenerate triangles cover
    nothing.
    """
    tri = tri.double()
    lo = (tri.min(1).values - 0.5).ceil().clamp_min(0)
    hi = (tri.max(1).values - 0.5).floor()
    hi = torch.minimum(hi, torch.tensor([width - 1.0, height - 1.0], dtype=hi.dtype))
    size = (hi - lo + 1).clamp_min(0).long()  # [F, 2] (w, h) of the clipped box
    counts = size[:, 0] * size[:, 1]
    parts = []
    start = 0
    cum = counts.cumsum(0)
    while start < len(tri):
        base = cum[start - 1] if start > 0 else 0
        stop = int(torch.searchsorted(cum, base + chunk, right=True).clamp(min=start + 1))
        parts.append(_cover_range(tri, lo, size, counts, start, stop))
        start = stop
    if not parts:
        empty = torch.zeros(0, dtype=torch.long)
        return Coverage(empty, empty, empty, torch.zeros(0, 3, dtype=torch.float32))
    return Coverage(*(torch.cat(p) for p in zip(*parts)))


def _cover_range(
    tri: Tensor, lo: Tensor, size: Tensor, counts: Tensor, start: int, stop: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(face, row, col, bary) of triangles ``start:stop``."""
    idx = torch.arange(start, stop)
    face = torch.repeat_interleave(idx, counts[start:stop])
    first = torch.repeat_interleave(counts[start:stop].cumsum(0) - counts[start:stop], counts[start:stop])
    local = torch.arange(len(face)) - first
    w = size[face, 0].clamp_min(1)
    col = lo[face, 0].long() + local % w
    row = lo[face, 1].long() + local // w
    p = torch.stack([col.double() + 0.5, row.double() + 0.5], -1)
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
    area = _cross(b - a, c - a)
    ok = area.abs() > 1e-12
    safe = torch.where(ok, area, torch.ones_like(area))
    l0, l1 = _cross(b - p, c - p) / safe, _cross(c - p, a - p) / safe
    bary = torch.stack([l0, l1, 1 - l0 - l1], -1)
    inside = ok & (bary >= -1e-9).all(-1)
    return face[inside], row[inside], col[inside], bary[inside].float()


def _cross(u: Tensor, v: Tensor) -> Tensor:
    """z of the 2D cross product of [N, 2] vectors."""
    return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
