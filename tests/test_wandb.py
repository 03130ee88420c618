"""W&B in offline mode: media at the trainer's global step, the recipe as config, no API key on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

wandb = pytest.importorskip("wandb", reason="wandb is in psdkit[dev]; install it to test W&B logging")

from psdkit.config.recipe import load_recipe  # noqa: E402
from psdkit.run.fit import FitOptions, fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECRET = "psdkittestsecret" + "0123456789abcdef01234567"


def test_offline_run(tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    calls: list[tuple[dict, object]] = []
    real_log = wandb.sdk.wandb_run.Run.log

    def recording_log(self, data, step=None, commit=None, *args, **kwargs):
        calls.append((dict(data), step))
        return real_log(self, data, step, commit, *args, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", recording_log)
    recipe = load_recipe(
        ROOT / "recipes" / "quickstart.yaml",
        [
            "logger.name=wandb",
            "logger.project=psdkit-test",
            "trainer.max_steps=4",
            "trainer.val_every=2",
            "trainer.log_every=1",
            "trainer.progress=false",
            "camera.config.batch_size=1",
            "camera.config.height=16",
            "camera.config.width=16",
            "prior.config.resolution=16",
            "renderer.config.num_samples=8",
            "output.eval_views=2",
            "output.eval_resolution=16",
            "output.video_views=4",
            "output.video_resolution=32",
            "output.export.resolution=32",
            "output.export.level=2.0",
        ],
    )
    run = tmp_path / "run"
    fit(recipe, FitOptions(run_dir=run))

    assert calls, "nothing was logged"
    assert all(step is None for _, step in calls), "psdkit must never pass wandb's own step (it breaks the slider)"
    media = [
        (d, d["trainer/global_step"]) for d, _ in calls if any(k.startswith(("val/", "final/m", "final/t")) for k in d)
    ]
    val_steps = sorted(s for d, s in media if "val/renders" in d)
    assert val_steps == [2, 4]
    final = [(d, s) for d, s in media if "final/turntable" in d]
    assert len(final) == 1 and final[0][1] == 4 and "final/mesh" in final[0][0]
    scalar_steps = [d["trainer/global_step"] for d, _ in calls if "train/loss" in d]
    assert scalar_steps == sorted(scalar_steps) and len(scalar_steps) >= 3

    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    assert len(list((files / "media" / "images").rglob("*.png"))) == 2
    assert list((files / "media" / "videos").rglob("*.mp4"))
    assert list((files / "media" / "object3D").rglob("*.glb"))
    record = next(runs[0].glob("run-*.wandb")).read_bytes()  # offline runs keep the config in the record file
    for key in (b"analytic-heldout", b"guidance_scale", b"anchor_decay", b"hashgrid-nerf"):
        assert key in record, f"the resolved recipe is the run config: {key!r} missing"

    for path in [*run.rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"API key written to {path}"
