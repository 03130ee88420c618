"""``psdkit bench alignment`` runs recipes x seeds and reports a table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from psdkit.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_alignment_bench_tiny(tmp_path, capsys):
    out = tmp_path / "a.json"
    code = main(
        [
            "bench",
            "alignment",
            "--recipes",
            str(ROOT / "recipes" / "quickstart.yaml"),
            str(ROOT / "recipes" / "quickstart_sds.yaml"),
            "--seeds",
            "2",
            "--json",
            str(out),
            "--jobs",
            "2",
            "--plot",
            str(tmp_path / "p.png"),
            "trainer.max_steps=2",
            "trainer.threads=1",
            "camera.config.batch_size=1",
            "camera.config.height=16",
            "camera.config.width=16",
            "prior.config.resolution=16",
            "renderer.config.num_samples=8",
            "output.eval_views=2",
            "output.eval_resolution=16",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "| quickstart | psd | 2 |" in table and "| quickstart_sds | sds | 2 |" in table
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 4 and {r["seed"] for r in data["runs"]} == {0, 1}
    assert all(r["train_reward"] is not None and r["psnr"] is not None for r in data["runs"])
    assert data["summary"][0]["seeds"] == 2
    from PIL import Image

    assert Image.open(tmp_path / "p.png").size == (900, 600)
