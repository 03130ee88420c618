"""``psdkit fit``: train a validated recipe and write the run directory.

Order matters for "no lost work": the recipe is validated and the run directory checked before any
weight loads; the directory is created only once the components are built.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from psdkit.config.recipe import Recipe
from psdkit.contracts.capabilities import GaussianSet
from psdkit.errors import OutOfMemory, TrainingDiverged, TrainingInterrupted
from psdkit.mesh.gaussian_ply import write_gaussians_ply
from psdkit.run import rundir
from psdkit.run.build import build_components
from psdkit.run.callbacks import AtomicCheckpoint, StepProgressBar, TrainClock, ValidationGrid
from psdkit.run.evaluate import evaluate
from psdkit.run.export import export_run_mesh, export_video
from psdkit.run.resources import check_step_memory, threads_per_process
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

    def __post_init__(self) -> None:
        if isinstance(self.run_dir, str):  # the Python API takes a path as text too
            self.run_dir = Path(self.run_dir)


@dataclasses.dataclass
class FitResult:
    """What a finished fit produced."""

    run_dir: Path
    metrics: dict[str, Any]
    files: dict[str, str]


def launched_rank() -> int:
    """Global rank this process was launched as (0 for the process a user started)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    return int(os.environ.get("NODE_RANK", 0)) * 1000 + int(os.environ.get("LOCAL_RANK", 0))


def write_run_info(run_dir: Path, recipe: Recipe, opts: FitOptions, resumed: bool) -> None:
    """Mark the directory, save the resolved recipe (with plugin versions) and add the command line."""
    if not resumed:
        rundir.remove_run_dir(run_dir)
    rundir.mark_run_dir(run_dir)
    rundir.write_atomic(run_dir / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    rundir.append_command(run_dir, opts.command or " ".join(sys.argv))


def make_logger(recipe: Recipe, run_dir: Path, resume_step: int | None = None) -> Any:
    """The experiment logger the recipe asks for; a resumed CSV log keeps its rows up to ``resume_step``."""
    cfg = recipe.schema.logger
    if cfg.name == "none":
        return False
    if cfg.name == "csv":
        from psdkit.run.csv_log import ResumableCSVLogger

        return ResumableCSVLogger(str(run_dir), keep_until=resume_step)
    from psdkit.run.wandb_logging import make_wandb_logger

    return make_wandb_logger(recipe, run_dir)


def make_trainer(
    recipe: Recipe, run_dir: Path, extra: list[L.Callback] | None = None, resume_step: int | None = None
) -> L.Trainer:
    """A Lightning Trainer configured from ``recipe.trainer`` (a :class:`TrainClock` is among its callbacks)."""
    t = recipe.schema.trainer
    val_every = min(t.val_every, t.max_steps)
    callbacks: list[L.Callback] = [
        TrainClock(),
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
        logger=make_logger(recipe, run_dir, resume_step),
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
    if isinstance(system.representation, GaussianSet):  # the 3DGS .ply real-time viewers open
        ply = write_gaussians_ply(run_dir / "gaussians.ply", system.representation.raw_gaussians())
        files["gaussians"] = str(ply)
    if out.mesh:
        files.update(export_run_mesh(system, out, run_dir, metrics))
    metrics["peak_memory_mb"] = round(peak_memory_mb(), 1)
    metrics["files"] = files
    tmp = run_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, run_dir / "metrics.json")
    return FitResult(run_dir, metrics, files)


def plan_run_dir(recipe: Recipe, opts: FitOptions) -> tuple[Path, tuple[Path, int] | None]:
    """The run directory, and the checkpoint to resume from with its step (see
    :func:`psdkit.run.rundir.plan_run_dir`)."""
    if launched_rank() != 0 and not opts.resume:  # rank 0 checked and owns the directory
        return opts.run_dir or Path(recipe.schema.output.root) / recipe.schema.name, None
    return rundir.plan_run_dir(recipe, opts.run_dir, opts.resume, opts.overwrite)


def fit(recipe: Recipe, opts: FitOptions) -> FitResult | None:
    """Train ``recipe``. Returns the result on rank 0, None on other ranks."""
    run_dir, resume = plan_run_dir(recipe, opts)
    check_step_memory(recipe)
    ckpt, resume_step = resume if resume else (None, None)
    t = recipe.schema.trainer
    torch.set_num_threads(t.threads or threads_per_process(t.devices, t.accelerator))
    L.seed_everything(recipe.schema.seed, workers=True, verbose=False)
    components = build_components(recipe)
    if launched_rank() == 0:
        write_run_info(run_dir, recipe, opts, resumed=ckpt is not None)
    system = PSDSystem(components, recipe.schema)
    trainer = make_trainer(recipe, run_dir, opts.callbacks, resume_step)
    train(trainer, system, ckpt, run_dir)
    if not trainer.is_global_zero:
        return None
    clock = next(c for c in trainer.callbacks if isinstance(c, TrainClock))  # type: ignore[attr-defined]
    result = finish(system, recipe, run_dir, clock.total(), trainer.global_step)
    from psdkit.run.wandb_logging import is_wandb, log_results

    if is_wandb(trainer.logger):
        log_results(trainer.logger, trainer.global_step, result.metrics, result.files)
    return result


MEMORY_KNOBS = (
    "camera.config.batch_size, camera.config.height/width (and milestones), renderer.config.num_samples, "
    "renderer.config.chunk, trainer.precision=bf16-mixed, or the prior's dtype"
)


def is_cpu_oom(err: BaseException) -> bool:
    """True for the RuntimeError torch's CPU allocator raises when the machine is out of memory."""
    text = str(err)
    return "DefaultCPUAllocator" in text or "can't allocate memory" in text or "not enough memory" in text


def train(trainer: L.Trainer, system: PSDSystem, ckpt: Path | None, run_dir: Path) -> None:
    """``trainer.fit`` with the failures a user can act on turned into clear errors."""
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        trainer.fit(system, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except torch.OutOfMemoryError as err:
        raise OutOfMemory(f"out of memory at step {trainer.global_step} ({err}). Reduce: {MEMORY_KNOBS}") from err
    except RuntimeError as err:
        if not is_cpu_oom(err):
            raise
        raise OutOfMemory(
            f"out of CPU memory at step {trainer.global_step} ({str(err).splitlines()[0][:200]}). "
            f"Reduce: {MEMORY_KNOBS}; the last checkpoint is {last}"
        ) from err
    except SystemExit as err:  # Lightning turns SIGTERM and Ctrl+C into SystemExit after on_exception
        raise TrainingInterrupted(
            f"stopped at step {trainer.global_step}; saved {last}; continue with: psdkit fit RECIPE --resume {run_dir}"
        ) from err
    if system.diverged:
        raise TrainingDiverged(
            f"{system.bad_steps} consecutive steps with NaN/Inf gradients (stopped at step {trainer.global_step}); "
            f"the last good state is in {last}. Lower the learning rates or the guidance scale, or set optim.grad_clip"
        )
