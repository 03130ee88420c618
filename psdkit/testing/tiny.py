"""Tiny real components for tests: built-in plugins at toy sizes, loaded through the registry."""

from __future__ import annotations

from typing import Any

import torch

from psdkit.config.schema import build_config
from psdkit.contracts import (
    Background,
    Cameras,
    Conditioning,
    DiffusionPrior,
    GuidanceContext,
    Renderer,
    Representation,
    RewardModel,
    ViewSource,
    look_at_c2w,
)
from psdkit.registry import default_registry
from psdkit.run.build import make_conditioning, view_source


def make(kind: str, name: str, **config: Any) -> Any:
    """Instantiate installed plugin ``name`` of ``kind`` with ``config`` (validated)."""
    cls = default_registry().load(kind, name)
    return cls(build_config(cls.Config, config, kind))


def tiny_cameras(n: int = 2, size: int = 16, seed: int = 0) -> Cameras:
    """``n`` cameras around the origin at ``size`` x ``size`` pixels."""
    gen = torch.Generator().manual_seed(seed)
    el = 10 + 20 * torch.rand(n, generator=gen)
    az = 360 * torch.rand(n, generator=gen)
    dist = torch.full((n,), 2.8)
    fov = torch.full((n,), 0.7)
    return Cameras(look_at_c2w(el, az, dist), fov, el, az, dist, size, size)


def tiny_prior(resolution: int = 16, views: int = 1) -> DiffusionPrior:
    """The analytic prior at ``resolution`` px (joint over groups of ``views`` views when > 1)."""
    return make("prior", "analytic", resolution=resolution, **({"joint_views": views} if views > 1 else {}))


def tiny_reward() -> RewardModel:
    """The analytic training reward."""
    return make("reward", "analytic")


def tiny_field() -> Representation:
    """A small hash-grid NeRF."""
    return make(
        "representation",
        "hashgrid-nerf",
        levels=4,
        log2_table_size=10,
        base_resolution=4,
        finest_resolution=32,
        hidden=16,
    )


def tiny_renderer() -> Renderer:
    """A volume renderer with few samples and no occupancy grid."""
    return make("renderer", "volume", num_samples=8, occupancy=False)


def tiny_background() -> Background:
    """A white background."""
    return make("background", "solid")


def tiny_context(
    prompt: str = "a sphere", negative: str = "", view_dependent: bool = False, resolution: int = 16, views: int = 1
) -> GuidanceContext:
    """Analytic prior (denoising groups of ``views`` views jointly) + reward + conditioning for ``prompt``."""
    from psdkit.config.recipe_schema import PromptConfig

    prior = tiny_prior(resolution, views)
    cond: Conditioning = make_conditioning(
        prior, PromptConfig(text=prompt, negative=negative, view_dependent=view_dependent)
    )
    prompt_cfg = PromptConfig(text=prompt, negative=negative, view_dependent=view_dependent)
    return GuidanceContext(
        prior=prior, reward=tiny_reward(), cond=cond, views=tiny_views(cond, prompt_cfg, resolution, views)
    )


def tiny_views(cond: Conditioning, prompt: Any, resolution: int = 16, views: int = 1) -> ViewSource:
    """Orbit cameras at ``resolution`` px in groups of ``views``, labelled for ``cond`` as a run labels them."""
    camera = make("camera", "orbit", batch_size=4 * views, height=resolution, width=resolution, group_views=views)
    return view_source(camera, cond, prompt, 0)
