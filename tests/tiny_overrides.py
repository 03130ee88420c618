"""Overrides that shrink the quickstart to a CPU test's size (16 px, 8 samples, one view, no video or mesh)."""

from __future__ import annotations

TINY_QUICKSTART = [
    "trainer.progress=false",
    "trainer.threads=1",
    "camera.config.batch_size=1",
    "camera.config.height=16",
    "camera.config.width=16",
    "renderer.config.num_samples=8",
    "prior.config.resolution=16",
    "output.eval_views=2",
    "output.eval_resolution=16",
    "output.video_views=0",
    "output.mesh=false",
]
