"""NaN/Inf steps are skipped and counted; a diverging run stops with a usable checkpoint; signals save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from psdkit.config.recipe import load_recipe
from psdkit.errors import TrainingDiverged
from psdkit.run.fit import FitOptions, fit

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "trainer.val_every=100",
    "trainer.progress=false",
    "trainer.threads=1",
    "trainer.log_every=1",
    "camera.config.batch_size=1",
    "camera.config.height=16",
    "camera.config.width=16",
    "renderer.config.num_samples=8",
    "output.eval_views=2",
    "output.eval_resolution=16",
    "output.video_views=0",
    "output.mesh=false",
    "prior.config.resolution=16",
]


def poison(monkeypatch, bad_steps: set[int]) -> None:
    """Make the loss NaN at ``bad_steps`` (through the renderer's regularizers, called once per training step)."""
    from psdkit_plugins.renderers.volume import VolumeRenderer

    original, calls = VolumeRenderer.regularizers, [0]

    def regularizers(self, out):
        terms = original(self, out)
        if calls[0] in bad_steps:
            terms["poison"] = out.rgb.sum() * float("nan")
        calls[0] += 1
        return terms

    monkeypatch.setattr(VolumeRenderer, "regularizers", regularizers)


def test_nonfinite_steps_are_skipped(tmp_path, monkeypatch):
    poison(monkeypatch, {1, 2})
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [*TINY, "trainer.max_steps=5"])
    result = fit(recipe, FitOptions(run_dir=tmp_path / "run"))
    assert result.metrics["steps"] == 5
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    log = (tmp_path / "run" / "logs" / "metrics.csv").read_text()
    assert "train/skipped_steps" in log


def test_diverging_run_stops_with_last_good_state(tmp_path, monkeypatch):
    poison(monkeypatch, set(range(2, 100)))
    recipe = load_recipe(
        ROOT / "recipes" / "quickstart.yaml", [*TINY, "trainer.max_steps=50", "trainer.max_nonfinite_steps=3"]
    )
    with pytest.raises(TrainingDiverged, match=r"3 consecutive steps with NaN/Inf gradients .* last good state"):
        fit(recipe, FitOptions(run_dir=tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 5  # 2 good steps + 3 skipped ones
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint(tmp_path, sig):
    """SIGTERM / Ctrl+C during training: a checkpoint is written, then the process exits."""
    code = (
        "import sys, os, signal; sys.argv = ['psdkit', 'fit', sys.argv[1], *sys.argv[2:]]\n"
        # a terminal's Ctrl+C: background jobs (CI) start with SIGINT ignored, so restore Python's handler
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import lightning as L\n"
        "from psdkit.system import PSDSystem\n"
        "orig = PSDSystem.training_step\n"
        "def step(self, batch, idx):\n"
        "    if self.global_step == 3: os.kill(os.getpid(), int(os.environ['SIG']))\n"
        "    return orig(self, batch, idx)\n"
        "PSDSystem.training_step = step\n"
        "from psdkit.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "SIG": str(int(sig))}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(ROOT / "recipes" / "quickstart.yaml"),
            *TINY,
            "trainer.max_steps=50",
            "name=sig",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    ckpt = tmp_path / "runs" / "sig" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), proc.stderr[-2000:]
    assert torch.load(ckpt, weights_only=True)["global_step"] >= 3
    assert "--resume" in proc.stderr, proc.stderr[-2000:]


def test_out_of_memory_names_the_knobs(tmp_path, monkeypatch):
    import lightning as L

    from psdkit.errors import OutOfMemory

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(L.Trainer, "fit", oom)
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [*TINY, "trainer.max_steps=2"])
    with pytest.raises(
        OutOfMemory,
        match=r"out of memory at step 0 .*camera\.config\.batch_size.*"
        r"renderer\.config\.num_samples.*trainer\.precision",
    ):
        fit(recipe, FitOptions(run_dir=tmp_path / "run"))


def test_resume_auto(tmp_path, monkeypatch):
    """--resume auto: a fresh run when there is nothing to resume, else continue the recipe's run."""
    from psdkit.cli.main import main

    monkeypatch.chdir(tmp_path)
    args = ["fit", str(ROOT / "recipes" / "quickstart.yaml"), "name=auto", *TINY, "logger.name=none"]
    assert main([*args, "trainer.max_steps=2", "--resume", "auto"]) == 0
    ckpt = tmp_path / "runs" / "auto" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2
    assert main([*args, "trainer.max_steps=4", "--resume", "auto"]) == 0
    assert torch.load(ckpt, weights_only=True)["global_step"] == 4
    assert main([*args, "trainer.max_steps=4"]) == 2, "without --resume or --overwrite the run is protected"
