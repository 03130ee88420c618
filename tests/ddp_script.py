"""Run a short quickstart fit under DDP; each rank saves its negative embedding (run as a subprocess).

Usage: python ddp_script.py OUT_DIR DEVICES BATCH [overrides...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from psdkit.config.recipe import load_recipe
from psdkit.run.fit import FitOptions, fit

ROOT = Path(__file__).resolve().parents[1]


class DumpState(L.Callback):
    """Saves this rank's learnable state and camera azimuths at the end of training."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.azimuths: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        from psdkit.run.seeding import step_generator

        gen = step_generator(pl_module.schema.seed, trainer.global_rank, trainer.global_step)
        self.azimuths += pl_module.components.camera.sample(trainer.global_step, gen).azimuth.tolist()

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "azimuths": self.azimuths, "world": trainer.world_size},
                   self.out / f"rank{trainer.global_rank}.pt")


def main() -> None:
    out, devices, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    overrides = [
        "name=ddp", f"trainer.devices={devices}", "trainer.accelerator=cpu", "trainer.max_steps=4",
        "trainer.threads=1", "trainer.progress=false", "trainer.val_every=1000", "logger.name=none",
        "output.video_views=0", "output.mesh=false", "output.eval_views=2", "output.eval_resolution=16",
        f"camera.config.batch_size={batch}", "camera.config.height=16", "camera.config.width=16",
        "prior.config.resolution=16", "renderer.config.num_samples=8", "renderer.config.occupancy=false",
        "guidance.config.reward_t_max=1.0", *sys.argv[4:],
    ]
    if devices > 1:
        overrides.append("trainer.strategy=ddp")
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", overrides)
    fit(recipe, FitOptions(run_dir=out / "run", overwrite=True, callbacks=[DumpState(out)]))


if __name__ == "__main__":
    main()
