"""Camera batches and the camera-sampler contract.

Convention: world space is right-handed with +z up. A camera looks at ``look_at`` (the origin by
default) from ``distance``, ``elevation`` (degrees above the xy-plane) and ``azimuth`` (degrees from +x
towards +y). ``c2w`` is OpenGL-style: the camera looks down its local -z axis, local +y is up.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import torch
from torch import Tensor


@dataclasses.dataclass
class Cameras:
    """A batch of B pinhole cameras that share one image size."""

    c2w: Tensor
    """[B, 4, 4] camera-to-world matrices."""
    fov_y: Tensor
    """[B] vertical field of view, radians."""
    elevation: Tensor
    """[B] degrees."""
    azimuth: Tensor
    """[B] degrees in [0, 360)."""
    distance: Tensor
    """[B] distance to the look-at point."""
    height: int
    width: int

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def to(self, device: torch.device | str) -> Cameras:
        """The same cameras on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **moved)

    def repeat(self, n: int) -> Cameras:
        """The batch tiled ``n`` times (B -> n * B), e.g. to batch several conditionings."""
        tiled = {
            f.name: getattr(self, f.name).repeat(n, *([1] * (getattr(self, f.name).dim() - 1)))
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **tiled)

    def split(self, size: int) -> list[Cameras]:
        """Consecutive sub-batches of at most ``size`` cameras."""
        out = []
        for i in range(0, len(self), size):
            parts = {
                f.name: getattr(self, f.name)[i : i + size]
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), Tensor)
            }
            out.append(dataclasses.replace(self, **parts))
        return out

    def resized(self, height: int, width: int) -> Cameras:
        """The same poses rendered at another image size (same field of view)."""
        return dataclasses.replace(self, height=height, width=width)

    def focal(self) -> Tensor:
        """[B] focal lengths, pixels (from the vertical field of view and the height)."""
        return 0.5 * self.height / torch.tan(0.5 * self.fov_y)

    def to_camera(self, points: Tensor) -> Tensor:
        """[B, N, 3] world ``points`` [N, 3] in each camera's frame (OpenGL: the camera looks down -z, y up),
        computed in the points' dtype."""
        w2c = torch.linalg.inv(self.c2w.to(points.dtype))
        return torch.einsum("bij,nj->bni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]

    def rays(self) -> tuple[Tensor, Tensor]:
        """Ray origins and unit directions through pixel centres, each [B, H, W, 3]."""
        b, h, w = len(self), self.height, self.width
        dev, dt = self.c2w.device, self.c2w.dtype
        focal = self.focal()  # [B], pixels
        ys = torch.arange(h, device=dev, dtype=dt) + 0.5 - 0.5 * h
        xs = torch.arange(w, device=dev, dtype=dt) + 0.5 - 0.5 * w
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        f = focal.view(b, 1, 1)
        minus_z = -torch.ones(b, h, w, device=dev, dtype=dt)
        local = torch.stack([gx.expand(b, h, w) / f, -gy.expand(b, h, w) / f, minus_z], -1)
        dirs = torch.einsum("bij,bhwj->bhwi", self.c2w[:, :3, :3], local)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = self.c2w[:, :3, 3].view(b, 1, 1, 3).expand(b, h, w, 3)
        return origins, dirs

    def view_labels(self, front: float = 45.0, back: float = 135.0) -> list[str]:
        """``front``/``side``/``back`` per camera, by the angle from the +x (front) axis."""
        az = torch.remainder(self.azimuth + 180.0, 360.0) - 180.0
        out = []
        for a in az.abs().tolist():
            out.append("front" if a < front else "back" if a > back else "side")
        return out


def look_at_c2w(elevation: Tensor, azimuth: Tensor, distance: Tensor) -> Tensor:
    """[B, 4, 4] camera-to-world matrices looking at the origin, +z up."""
    el, az = torch.deg2rad(elevation), torch.deg2rad(azimuth)
    eye = torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1)
    eye = eye * distance[:, None]
    forward = -eye / eye.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device).expand_as(forward)
    right = torch.linalg.cross(forward, up)
    right = right / right.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    true_up = torch.linalg.cross(right, forward)
    c2w = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(len(eye), 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, -forward, eye
    return c2w


class CameraSampler(abc.ABC):
    """Samples training cameras and gives fixed evaluation cameras.

    Implementations must be deterministic given ``generator``: psdkit derives a generator from
    (seed, rank, step), so sampling needs no saved state for exact resume.
    """

    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        self.config = config

    @abc.abstractmethod
    def sample(self, step: int, generator: torch.Generator, num_ranks: int = 1) -> Cameras:
        """The *global* batch of training cameras for ``step``: ``num_ranks`` x the per-rank batch size
        (batch size and resolution may depend on the step). Every rank draws the same global batch and
        renders its own slice, so views are spread over all ranks."""

    def largest_batch(self) -> tuple[int, int, int]:
        """(views, height, width) of the largest per-rank training batch (sizes the pre-start memory check).
        Default: the batch of step 0."""
        cams = self.sample(0, torch.Generator().manual_seed(0))
        return len(cams), cams.height, cams.width

    def views_per_group(self) -> int:
        """Consecutive views of a training batch that are one group of one object, drawn as a multi-view prior
        (:meth:`psdkit.contracts.prior.DiffusionPrior.views_per_group`) expects them; batches are whole groups
        and a group never straddles two ranks. Default: 1 (independent views)."""
        return 1

    def sample_group(self, generator: torch.Generator) -> Cameras:
        """One group of training views (:meth:`views_per_group` cameras of one object, at step 0's size), from
        ``generator`` alone and whatever the batch size: strategies draw views of their own with it (PSD's replay
        pool). Default: the first group of step 0's batch (which may depend on the batch size)."""
        return self.sample(0, generator).split(self.views_per_group())[0]

    @abc.abstractmethod
    def orbit(self, n: int, height: int | None = None, width: int | None = None) -> Cameras:
        """``n`` evaluation cameras evenly spaced in azimuth (a turntable)."""
