"""The README's quickstart produces a real result: the preferred sphere, video and mesh (about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import trimesh

from psdkit.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", str(ROOT / "recipes" / "quickstart.yaml")]) == 0
    run = tmp_path / "runs" / "quickstart"
    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == 300
    fid = m["fidelity"]
    assert fid["object"] == "red-sphere", fid  # the prompt's preferred answer (see docs/analytic_world.md)
    assert fid["matches_prompt"]
    assert fid["psnr"] > 24.0, fid
    assert min(fid["per_view_psnr"]) > 22.0, fid
    assert m["train_reward"] > 0 and m["heldout_rewards"]["analytic-heldout"] > 0
    frames = imageio.mimread(run / "turntable.mp4")
    assert len(frames) == 48
    mesh = trimesh.load(run / "mesh.glb", force="mesh")
    extent = mesh.bounding_box.extents
    assert 0.8 < extent.min() and extent.max() < 1.3, f"a sphere of radius 0.5, got extents {extent}"
    colors = mesh.visual.vertex_colors[:, :3].astype(float).mean(0)
    assert colors[0] > 2 * colors[2], f"the mesh is red, got mean colour {colors}"
