"""``psdkit fit``: train a validated recipe and write the run directory.

Order matters for "no lost work": the recipe is validated and the run directory checked before any
weight loads; the directory is created only once the components are built.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from psdkit.config.recipe import Recipe
from psdkit.errors import OutOfMemory, RunDirError, TrainingDiverged, TrainingInterrupted
from psdkit.run.build import build_components
from psdkit.run.callbacks import AtomicCheckpoint, StepProgressBar, ValidationGrid
from psdkit.run.evaluate import evaluate
from psdkit.run.export import export_mesh, export_video
from psdkit.system import PSDSystem


@dataclasses.dataclass
class FitOptions:
    """Command-line options of ``psdkit fit`` that are not part of the recipe."""

    overwrite: bool = False
    """Replace an existing run directory."""
    resume: str | None = None
    """Run directory (or ``auto``) to resume from its last checkpoint."""
    run_dir: Path | None = None
    """Explicit run directory (default ``<output.root>/<name>``)."""
    command: str = ""
    """The command line, recorded in the run directory."""
    callbacks: list[L.Callback] = dataclasses.field(default_factory=list)
    """Extra Lightning callbacks (tests, integrations)."""


@dataclasses.dataclass
class FitResult:
    """What a finished fit produced."""

    run_dir: Path
    metrics: dict[str, Any]
    files: dict[str, str]


def plan_run_dir(recipe: Recipe, opts: FitOptions) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint to resume from; refuses to overwrite silently."""
    run_dir = opts.run_dir or Path(recipe.schema.output.root) / recipe.schema.name
    if opts.resume:
        src = run_dir if opts.resume == "auto" else Path(opts.resume)
        ckpt = usable_checkpoint(src / "checkpoints")
        if ckpt is None:
            if opts.resume == "auto":
                return _fresh(run_dir, opts), None
            raise RunDirError(f"{src}: nothing to resume (no readable checkpoint in {src / 'checkpoints'})")
        return src, ckpt
    return _fresh(run_dir, opts), None


def usable_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint that loads (``last.ckpt``, then numbered ones); warns about broken ones."""
    candidates = [ckpt_dir / "last.ckpt", *sorted(ckpt_dir.glob("step-*.ckpt"), reverse=True)]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped the same way
            warnings.warn(
                f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); trying an older one", stacklevel=2
            )
            continue
        return path
    return None


def launched_rank() -> int:
    """Global rank this process was launched as (0 for the process a user started)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    return int(os.environ.get("NODE_RANK", 0)) * 1000 + int(os.environ.get("LOCAL_RANK", 0))


def _fresh(run_dir: Path, opts: FitOptions) -> Path:
    if launched_rank() == 0 and run_dir.exists() and any(run_dir.iterdir()) and not opts.overwrite:
        raise RunDirError(
            f"{run_dir} already exists; pass --overwrite to replace it, --resume {run_dir} to continue it, "
            f"or name=<other> to write elsewhere"
        )
    return run_dir


