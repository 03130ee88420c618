"""Turntable videos and meshes of a trained system (``psdkit fit``'s end and ``psdkit export``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import torch
from torch import Tensor

from psdkit.config.recipe_schema import OutputConfig
from psdkit.contracts.capabilities import DensityField
from psdkit.errors import RecipeError
from psdkit.mesh.config import MeshExportConfig
from psdkit.mesh.pipeline import CheckViews, EmptySurface, export_mesh
from psdkit.run.callbacks import to_uint8
from psdkit.run.evaluate import reward_scores
from psdkit.system import PSDSystem


def export_video(system: PSDSystem, path: Path, frames: int, size: int, fps: int) -> Path:
    """Write an mp4 turntable of ``frames`` views at ``size`` px (even sizes only, for H.264)."""
    size += size % 2
    images = system.render_views(frames, size)
    imageio.mimwrite(path, [to_uint8(img) for img in images], fps=fps, macro_block_size=1, quality=8)
    return path


def reward_scorer(system: PSDSystem) -> Callable[[Tensor], dict[str, float]]:
    """Scores a batch of renders [B, 3, H, W] with the run's training (``train_reward``) and held-out rewards."""

    def score(images: Tensor) -> dict[str, float]:
        train, heldout = reward_scores(system, images)
        return {**({"train_reward": train} if train is not None else {}), **heldout}

    return score


@torch.no_grad()
def check_views(system: PSDSystem, views: int, size: int) -> CheckViews:
    """The field's renders of the evaluation orbit, which the export check compares the mesh with."""
    cams = system.components.camera.orbit(views, size, size)
    return CheckViews(cams, system.background, system.render_views(views, size).cpu(), reward_scorer(system))


def mesh_export(system: PSDSystem, cfg: MeshExportConfig, out_dir: Path, views: int, size: int) -> dict[str, Any]:
    """Export the system's representation as ``cfg`` says into ``out_dir`` (export.json included)."""
    field = system.representation
    if not isinstance(field, DensityField):
        raise RecipeError(
            "representation", f"{type(field).__name__} has no density field to turn into a mesh (not a DensityField)"
        )
    return export_mesh(field, cfg, out_dir, check_views(system, views, size) if cfg.check else None)


def export_run_mesh(system: PSDSystem, out: OutputConfig, run_dir: Path, metrics: dict[str, Any]) -> dict[str, str]:
    """The end-of-fit export: files by format; the level, face count and check PSNR go into ``metrics``."""
    try:
        report = mesh_export(system, out.export, run_dir, out.eval_views, out.eval_resolution)
    except EmptySurface as err:
        metrics["mesh_warning"] = f"{err}"
        return {}
    metrics["mesh"] = {k: report[k] for k in ("level", "faces", "seconds") if k in report}
    if "check" in report:
        metrics["mesh"]["psnr_to_field"] = report["check"]["psnr"]
    return {name.rpartition(".")[2]: str(run_dir / name) for name in report["files"] if name.startswith("mesh.")}
