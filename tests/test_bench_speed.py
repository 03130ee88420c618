"""``psdkit bench speed``: the real training step timed per component, with random weights (issue 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from psdkit.bench.speed import bench_speed, format_report
from psdkit.cli.main import main
from psdkit.config.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "trainer.threads=1",
    "camera.config.batch_size=2",
    "camera.config.height=16",
    "camera.config.width=16",
    "renderer.config.num_samples=8",
    "representation.config.levels=4",
    "representation.config.log2_table_size=10",
]


E_N_UPDATE_PARTS = {
    # the reward loss back-propagates through the decode and the reward
    "reward": ("prior, with grad (e_n update) (forward)", "reward (forward)", "reward (backward)", "decode (forward)"),
    # the replay pool scored its samples once, before training: an update is the prior's implicit rewards alone
    "pool": ("prior, with grad (e_n update) (forward)", "prior, with grad (e_n update) (backward)", "prior (forward)"),
}


@pytest.mark.parametrize("neg_loss", ["reward", "pool"])
def test_speed_report_on_the_quickstart(capsys, neg_loss):
    overrides = [*SMALL, "prior.config.resolution=16", f"guidance.config.neg_loss={neg_loss}"]
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", overrides)
    r = bench_speed(recipe, steps=3, warmup=1)
    assert r["ms_per_step"] > 0 and r["steps_per_s"] == pytest.approx(1000 / r["ms_per_step"])
    assert r["projected_s"] >= r["ms_per_step"] * 300 / 1000 and r["projected_minutes"] == pytest.approx(
        r["projected_s"] / 60
    )
    assert r["checkpoint_s"] > 0 and r["validation_grid_s"] > 0
    assert r["checkpoint_bytes"] > r["strategy_state_bytes"] > 0
    pool = recipe.components["guidance"].config.pool
    one_label = pool.size * pool.copies * 3 * 16 * 16 * 4  # one label's samples, float32 at 16 px
    # the checkpoint keeps the pool; the reward variant draws and keeps none
    assert (r["strategy_state_bytes"] >= one_label) == (neg_loss == "pool"), r["strategy_state_bytes"]
    parts = r["breakdown_ms"]
    for part in ("render (forward)", "render (backward)", "optimizer step", *E_N_UPDATE_PARTS[neg_loss]):
        assert parts[part] > 0, part
    # the strategy's one-time work (the pool's draw) is timed apart and added to the projection
    assert r["prepare_s"] > 0
    assert r["projected_s"] >= r["prepare_s"] + r["ms_per_step"] * r["max_steps"] / 1000
    if neg_loss == "pool":
        for part in ("reward (forward)", "reward (backward)", "decode (forward)"):
            assert parts.get(part, 0.0) == 0.0, f"{part}: the pool's samples are scored before training, not per step"
    # the parts account for the instrumented step (the remainder is reported as "other", never negative)
    assert sum(parts.values()) == pytest.approx(r["instrumented_ms_per_step"], rel=0.02)
    assert r["ms_per_step_with_neg_update"] > 0 and r["ms_per_step_without_neg_update"] > 0
    assert abs(r["neg_update_ms"]) < r["ms_per_step_with_neg_update"]
    assert len(r["warmup_ms"]) == 1 and r["peak_memory_mb"] > 0
    text = format_report(r)
    assert "| render (forward) |" in text and "projected training time for 300 steps" in text


def test_speed_with_random_tiny_weights_through_the_cli(tmp_path, monkeypatch, capsys):
    pytest.importorskip("diffusers")
    import psdkit.bench.random_weights as rw

    monkeypatch.setattr(rw, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(rw.random_weight_overrides, "__defaults__", (tmp_path / "cache",))
    out = tmp_path / "speed.json"
    code = main(
        [
            "bench",
            "speed",
            str(ROOT / "recipes" / "psd_nerf.yaml"),
            "--random-weights",
            "tiny",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--json",
            str(out),
            *SMALL,
            "prior.config.resolution=64",
        ]
    )
    assert code == 0
    r = json.loads(out.read_text())
    assert r["prior"] == "stable-diffusion" and r["reward"] == "imagereward" and r["max_steps"] == 10000
    parts = r["breakdown_ms"]  # the replay pool's update: the UNet with gradient to e_n, no reward per step
    assert parts["prior, with grad (e_n update) (backward)"] > 0 and parts["encode (backward)"] > 0
    assert (tmp_path / "cache" / "prior-stable-diffusion-tiny" / "model_index.json").exists()
    assert "psdkit bench speed" in r["command"]


def test_speed_bench_longer_than_the_recipe_is_a_recipe_error():
    from psdkit.errors import RecipeError

    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [*SMALL, "trainer.max_steps=10"])
    with pytest.raises(RecipeError, match=r"trainer\.max_steps: the bench runs 13 steps"):
        bench_speed(recipe, steps=3, warmup=1)


def test_random_weights_refuse_unsupported_plugins(tmp_path):
    from psdkit.bench.random_weights import random_weight_overrides
    from psdkit.errors import RecipeError

    recipe = load_recipe(
        ROOT / "recipes" / "psd_nerf.yaml",
        ["reward.name=pickscore", "reward.config={}", "prior.name=analytic", "prior.config={}"],
    )
    with pytest.raises(RecipeError, match=r"reward\.name: no full random weights.*\(found 'pickscore'\)"):
        random_weight_overrides(recipe, "full", tmp_path)  # pickscore offers tiny ones only


def test_full_size_architectures_have_the_published_sizes():
    """Built on the meta device (no memory): the parameter counts of SD 2.1-base's UNet and VAE."""
    pytest.importorskip("diffusers")
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from psdkit_plugins.priors.checkpoints import SD21_UNET, SD_VAE

    with torch.device("meta"):
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **SD21_UNET)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            **SD_VAE,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
        )
    assert sum(p.numel() for p in unet.parameters()) == 865_910_724
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863


def test_hashgrid_bench_checks_and_times_every_cpu_implementation(tmp_path, capsys):
    out = tmp_path / "h.json"
    assert (
        main(
            [
                "bench",
                "hashgrid",
                "--points",
                "2000",
                "--levels",
                "4",
                "--log2-table",
                "10",
                "--repeats",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert set(r["results"]) == {"loop", "loop-fast", "torch"}
    for row in r["results"].values():
        assert row["ms"] > 0 and row["max_abs_diff_vs_torch"] < 1e-5
    assert r["results"]["loop"]["speedup_vs_loop"] == 1.0
    assert "| torch |" in capsys.readouterr().out


def test_prepared_gpu_script_overrides_validate():
    """Every override in scripts/gpu_bench.sh is valid for the recipes it runs: a typo must not cost GPU time."""
    import re
    import subprocess

    script = ROOT / "scripts" / "gpu_bench.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    overrides = sorted(set(re.findall(r"\b[a-z_]+\.config\.[a-z_]+=[\w.-]+", script.read_text())))
    assert len(overrides) >= 10
    for name in ("psd_nerf.yaml", "psd_nerf_fast.yaml"):
        for override in overrides:
            load_recipe(ROOT / "recipes" / name, [override])
