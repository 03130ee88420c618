"""The export pipeline: field -> marching cubes -> cleanup -> decimation -> UV atlas -> baked texture -> files,
and the check that the written mesh looks like the field."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh
from torch import Tensor

from psdkit.contracts import Background, Cameras, Representation
from psdkit.mesh import bake, cleanup, decimate, extract, files, unwrap
from psdkit.mesh.config import MeshExportConfig
from psdkit.mesh.load import TexturedMesh, load_textured
from psdkit.mesh.render import render_mesh
from psdkit.ops.metrics import psnr


@dataclasses.dataclass
class CheckViews:
    """What the export check compares the mesh with: the field's renders from the evaluation cameras."""

    cameras: Cameras
    background: Background
    reference: Tensor
    """[B, 3, H, W] the field's renders from ``cameras``, in [0, 1]."""
    score: Callable[[Tensor], dict[str, float]] | None = None
    """Rewards of a batch of renders [B, 3, H, W] by name (None: not scored)."""


class EmptySurface(Exception):
    """The density level crosses no cell of the grid."""


class Laps:
    """Wall time of each pipeline step, seconds."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(now - self._last, 3)
        self._last = now


def export_mesh(
    field: Representation, cfg: MeshExportConfig, out_dir: Path, views: CheckViews | None
) -> dict[str, Any]:
    """Run the pipeline, write the files and ``export.json`` into ``out_dir``; return the report.

    Raises :class:`EmptySurface` (nothing written) when the level crosses no cell.
    """
    lap = Laps()
    mesh, report = surface(field, cfg, lap)
    out, held = dress(field, cfg, mesh, report, lap)
    written: list[Path] = []
    for fmt in cfg.formats:
        target = out
        if fmt == "ply" and cfg.texture == "uv":  # PLY has no standard texture reference: vertex colours
            target = files.vertex_coloured(
                mesh, vertex_colors(field, np.asarray(mesh.vertices)), cfg.up_axis, cfg.scale
            )
        written += files.write(target, out_dir, fmt)
    lap("write")
    report["files"] = [p.name for p in written]
    report["frame"] = {"up": cfg.up_axis, "units": f"{cfg.scale:g} m per world unit"}
    if cfg.check and views is not None and held is not None:
        report["check"] = check(reread(out_dir, cfg, held), views, cfg.check_supersample)
        lap("check")
    report["timings_s"] = lap.times
    report["seconds"] = round(sum(lap.times.values()), 3)
    (out_dir / "export.json").write_text(json.dumps(report, indent=2))
    return report


def surface(field: Representation, cfg: MeshExportConfig, lap: Laps) -> tuple[trimesh.Trimesh, dict[str, Any]]:
    """Marching cubes, cleanup and decimation; the mesh and the report's first entries."""
    raw = extract.marching_cubes(field, cfg.resolution, cfg.level, cfg.grid_skip)
    if raw is None:
        raise EmptySurface("no surface: the density level crosses no cell of the grid (set output.export.level)")
    verts, faces, level, evaluated = raw
    lap("marching_cubes")
    mesh = cleanup.clean(verts, faces, cfg.keep_components)
    lap("cleanup")
    mesh = decimate.decimate(mesh, cfg.faces)
    lap("decimate")
    report = {"level": round(level, 6), "grid_evaluated": round(evaluated, 4), "faces": len(mesh.faces)}
    return mesh, {**report, "config": dataclasses.asdict(cfg)}


def dress(
    field: Representation, cfg: MeshExportConfig, mesh: trimesh.Trimesh, report: dict[str, Any], lap: Laps
) -> tuple[trimesh.Trimesh, TexturedMesh | None]:
    """The mesh to write, in the files' frame, with a baked texture (and that textured mesh in the world frame)
    or vertex colours (and None)."""
    if cfg.texture == "vertex":
        report["vertices"] = len(mesh.vertices)
        return files.vertex_coloured(
            mesh, vertex_colors(field, np.asarray(mesh.vertices)), cfg.up_axis, cfg.scale
        ), None
    uvm = unwrap.unwrap(mesh, cfg.texture_size, cfg.chart_padding)
    lap("unwrap")
    surf = bake.texel_surface(uvm, cfg.texture_size)
    tex, mask = bake.bake(field, surf, cfg.bake_offset, cfg.bake_samples)
    tex = bake.dilate(tex, mask, cfg.dilate)
    lap("bake")
    report.update(
        vertices=len(uvm.verts), texture_size=cfg.texture_size, texels_covered=round(float(mask.float().mean()), 4)
    )
    image = (tex.numpy() * 255).round().astype(np.uint8)
    held = TexturedMesh(
        torch.from_numpy(uvm.verts).float(), torch.from_numpy(uvm.faces), torch.from_numpy(uvm.uv).float(), tex
    )
    return files.textured(uvm, image, cfg.up_axis, cfg.scale), held


def vertex_colors(field: Representation, verts: np.ndarray) -> np.ndarray:
    """[V, 3] the field's colour at each vertex (world units), in [0, 1]."""
    return extract.colours_at(field, torch.from_numpy(verts).float()).numpy()


def reread(out_dir: Path, cfg: MeshExportConfig, held: TexturedMesh) -> TexturedMesh:
    """The textured mesh as written (the GLB or OBJ read back), or as held when neither was written."""
    for fmt in ("glb", "obj"):
        if fmt in cfg.formats:
            return load_textured(out_dir / f"mesh.{fmt}", cfg.up_axis, cfg.scale)
    return held


def render_textured(mesh: TexturedMesh, cameras: Cameras, background: Background, supersample: int) -> Tensor:
    """[B, 3, H, W] renders of ``mesh``, rendered ``supersample`` times larger and area-averaged."""
    big = cameras.resized(cameras.height * supersample, cameras.width * supersample)
    img = render_mesh(mesh.verts, mesh.faces, mesh.uv, mesh.texture, big.to("cpu"), background)
    return torch.nn.functional.avg_pool2d(img, supersample) if supersample > 1 else img


def check(mesh: TexturedMesh, views: CheckViews, supersample: int) -> dict[str, Any]:
    """PSNR of the mesh's renders against the field's, per view, and both renders' rewards."""
    images = render_textured(mesh, views.cameras, views.background, supersample)
    per_view = psnr(images, views.reference.cpu().float())
    out: dict[str, Any] = {
        "views": len(images),
        "resolution": views.cameras.height,
        "psnr": round(float(per_view.mean()), 3),
        "per_view_psnr": [round(float(v), 3) for v in per_view],
    }
    if views.score is not None:
        field_scores, mesh_scores = views.score(views.reference), views.score(images)
        out["rewards"] = {
            k: {"field": round(field_scores[k], 4), "mesh": round(mesh_scores[k], 4)} for k in field_scores
        }
    return out
