"""Lightning callbacks of a run: atomic checkpoints and validation grids."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from psdkit.system import PSDSystem, grid_image


def to_uint8(image: torch.Tensor) -> "object":
    """HWC uint8 numpy array from a CHW float image in [0, 1]."""
    return (image.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().cpu().numpy()


class AtomicCheckpoint(L.Callback):
    """Writes ``last.ckpt`` every ``last_every`` steps and ``step-XXXXXXX.ckpt`` every ``every`` steps.

    Each file is written to a temporary name and renamed, so a killed run never leaves a partial
    checkpoint under a real name. Only the newest ``keep`` step-numbered checkpoints are kept.
    """

    def __init__(self, ckpt_dir: Path, last_every: int, every: int = 0, keep: int = 3) -> None:
        self.dir, self.last_every, self.every, self.keep = Path(ckpt_dir), last_every, every, keep

    def save(self, trainer: L.Trainer, name: str) -> Path:
        """Atomically write checkpoint ``name``; returns its path."""
        path = self.dir / name
        tmp = self.dir / f".{name}.tmp"
        if trainer.logger is not None:  # logged rows reach the disk no later than the state they belong to
            trainer.logger.save()
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, path)
        return path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        step = trainer.global_step
        if self.every and step % self.every == 0:
            self.save(trainer, f"step-{step:07d}.ckpt")
            if trainer.is_global_zero:
                for old in sorted(self.dir.glob("step-*.ckpt"))[: -self.keep]:
                    old.unlink()
        if step % self.last_every == 0:
            self.save(trainer, "last.ckpt")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, "last.ckpt")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """On Ctrl+C or SIGTERM, save ``last.ckpt`` before exiting (other errors keep the last periodic one)."""
        if isinstance(exception, (KeyboardInterrupt, SystemExit)):
            self.save(trainer, "last.ckpt")


class TrainClock(L.Callback):
    """Training time over every segment of a run: saved in each checkpoint, restored on resume."""

    def __init__(self) -> None:
        self.before = 0.0
        """Seconds trained by earlier segments (from the checkpoint)."""
        self.started: float | None = None
        self.stopped: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started, self.stopped = time.perf_counter(), None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopped = time.perf_counter()

    def total(self) -> float:
        """Seconds trained so far, this segment included."""
        if self.started is None:
            return self.before
        return self.before + ((self.stopped or time.perf_counter()) - self.started)

    def state_dict(self) -> dict[str, float]:
        """Saved in every checkpoint: the training time so far."""
        return {"train_time_s": self.total()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        """Restored on resume: the earlier segments' training time."""
        self.before = float(state_dict.get("train_time_s", 0.0))


class ValidationGrid(L.Callback):
    """Saves a grid of ``views`` orbit renders every ``every`` steps to ``<run>/val/`` (rank 0)."""

    def __init__(self, out_dir: Path, every: int, views: int, size: int) -> None:
        self.dir, self.every, self.views, self.size = Path(out_dir), every, views, size

    def save(self, system: PSDSystem, step: int) -> torch.Tensor:
        """Render and write ``step-XXXXXXX.png``; returns the grid [3, H, W]."""
        grid = grid_image(system.render_views(self.views, self.size), ncol=self.views)
        self.dir.mkdir(parents=True, exist_ok=True)
        imageio.imwrite(self.dir / f"step-{step:07d}.png", to_uint8(grid))
        return grid

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        step = trainer.global_step
        if step % self.every != 0 or not trainer.is_global_zero:
            return
        assert isinstance(pl_module, PSDSystem)
        grid = self.save(pl_module, step)
        logger = trainer.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image(key="val/renders", images=[to_uint8(grid)], step=step)


class StepProgressBar(TQDMProgressBar):
    """A progress bar over global steps (not epochs): ``step/max_steps``, it/s and ETA, right after a resume too."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps)
        bar.initial = trainer.global_step
        bar.n = trainer.global_step
        bar.set_description("psdkit")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        """Advance every step; read the metrics (a device-to-host copy) every ``refresh_rate`` steps."""
        bar = self.train_progress_bar
        bar.n = trainer.global_step
        if trainer.global_step % self.refresh_rate == 0 or trainer.global_step >= trainer.max_steps:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.refresh()
