"""Random cameras on a sphere around the object, with resolution and batch-size milestones."""

from __future__ import annotations

import dataclasses
import math

import torch

from psdkit.config.schema import knob
from psdkit.contracts import Cameras, CameraSampler, look_at_c2w


@dataclasses.dataclass(frozen=True)
class Milestone:
    """From ``step`` on, render at ``height`` x ``width`` with ``batch_size`` views."""

    step: int = knob(ge=0)
    """First step this milestone applies to."""
    height: int = knob(ge=4, le=8192)
    """Render height, pixels."""
    width: int = knob(ge=4, le=8192)
    """Render width, pixels."""
    batch_size: int = knob(ge=1, le=1024)
    """Views per step (per rank)."""


@dataclasses.dataclass(frozen=True)
class OrbitCameraConfig:
    """Config of the orbit camera sampler. Angles in degrees."""

    batch_size: int = knob(4, ge=1, le=1024)
    """Views per step (per rank) before any milestone."""
    height: int = knob(32, ge=4, le=8192)
    """Render height before any milestone."""
    width: int = knob(32, ge=4, le=8192)
    """Render width before any milestone."""
    elevation_range: tuple[float, float] = (0.0, 30.0)
    """Elevation is uniform in this range."""
    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    """Azimuth is uniform in this range."""
    distance_range: tuple[float, float] = (2.6, 3.0)
    """Camera distance to the origin is uniform in this range."""
    fov_range: tuple[float, float] = (35.0, 45.0)
    """Vertical field of view is uniform in this range."""
    distance_relative: bool = False
    """distance_range is relative to the field of view: the distance is d / tan(fov / 2), so the object fills
    the frame alike at every fov (MVDream's ``relative_radius``)."""
    stratified_azimuth: bool = True
    """Spread the batch's azimuths evenly (random offset) instead of independently."""
    group_views: int = knob(1, ge=1, le=64)
    """Views per group of one object, as multi-view priors (MVDream) are trained: a group shares elevation,
    distance and field of view, with azimuths 360 / group_views apart from a random start (groups' starts
    stratified when ``stratified_azimuth``). Batch sizes must be multiples; under DDP a group never straddles
    two ranks. 1: independent views."""
    milestones: tuple[Milestone, ...] = ()
    """Resolution / batch-size changes, in increasing ``step``."""
    eval_elevation: float = 15.0
    """Elevation of evaluation (turntable) cameras."""
    eval_distance: float = knob(2.8, gt=0.0)
    """Distance of evaluation cameras."""
    eval_fov: float = knob(40.0, gt=0.0, lt=180.0)
    """Field of view of evaluation cameras."""

    def __post_init__(self) -> None:
        for name in ("elevation_range", "azimuth_range", "distance_range", "fov_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low end {lo} is above high end {hi}")
        if not -90.0 < self.elevation_range[0] <= self.elevation_range[1] < 90.0:
            raise ValueError("elevation_range must lie inside (-90, 90)")
        for size in (self.batch_size, *(m.batch_size for m in self.milestones)):
            if size % self.group_views:
                raise ValueError(f"batch_size {size} is not a multiple of group_views {self.group_views}")
        steps = [m.step for m in self.milestones]
        if steps != sorted(steps):
            raise ValueError(f"milestones: steps must increase, got {steps}")


class OrbitCameraSampler(CameraSampler):
    """Cameras looking at the origin from a random point of a spherical shell."""

    Config = OrbitCameraConfig

    def batch_spec(self, step: int) -> tuple[int, int, int]:
        """(batch_size, height, width) in force at ``step``."""
        c = self.config
        spec = (c.batch_size, c.height, c.width)
        for m in c.milestones:
            if step >= m.step:
                spec = (m.batch_size, m.height, m.width)
        return spec

    def views_per_group(self) -> int:
        """``group_views``."""
        return self.config.group_views

    def largest_batch(self) -> tuple[int, int, int]:
        """The milestone (or base) batch with the most pixels."""
        c = self.config
        specs = [(c.batch_size, c.height, c.width), *((m.batch_size, m.height, m.width) for m in c.milestones)]
        return max(specs, key=lambda s: s[0] * s[1] * s[2])

    def sample(self, step: int, generator: torch.Generator, num_ranks: int = 1) -> Cameras:
        b, h, w = self.batch_spec(step)
        return self._draw(b * num_ranks, h, w, generator)

    def sample_group(self, generator: torch.Generator) -> Cameras:
        """Exactly one group (``group_views`` cameras) at step 0's size, independent of the batch size."""
        _, h, w = self.batch_spec(0)
        return self._draw(self.config.group_views, h, w, generator)

    def _draw(self, b: int, h: int, w: int, generator: torch.Generator) -> Cameras:
        """``b`` training cameras of ``h`` x ``w`` pixels."""
        c = self.config

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(b, generator=generator)

        if c.group_views > 1:
            return self._groups(b, h, w, generator)
        if c.stratified_azimuth:
            lo, hi = c.azimuth_range
            az = lo + (hi - lo) * (torch.arange(b) + torch.rand(1, generator=generator)) / b
        else:
            az = uniform(*c.azimuth_range)
        el, dist = uniform(*c.elevation_range), uniform(*c.distance_range)
        fov = torch.deg2rad(uniform(*c.fov_range))
        dist = self._relative(dist, fov)
        return Cameras(look_at_c2w(el, az, dist), fov, el, torch.remainder(az, 360.0), dist, h, w)

    def _groups(self, b: int, h: int, w: int, generator: torch.Generator) -> Cameras:
        """``b`` views in groups of ``group_views``: shared elevation, distance and fov; evenly spaced azimuths."""
        c = self.config
        n, g = c.group_views, b // c.group_views

        def per_group(lo: float, hi: float) -> torch.Tensor:
            return (lo + (hi - lo) * torch.rand(g, generator=generator)).repeat_interleave(n)

        lo, hi = c.azimuth_range
        offsets = (torch.arange(g) + torch.rand(1, generator=generator)) / g if c.stratified_azimuth else None
        start = lo + (hi - lo) * (offsets if offsets is not None else torch.rand(g, generator=generator))
        az = start.repeat_interleave(n) + (torch.arange(n) * 360.0 / n).repeat(g)
        el, dist = per_group(*c.elevation_range), per_group(*c.distance_range)
        fov = torch.deg2rad(per_group(*c.fov_range))
        dist = self._relative(dist, fov)
        return Cameras(look_at_c2w(el, az, dist), fov, el, torch.remainder(az, 360.0), dist, h, w)

    def _relative(self, dist: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
        """``dist`` [B] scaled by 1 / tan(fov / 2) when ``distance_relative``."""
        return dist / torch.tan(0.5 * fov) if self.config.distance_relative else dist

    def orbit(self, n: int, height: int | None = None, width: int | None = None) -> Cameras:
        c = self.config
        az = torch.arange(n, dtype=torch.float32) * 360.0 / n
        el = torch.full((n,), c.eval_elevation)
        dist = torch.full((n,), c.eval_distance)
        fov = torch.full((n,), math.radians(c.eval_fov))
        return Cameras(look_at_c2w(el, az, dist), fov, el, az, dist, height or c.height, width or c.width)
