"""Sweeps: every value validated against the recipe schema first; the local backend runs trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_overrides import TINY_QUICKSTART

from psdkit.cli.main import main
from psdkit.errors import RecipeError
from psdkit.sweep import expand, load_sweep, metric_value, wandb_config

ROOT = Path(__file__).resolve().parents[1]
TINY = [*TINY_QUICKSTART, "trainer.max_steps=2", "logger.name=none"]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(f"recipe: {ROOT / 'recipes' / 'quickstart.yaml'}\n{text}")
    return p


def test_shipped_sweeps_validate():
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        spec, recipe = load_sweep(path)
        assert recipe.is_file() and spec.parameters


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            "metric: {name: x}\nparameters:\n  guidance.config.negative.lr: {values: [0.05, -1]}\n",
            r"parameters\.guidance\.config\.negative\.lr\[1\]: .*guidance\.config\.negative\.lr: out of range, "
            r"must be >= 0\.0 \(found -1\.0\)",
        ),
        (
            "metric: {name: x}\nparameters:\n  guidance.config.nope: {values: [1]}\n",
            r"parameters\.guidance\.config\.nope\[0\]: .*unknown key",
        ),
        (
            "metric: {name: x}\nparameters:\n  reward.name: {values: [no-such-reward]}\n",
            r"parameters\.reward\.name\[0\]: .*no reward plugin with this name",
        ),
        ("metric: {name: x}\nparameters:\n  seed: {min: 3}\n", r"parameters\.seed: a range needs both min and max"),
        ("metric: {name: x}\nmethod: annealing\nparameters: {}\n", r"method: not an allowed value"),
    ],
)
def test_bad_sweeps_name_the_parameter(tmp_path, body, match):
    with pytest.raises(RecipeError, match=match):
        load_sweep(write(tmp_path, body))


def test_expansion():
    spec, _ = load_sweep(ROOT / "sweeps" / "psd_scale_lr_seed.yaml")
    grid = expand(spec, "grid")
    assert len(grid) == 8 and len({json.dumps(t, sort_keys=True) for t in grid}) == 8
    rnd = expand(spec, "random", 5)
    assert len(rnd) == 5 and rnd == expand(spec, "random", 5), "random sweeps are seeded"
    cfg = wandb_config(spec, Path("r.yaml"))
    assert cfg["metric"]["name"] == "final/heldout_rewards/analytic-heldout"
    assert cfg["parameters"]["_recipe"] == {"value": "r.yaml"}


def test_metric_lookup_handles_slashes_in_names():
    metrics = {"heldout_rewards": {"analytic-heldout": 0.5, "a/b": 2}, "fidelity": {"psnr": 20.0}}
    assert metric_value(metrics, "heldout_rewards/analytic-heldout") == 0.5
    assert metric_value(metrics, "heldout_rewards/a/b") == 2
    assert metric_value(metrics, "fidelity/psnr") == 20.0 and metric_value(metrics, "nope") is None


def test_local_grid_runs_every_trial(tmp_path, capsys):
    sweep = write(
        tmp_path,
        "name: mini\nmetric: {name: train_reward}\nparameters:\n"
        "  guidance.config.negative.lr: {values: [0.04, 0.2]}\n  seed: {values: [0, 1]}\n",
    )
    assert main(["sweep", str(sweep), "--local", "grid", "--out", str(tmp_path / "out"), *TINY]) == 0
    summary = json.loads((tmp_path / "out" / "mini" / "sweep.json").read_text())
    assert len(summary["trials"]) == 4
    assert all(t["metric"] is not None for t in summary["trials"])
    for t in summary["trials"]:
        recipe = (Path(t["run_dir"]) / "recipe.yaml").read_text()
        assert f"lr:\n        start: {t['params']['guidance.config.negative.lr']}" in recipe
    assert "train_reward" in capsys.readouterr().out


def test_interrupt_stops_the_sweep(tmp_path, monkeypatch):
    """SIGTERM/Ctrl+C during a trial stops the whole sweep (after recording the trial), not just that trial."""
    import psdkit.run.fit as fit_module
    from psdkit.errors import TrainingInterrupted
    from psdkit.sweep import run_local

    calls = []

    def interrupted(recipe, opts):
        calls.append(opts.run_dir)
        raise TrainingInterrupted("stopped at step 3; saved last.ckpt")

    monkeypatch.setattr(fit_module, "fit", interrupted)
    spec, recipe = load_sweep(
        write(tmp_path, "name: s\nmetric: {name: train_reward}\nparameters:\n  seed: {values: [0, 1, 2]}\n")
    )
    with pytest.raises(TrainingInterrupted):
        run_local(spec, recipe, "grid", None, tmp_path / "out")
    assert len(calls) == 1
    summary = json.loads((tmp_path / "out" / "s" / "sweep.json").read_text())
    assert len(summary["trials"]) == 1 and "stopped at step 3" in summary["trials"][0]["error"]


def test_random_search_draws_distinct_trials():
    spec, _ = load_sweep(ROOT / "sweeps" / "prompts.yaml")
    for n in (2, 3, 5):
        drawn = [t["prompt.text"] for t in expand(spec, "random", n)]
        assert len(drawn) == n == len(set(drawn)), drawn
    assert len(expand(spec, "random", 50)) == 5, "a space of 5 gives at most 5 distinct trials"
    spec, _ = load_sweep(ROOT / "sweeps" / "psd_scale_lr_seed.yaml")
    assert len({json.dumps(t, sort_keys=True) for t in expand(spec, "random", 8)}) == 8


def test_local_sweep_owns_its_directory_and_resumes(tmp_path, capsys):
    sweep = write(tmp_path, "name: twice\nmetric: {name: train_reward}\nparameters:\n  seed: {values: [0, 1]}\n")
    argv = ["sweep", str(sweep), "--local", "random", "--count", "2", "--out", str(tmp_path / "out"), *TINY]
    root = tmp_path / "out" / "twice"
    assert main(argv) == 0
    first = json.loads((root / "sweep.json").read_text())
    finished = {p: p.stat().st_mtime_ns for p in root.rglob("metrics.json")}
    assert len(finished) == 2 and {t["params"]["seed"] for t in first["trials"]} == {0, 1}
    capsys.readouterr()
    assert main(argv) == 2
    assert "already exists; --resume finishes it" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in root.rglob("metrics.json")} == finished
    # an interrupted sweep: trial 1 never finished
    (root / "sweep.json").write_text(json.dumps({**first, "trials": first["trials"][:1]}))
    assert main([*argv, "--resume"]) == 0
    again = json.loads((root / "sweep.json").read_text())
    assert [t["params"] for t in again["trials"]] == [t["params"] for t in first["trials"]]
    trial0 = next(p for p in finished if "trial-000" in str(p))
    assert trial0.stat().st_mtime_ns == finished[trial0], "a finished trial is not run again"
    assert main([*argv, "--overwrite"]) == 0
    assert all(p.stat().st_mtime_ns != t for p, t in finished.items())


def test_a_corrupt_sweep_record_is_one_clear_error(tmp_path):
    from psdkit.errors import RunDirError
    from psdkit.sweep import SWEEP_MARKER, prepare_sweep_dir

    root = tmp_path / "s"
    root.mkdir()
    (root / SWEEP_MARKER).write_text("")
    (root / "sweep.json").write_text("{truncated")
    with pytest.raises(RunDirError, match=r"sweep\.json is not a sweep record .*--overwrite starts the sweep over"):
        prepare_sweep_dir(root, [{"seed": 0}], overwrite=False, resume=True)
    assert prepare_sweep_dir(root, [{"seed": 0}], overwrite=True, resume=False) == {}
    assert sorted(p.name for p in root.iterdir()) == [SWEEP_MARKER]
