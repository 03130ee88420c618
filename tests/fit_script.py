"""A short quickstart fit in its own process (DDP and kill tests run it as a subprocess).

Usage: python fit_script.py OUT_DIR DEVICES BATCH [--kill-at STEP] [--resume] [--recipe FILE] [overrides...]
Each rank saves its final state to OUT_DIR/rank<r>.pt; ``--kill-at`` sends SIGKILL to itself when the
global step reaches STEP (after that step's optimizer update).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import lightning as L
import torch

from psdkit.config.recipe import load_recipe
from psdkit.ops.seeding import step_generator
from psdkit.run.fit import FitOptions, fit

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "trainer.accelerator=cpu",
    "trainer.threads=1",
    "trainer.progress=false",
    "logger.name=none",
    "output.video_views=0",
    "output.mesh=false",
    "output.eval_views=2",
    "output.eval_resolution=16",
    "camera.config.height=16",
    "camera.config.width=16",
    "prior.config.resolution=16",
    "renderer.config.num_samples=8",
    "renderer.config.occupancy_warmup=2",
    "renderer.config.occupancy_every=2",
]


class DumpState(L.Callback):
    """Records camera azimuths per step; saves this rank's state at the end; optionally SIGKILLs."""

    def __init__(self, out: Path, kill_at: int | None) -> None:
        self.out, self.kill_at = out, kill_at
        self.azimuths: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        gen = step_generator(pl_module.schema.seed, 0, trainer.global_step, "camera")
        world, rank = trainer.world_size, trainer.global_rank
        cams = pl_module.components.camera.sample(trainer.global_step, gen, world)
        self.azimuths += cams.split(len(cams) // world)[rank].azimuth.tolist()

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if self.kill_at is not None and trainer.global_step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(
            {"state": state, "azimuths": self.azimuths, "world": trainer.world_size},
            self.out / f"rank{trainer.global_rank}.pt",
        )


def main() -> None:
    out, devices, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rest = sys.argv[4:]
    kill_at = None
    if "--kill-at" in rest:
        i = rest.index("--kill-at")
        kill_at = int(rest[i + 1])
        rest = rest[:i] + rest[i + 2 :]
    recipe_file = "quickstart.yaml"
    if "--recipe" in rest:
        i = rest.index("--recipe")
        recipe_file = rest[i + 1]
        rest = rest[:i] + rest[i + 2 :]
    resume = "--resume" in rest
    rest = [r for r in rest if r != "--resume"]
    tiny = TINY if recipe_file == "quickstart.yaml" else [o for o in TINY if not o.startswith("renderer.")]
    overrides = [
        "name=run",
        f"trainer.devices={devices}",
        f"camera.config.batch_size={batch}",
        *tiny,
        *rest,
    ]
    if devices > 1:
        overrides.append("trainer.strategy=ddp")
    recipe = load_recipe(ROOT / "recipes" / recipe_file, overrides)
    run_dir = out / "run"
    opts = FitOptions(
        run_dir=run_dir,
        resume=str(run_dir) if resume else None,
        overwrite=not resume,
        callbacks=[DumpState(out, kill_at)],
    )
    fit(recipe, opts)


if __name__ == "__main__":
    main()
