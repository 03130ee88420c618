"""``psdkit export``: a finished run's mesh, with other settings than the run's own, written atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from psdkit.config.schema import build_config, config_to_dict
from psdkit.contracts.capabilities import DensityField
from psdkit.errors import RecipeError, RunDirError
from psdkit.mesh.config import MeshExportConfig
from psdkit.mesh.pipeline import EmptySurface
from psdkit.run.eval_run import eval_system, load_into, load_run_recipe


def export_config(base: MeshExportConfig, changes: dict[str, Any]) -> MeshExportConfig:
    """``base`` with ``changes`` (None values ignored), validated like a recipe's ``output.export``."""
    data = config_to_dict(base)
    data.update({k: v for k, v in changes.items() if v is not None})
    return build_config(MeshExportConfig, data, "output.export")


def export_run(run_dir: Path, changes: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """Export ``run_dir``'s last checkpoint into ``out`` (default: the run directory).

    Everything is written to a temporary folder in the run directory first and moved in at the end, so a failure
    (no checkpoint, no surface, a representation without a density field) writes nothing.
    """
    from psdkit.run.export import mesh_export

    recipe = load_run_recipe(run_dir, None)
    cfg = export_config(recipe.schema.output.export, changes)
    rep = recipe.components["representation"]
    if not issubclass(rep.cls, DensityField):
        raise RecipeError(
            "representation",
            f"{rep.info.name!r} has no density field to turn into a mesh (it does not declare DensityField)",
        )
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise RunDirError(f"{run_dir}: no checkpoints/last.ckpt to export (the run saved no checkpoint)")
    out = out or run_dir
    system = eval_system(recipe)
    load_into(system, ckpt)
    o = recipe.schema.output
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".export-") as tmp:
        try:
            report = mesh_export(system, cfg, Path(tmp), o.eval_views, o.eval_resolution)
        except EmptySurface as err:
            raise RunDirError(f"{run_dir}: {err}") from None
        out.mkdir(parents=True, exist_ok=True)
        for name in [*report["files"], "export.json"]:
            shutil.move(str(Path(tmp) / name), out / name)
    report["out"] = str(out)
    return report
