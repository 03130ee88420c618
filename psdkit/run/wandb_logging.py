"""Weights & Biases through Lightning's WandbLogger: everything is logged at the trainer's global step.

The API key comes only from the environment (``WANDB_API_KEY``) or ``wandb login``; recipes have no
key field, and the resolved recipe (the run config) therefore never holds one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psdkit.config.recipe import Recipe
from psdkit.errors import PsdkitError


class WandbUnavailable(PsdkitError):
    """wandb is not installed or cannot start."""

    exit_code = 2


def make_wandb_logger(recipe: Recipe, run_dir: Path) -> Any:
    """A WandbLogger whose run config is the resolved recipe, writing under ``run_dir``."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError as err:  # pragma: no cover - lightning always has it
        raise WandbUnavailable(str(err)) from err
    try:
        import wandb  # noqa: F401
    except ImportError as err:
        raise WandbUnavailable("logger.name: wandb needs the wandb package: pip install 'psdkit[wandb]'") from err
    cfg = recipe.schema.logger
    kwargs: dict[str, Any] = {"config": recipe.to_dict(), "tags": list(cfg.tags)}
    if cfg.mode is not None:
        kwargs["mode"] = cfg.mode
    return WandbLogger(
        project=cfg.project, entity=cfg.entity, name=recipe.schema.name, save_dir=str(run_dir), **kwargs
    )


def is_wandb(logger: Any) -> bool:
    """Whether ``logger`` is Lightning's WandbLogger."""
    return type(logger).__name__ == "WandbLogger"


def log_results(logger: Any, step: int, metrics: dict[str, Any], files: dict[str, str]) -> None:
    """Log the final video, mesh and scalar results at ``step``, then finish the W&B run."""
    import wandb

    media: dict[str, Any] = {}
    if "video" in files:
        media["final/turntable"] = wandb.Video(files["video"], format="mp4")
    if "glb" in files:
        media["final/mesh"] = wandb.Object3D(open(files["glb"], "rb"), file_type="glb")
    scalars = {f"final/{k}": v for k, v in _flatten(metrics).items() if isinstance(v, (int, float))}
    logger.log_metrics({**media, **scalars}, step=step)
    logger.experiment.summary.update(scalars)
    logger.experiment.finish()


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}/"))
        else:
            out[key] = v
    return out
