"""Short fits: every recipe runs, and a run directory holds what the README promises."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import trimesh
import yaml

from psdkit.cli.main import main
from psdkit.config.recipe import load_file, load_recipe
from psdkit.errors import RunDirError
from psdkit.run.fit import FitOptions, fit

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "trainer.max_steps=2",
    "trainer.val_every=1",
    "trainer.log_every=1",
    "trainer.progress=false",
    "trainer.threads=1",
    "camera.config.batch_size=1",
    "camera.config.height=16",
    "camera.config.width=16",
    "output.eval_views=2",
    "output.eval_resolution=16",
    "output.video_views=0",
    "output.mesh=false",
]


def tiny_overrides(recipe: Path) -> list[str]:
    """Overrides that shrink ``recipe`` to a CPU smoke test (analytic prior at 16 px)."""
    data = load_file(recipe)  # merged with its base
    extra = []
    if data.get("prior", {}).get("name", "analytic") == "analytic":
        extra.append("prior.config.resolution=16")
    if data.get("renderer", {}).get("name", "volume") == "volume":
        extra.append("renderer.config.num_samples=8")
    if data.get("guidance", {}).get("name") == "psd":  # a two-step smoke test needs no full replay pool
        extra += ["guidance.config.pool.size=2", "guidance.config.pool.steps=2"]
    return [*TINY, *extra]


def uses_real_models(recipe: Path) -> bool:
    text = recipe.read_text()
    return any(k in text for k in ("stable-diffusion", "mvdream", "base: psd_nerf.yaml"))


@pytest.mark.parametrize(
    "recipe", sorted((ROOT / "recipes").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT / "recipes"))
)
def test_every_recipe_runs_two_steps(recipe, tmp_path, request):
    overrides = tiny_overrides(recipe)
    if uses_real_models(recipe):
        from conftest import tiny_model_overrides

        data = load_file(recipe)
        representation, prior = data["representation"]["name"], data["prior"]["name"]
        overrides += tiny_model_overrides(request.getfixturevalue("tiny_weights"), representation, prior)
    result = fit(load_recipe(recipe, overrides), FitOptions(run_dir=tmp_path / "run"))
    assert result is not None and result.metrics["steps"] == 2
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_run_directory_contents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        str(ROOT / "recipes" / "quickstart.yaml"),
        "name=outs",
        *TINY,
        "output.video_views=6",
        "output.video_resolution=32",
        "output.mesh=true",
        "output.export.resolution=32",
        "output.export.level=2.0",
        "trainer.ckpt_every=1",
        "trainer.keep_checkpoints=1",
    ]
    assert main(args) == 0
    run = tmp_path / "runs" / "outs"
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert resolved["guidance"]["plugin"]["dist"] == "psdkit"
    assert resolved["trainer"]["max_steps"] == 2
    assert "psdkit fit" in (run / "command.txt").read_text()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt", "step-0000002.ckpt"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and "guidance.neg_offset" in ckpt["state_dict"]
    assert not any("prior" in k for k in ckpt["state_dict"]), "the frozen prior is not checkpointed"
    assert len(list((run / "val").glob("step-*.png"))) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("train_reward", "heldout_rewards", "fidelity", "wall_time_s", "steps_per_s", "peak_memory_mb"):
        assert key in metrics
    assert len(metrics["fidelity"]["per_view_psnr"]) == 2
    frames = imageio.mimread(run / "turntable.mp4")
    assert len(frames) == 6 and frames[0].shape == (32, 32, 3)
    mesh = trimesh.load(run / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert mesh.visual.material.baseColorTexture.size == (512, 512)  # the quickstart's texture_size
    outward = (mesh.vertex_normals * (mesh.vertices - mesh.vertices.mean(0))).sum(1)
    assert (outward > 0).mean() > 0.9, "faces must be wound outward"
    assert trimesh.load(run / "mesh.obj", force="mesh").faces.shape == mesh.faces.shape
    assert metrics["mesh"]["faces"] == len(mesh.faces) and "psnr_to_field" in metrics["mesh"]
    assert (run / "logs" / "metrics.csv").is_file()


def test_existing_run_directory_is_not_overwritten(tmp_path):
    """Without --overwrite nothing is replaced; with it, only a psdkit run directory (its marker) is."""
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", TINY)
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("finished work")
    with pytest.raises(RunDirError, match=r"already exists; name=<other> to write elsewhere"):
        fit(recipe, FitOptions(run_dir=run))
    with pytest.raises(RunDirError, match=r"is not a psdkit run directory"):
        fit(recipe, FitOptions(run_dir=run, overwrite=True))
    assert (run / "keep.txt").read_text() == "finished work"
    done = tmp_path / "done"
    fit(recipe, FitOptions(run_dir=done))
    (done / "keep.txt").write_text("left over")
    with pytest.raises(RunDirError, match=r"already exists; pass --overwrite to replace it"):
        fit(recipe, FitOptions(run_dir=done))
    fit(recipe, FitOptions(run_dir=done, overwrite=True))
    assert not (done / "keep.txt").exists() and (done / "metrics.json").is_file()


def test_seeded_runs_are_reproducible(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [*TINY, "trainer.max_steps=3"])
    a = fit(recipe, FitOptions(run_dir=tmp_path / "a"))
    b = fit(recipe, FitOptions(run_dir=tmp_path / "b"))
    sa = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.metrics["train_reward"] == b.metrics["train_reward"]
    assert np.isfinite(a.metrics["train_reward"])


def test_the_same_eval_reward_twice_keeps_both(tmp_path):
    recipe = load_recipe(
        ROOT / "recipes" / "quickstart.yaml",
        [
            *TINY,
            "prior.config.resolution=16",
            "renderer.config.num_samples=8",
            "eval_rewards=[{name: analytic-heldout}, {name: analytic-heldout, config: {tv_weight: 0.0}}]",
        ],
    )
    result = fit(recipe, FitOptions(run_dir=tmp_path / "run"))
    held = result.metrics["heldout_rewards"]
    assert set(held) == {"analytic-heldout", "analytic-heldout#2"}
    assert held["analytic-heldout"] != held["analytic-heldout#2"]


def test_fit_options_take_a_run_directory_as_text():
    assert FitOptions(run_dir="runs/x").run_dir == Path("runs/x")
