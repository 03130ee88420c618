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
    assert "| quickstart | psd | a sphere | analytic | 0.1580 (1.00) | red-sphere " in table
    assert "| quickstart_sds | sds | a sphere | analytic | 0.1580 (1.00) | red-sphere " in table
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 4 and {r["seed"] for r in data["runs"]} == {0, 1}
    assert all(r["train_reward"] is not None and r["psnr"] is not None for r in data["runs"])
    assert data["summary"][0]["seeds"] == 2
    from PIL import Image

    assert Image.open(tmp_path / "p.png").size == (900, 600)


def test_alignment_over_prompts_and_rewards_measures_margins(tmp_path, capsys):
    """Prompt and training-reward axes: SDS runs once per prompt, PSD per prompt x reward; every (prompt, reward)
    pair gets its margin on the exact renders and the table how often the preferred answer came out."""
    from psdkit.bench.alignment import Case, cases
    from psdkit.bench.margins import reward_margin
    from psdkit.config.recipe import load_recipe

    recipes = [ROOT / "recipes" / "quickstart.yaml", ROOT / "recipes" / "quickstart_sds.yaml"]
    grid = cases(recipes, ["a sphere", "a cube"], ["analytic", "colorfulness"])
    assert len(grid) == 6 and Case(recipes[1], "a cube", None) in grid
    sphere = reward_margin(load_recipe(recipes[0]))
    assert sphere["preferred"] == "red-sphere" and sphere["answers"] == ["red-sphere", "blue-sphere"]
    assert sphere["relative_margin"] == 1.0, "the warm-colour reward's extremes are the two spheres"
    cube = reward_margin(load_recipe(recipes[0], ["prompt.text=a cube"]))
    assert cube["preferred"] == "green-cube" and 0 < cube["relative_margin"] < sphere["relative_margin"]
    out = tmp_path / "a.json"
    argv = ["bench", "alignment", "--recipes", *map(str, recipes), "--seeds", "1", "--json", str(out)]
    argv += [
        "--prompts",
        "a sphere",
        "a cube",
        "--rewards",
        "analytic",
        "colorfulness",
        "--plot",
        str(tmp_path / "m.png"),
    ]
    argv += ["trainer.max_steps=2", "trainer.threads=1", "camera.config.batch_size=1", "camera.config.height=16"]
    argv += ["camera.config.width=16", "prior.config.resolution=16", "renderer.config.num_samples=8"]
    assert main([*argv, "output.eval_views=2", "output.eval_resolution=16"]) == 0
    table = capsys.readouterr().out
    assert "| quickstart-a_cube-colorfulness | psd | a cube | colorfulness |" in table
    assert "| quickstart_sds-a_sphere | sds | a sphere | analytic | 0.1580 (1.00) | red-sphere " in table
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 6 and set(data["margins"]) == {
        f"{p}|{r}" for p in ("a sphere", "a cube") for r in ("analytic", "colorfulness")
    }
    assert (tmp_path / "m.png").is_file()


def test_the_recorded_commit_is_psdkits_not_the_working_directorys(tmp_path, monkeypatch):
    """Run from a folder outside the checkout (as a user's project would be), the JSON still names the commit of
    the psdkit source that ran."""
    import subprocess

    from psdkit.bench.alignment import git_commit

    monkeypatch.chdir(tmp_path)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit() in (head, f"{head}+dirty")