def write_run_info(run_dir: Path, recipe: Recipe, opts: FitOptions) -> None:
    """The resolved recipe (with plugin versions) and the command line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "recipe.yaml", "w") as f:
        yaml.safe_dump(recipe.to_dict(), f, sort_keys=False)
    (run_dir / "command.txt").write_text((opts.command or " ".join(sys.argv)) + "\n")


def make_logger(recipe: Recipe, run_dir: Path) -> Any:
    """The experiment logger the recipe asks for."""
    cfg = recipe.schema.logger
    if cfg.name == "none":
        return False
    if cfg.name == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="logs", version="")
    from psdkit.run.wandb_logging import make_wandb_logger

    return make_wandb_logger(recipe, run_dir)


def make_trainer(recipe: Recipe, run_dir: Path, extra: list[L.Callback] | None = None) -> L.Trainer:
    """A Lightning Trainer configured from ``recipe.trainer``."""
    t = recipe.schema.trainer
    val_every = min(t.val_every, t.max_steps)
    callbacks: list[L.Callback] = [
        AtomicCheckpoint(run_dir / "checkpoints", val_every, t.ckpt_every, t.keep_checkpoints),
        ValidationGrid(run_dir / "val", val_every, t.val_views, recipe.schema.output.eval_resolution),
        *(extra or []),
    ]
    if t.progress:
        callbacks.append(StepProgressBar(refresh_rate=t.log_every))
    strategy: Any = t.strategy
    if t.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo" if t.accelerator == "cpu" else None)
    return L.Trainer(
        max_steps=t.max_steps,
        max_epochs=-1,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        logger=make_logger(recipe, run_dir),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=t.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=t.log_every,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,
    )


def peak_memory_mb() -> float:
    """Peak resident memory of this process (CPU) or peak allocated GPU memory, MiB."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def finish(system: PSDSystem, recipe: Recipe, run_dir: Path, wall: float, steps: int) -> FitResult:
    """Evaluate and export on rank 0; write metrics.json."""
    out = recipe.schema.output
    system.eval()
    metrics: dict[str, Any] = {
        "name": recipe.schema.name,
        "prompt": recipe.schema.prompt.text,
        "seed": recipe.schema.seed,
        "guidance": recipe.schema.guidance.name,
        "steps": steps,
        "wall_time_s": round(wall, 2),
        "steps_per_s": round(steps / max(wall, 1e-9), 3),
    }
    metrics.update(evaluate(system, out.eval_views, out.eval_resolution))
    files: dict[str, str] = {}
    if out.video_views > 0:
        files["video"] = str(
            export_video(system, run_dir / "turntable.mp4", out.video_views, out.video_resolution, out.video_fps)
        )
    if out.mesh:
        paths, level = export_mesh(
            system.representation,
            run_dir,
            out.mesh_resolution,
            out.mesh_threshold,
            out.mesh_formats,
            out.mesh_keep_largest,
        )
        files.update({p.suffix[1:]: str(p) for p in paths})
        metrics["mesh_threshold"] = round(level, 4)
        if not paths:
            metrics["mesh_warning"] = f"no surface at density {level:.4g}; set output.mesh_threshold"
    metrics["peak_memory_mb"] = round(peak_memory_mb(), 1)
    metrics["files"] = files
    tmp = run_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, run_dir / "metrics.json")
    return FitResult(run_dir, metrics, files)


def fit(recipe: Recipe, opts: FitOptions) -> FitResult | None:
    """Train ``recipe``. Returns the result on rank 0, None on other ranks."""
    run_dir, ckpt = plan_run_dir(recipe, opts)
    t = recipe.schema.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    L.seed_everything(recipe.schema.seed, workers=True, verbose=False)
    components = build_components(recipe)
    if launched_rank() == 0:
        if ckpt is None and opts.overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        write_run_info(run_dir, recipe, opts)
    system = PSDSystem(components, recipe.schema)
    trainer = make_trainer(recipe, run_dir, opts.callbacks)
    start = time.perf_counter()
    train(trainer, system, ckpt, run_dir)
    wall = time.perf_counter() - start
    if not trainer.is_global_zero:
        return None
    result = finish(system, recipe, run_dir, wall, trainer.global_step)
    from psdkit.run.wandb_logging import is_wandb, log_results

    if is_wandb(trainer.logger):
        log_results(trainer.logger, trainer.global_step, result.metrics, result.files)
    return result


MEMORY_KNOBS = (
    "camera.config.batch_size, camera.config.height/width (and milestones), renderer.config.num_samples, "
    "renderer.config.chunk, trainer.precision=bf16-mixed, or the prior's dtype"
)


def train(trainer: L.Trainer, system: PSDSystem, ckpt: Path | None, run_dir: Path) -> None:
    """``trainer.fit`` with the failures a user can act on turned into clear errors."""
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        trainer.fit(system, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except torch.OutOfMemoryError as err:
        raise OutOfMemory(f"out of memory at step {trainer.global_step} ({err}). Reduce: {MEMORY_KNOBS}") from err
    except SystemExit as err:  # Lightning turns SIGTERM and Ctrl+C into SystemExit after on_exception
        raise TrainingInterrupted(
            f"stopped at step {trainer.global_step}; saved {last}; continue with: psdkit fit RECIPE --resume {run_dir}"
        ) from err
    if system.diverged:
        raise TrainingDiverged(
            f"{system.bad_steps} consecutive steps with NaN/Inf gradients (stopped at step {trainer.global_step}); "
            f"the last good state is in {last}. Lower the learning rates or the guidance scale, or set optim.grad_clip"
        )
