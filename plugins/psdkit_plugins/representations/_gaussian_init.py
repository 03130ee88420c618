"""Initial Gaussians: a ball, a shell, a .ply point cloud, or a finished run's field."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from psdkit.errors import PluginError

if TYPE_CHECKING:
    from psdkit_plugins.representations.gaussians import Gaussians3D, GaussiansConfig


def initialize(rep: Gaussians3D, c: GaussiansConfig) -> None:
    """Fill ``rep``'s slots as ``c.init`` says (torch's global generator: the run's seed makes it repeatable)."""
    if c.init == "ply":
        from psdkit.mesh.gaussian_ply import read_gaussians_ply, read_point_cloud, read_vertices

        path = Path(str(c.init_path))
        if "f_dc_0" in read_vertices(path):  # a 3DGS file: its Gaussians exactly
            rep.load_raw_gaussians(read_gaussians_ply(path))
            return
        means, rgb = read_point_cloud(path)
        rep.set_gaussians(means, torch.full_like(means, c.init_scale), torch.full((len(means),), c.init_opacity), rgb)
        return
    if c.init == "run":
        means, rgb = sample_run(Path(str(c.init_path)), c.init_count)
        rep.set_gaussians(means, torch.full_like(means, c.init_scale), torch.full((len(means),), c.init_opacity), rgb)
        return
    n = c.init_count
    direction = torch.randn(n, 3)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    radius = c.init_radius * (torch.rand(n, 1) ** (1 / 3) if c.init == "ball" else torch.ones(n, 1))
    means = direction * radius
    rep.set_gaussians(means, torch.full_like(means, c.init_scale), torch.full((n,), c.init_opacity), None)


@torch.no_grad()
def sample_run(run_dir: Path, count: int, candidates: int = 200_000) -> tuple[Any, Any]:
    """``count`` points where a finished run's field is dense (drawn with probability proportional to the
    density among ``candidates`` uniform points in its box), with the field's colours there."""
    from psdkit.run.build import build_representation
    from psdkit.run.eval_run import load_run_recipe
    from psdkit.run.rundir import read_checkpoint

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise PluginError(f"representation.config.init_path: {run_dir} has no checkpoints/last.ckpt")
    field = build_representation(load_run_recipe(run_dir, None))
    state = read_checkpoint(ckpt)["state_dict"]
    field.load_state_dict(
        {k.removeprefix("representation."): v for k, v in state.items() if k.startswith("representation.")}
    )
    pts = (torch.rand(candidates, 3) * 2 - 1) * field.bound
    out = field(pts)
    weights = out.density.clamp_min(0)
    if not weights.sum() > 0:
        raise PluginError(f"representation.config.init_path: {run_dir}'s field is empty (zero density everywhere)")
    pick = torch.multinomial(weights, count, replacement=count > int((weights > 0).sum()))
    return pts[pick], out.rgb[pick].clamp(0, 1)
