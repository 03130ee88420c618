"""Run directories never lose work: names, --overwrite, resume history, recipe changes, corrupt checkpoints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from subprocess_fit import run_fit_script
from tiny_overrides import TINY_QUICKSTART

from psdkit.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "recipes" / "quickstart.yaml")
TINY = [*TINY_QUICKSTART, "trainer.log_every=1", "trainer.val_every=2"]


def fit(root: Path, *args: str) -> int:
    return main(["fit", QUICK, f"output.root={root}", *TINY, *args])


def csv_steps(run: Path) -> list[int]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f)]


@pytest.mark.parametrize("name", ["", " ", "../../x", "a/b", "..", ".", "x\\y"])
def test_bad_run_names_are_refused_before_anything_is_written(tmp_path, capsys, name):
    root = tmp_path / "scratch" / "runs"
    (root / "keep").mkdir(parents=True)
    (root / "keep" / "result.txt").write_text("precious")
    assert fit(root, f"name={name}", "trainer.max_steps=1", "--overwrite") == 2
    assert "psdkit: error: name: " in capsys.readouterr().err
    assert (root / "keep" / "result.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep", "result.txt", "runs", "scratch"]


def test_overwrite_only_replaces_run_directories(tmp_path, capsys):
    root = tmp_path / "runs"
    (root / "mine").mkdir(parents=True)
    (root / "mine" / "thesis.tex").write_text("precious")
    assert fit(root, "name=mine", "trainer.max_steps=1", "--overwrite") == 2
    assert "is not a psdkit run directory" in capsys.readouterr().err
    assert (root / "mine" / "thesis.tex").read_text() == "precious"
    assert fit(root, "name=run", "trainer.max_steps=1") == 0
    assert (root / "run" / ".psdkit-run").is_file()
    assert fit(root, "name=run", "trainer.max_steps=2", "--overwrite") == 0
    assert json.loads((root / "run" / "metrics.json").read_text())["steps"] == 2


def test_resume_keeps_history(tmp_path):
    """Finished run + --resume with more steps: the log grows, every command is kept, time is the total."""
    root = tmp_path / "runs"
    assert fit(root, "name=run", "trainer.max_steps=4") == 0
    first = json.loads((root / "run" / "metrics.json").read_text())
    assert csv_steps(root / "run") == [0, 1, 2, 3]
    assert fit(root, "name=run", "trainer.max_steps=6", "--resume", "auto") == 0
    run = root / "run"
    assert csv_steps(run) == [0, 1, 2, 3, 4, 5]
    commands = (run / "command.txt").read_text().splitlines()
    assert len(commands) == 2 and "--resume" not in commands[0] and "--resume auto" in commands[1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert metrics["wall_time_s"] >= first["wall_time_s"]
    assert metrics["steps_per_s"] == pytest.approx(6 / metrics["wall_time_s"], rel=0.05)


def test_killed_run_resumed_has_each_logged_step_once(tmp_path):
    args = ("trainer.max_steps=8", "trainer.val_every=3", "logger.name=csv", "trainer.log_every=1")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ref.mkdir(), cut.mkdir()
    run_fit_script(ref, 1, 1, *args)
    run_fit_script(cut, 1, 1, *args, "--kill-at", "5", expect_rc=-9)
    assert max(csv_steps(cut / "run")) >= 3  # rows up to the checkpoint reached the disk before the kill
    run_fit_script(cut, 1, 1, *args, "--resume")
    assert csv_steps(cut / "run") == csv_steps(ref / "run") == list(range(8))
    with open(ref / "run" / "logs" / "metrics.csv") as a, open(cut / "run" / "logs" / "metrics.csv") as b:
        rows_a, rows_b = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [r["train/loss"] for r in rows_a] == [r["train/loss"] for r in rows_b]


def test_resume_with_another_recipe_is_refused_before_writing(tmp_path, capsys):
    root = tmp_path / "runs"
    assert fit(root, "name=run", "trainer.max_steps=2") == 0
    run = root / "run"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert fit(root, "name=run", "trainer.max_steps=4", "guidance.name=sds", "--resume", "auto") == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "guidance.name: run has 'psd', given 'sds'" in err
    assert fit(root, "name=run", "trainer.max_steps=1", "--resume", "auto") == 2
    assert "trainer.max_steps: run has 2, given 1" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # an edited recipe.yaml in the run directory is no longer silently ignored
    data = yaml.safe_load((run / "recipe.yaml").read_text())
    data["seed"] = 7
    (run / "recipe.yaml").write_text(yaml.safe_dump(data))
    assert fit(root, "name=run", "trainer.max_steps=4", "--resume", "auto") == 2
    assert "seed: run has 7, given 0" in capsys.readouterr().err
    # the run's own recipe.yaml is a recipe again, and resumes what may change
    assert main(["fit", str(run / "recipe.yaml"), "trainer.max_steps=3", "--resume", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3


def test_corrupt_checkpoint_falls_back_or_says_how_to_start_over(tmp_path, capsys):
    root = tmp_path / "runs"
    assert fit(root, "name=run", "trainer.max_steps=4", "trainer.ckpt_every=2") == 0
    ckpts = root / "run" / "checkpoints"
    (ckpts / "last.ckpt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match=r"last\.ckpt is unreadable"):
        assert fit(root, "name=run", "trainer.max_steps=5", "trainer.ckpt_every=2", "--resume", "auto") == 0
    assert json.loads((root / "run" / "metrics.json").read_text())["steps"] == 5
    for ckpt in ckpts.glob("*.ckpt"):
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    capsys.readouterr()
    with pytest.warns(UserWarning):
        assert fit(root, "name=run", "trainer.max_steps=6", "--resume", "auto") == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint to resume" in err and "--overwrite" in err and "--resume" not in err.split(";")[1]
    assert fit(root, "name=run", "trainer.max_steps=6") == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" not in err
    with pytest.warns(UserWarning):
        assert fit(root, "name=run", "trainer.max_steps=1", "--resume", str(root / "run")) == 2
    assert fit(root, "name=run", "trainer.max_steps=1", "--overwrite") == 0


def test_output_root_that_cannot_be_created_is_refused_first(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert fit(blocker / "runs", "trainer.max_steps=1") == 2
    assert "output.root: cannot write run directories under" in capsys.readouterr().err


def test_resume_auto_restarts_a_run_that_never_saved_a_checkpoint(tmp_path):
    """A requeued job (`--resume auto`) whose first attempt died before any checkpoint starts over; a folder
    that is not a run directory is still refused."""
    root = tmp_path / "runs"
    assert fit(root, "name=run", "trainer.max_steps=2") == 0
    for ckpt in (root / "run" / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()
    assert fit(root, "name=run", "trainer.max_steps=2", "--resume", "auto") == 0
    assert json.loads((root / "run" / "metrics.json").read_text())["steps"] == 2
    (root / "other").mkdir()
    (root / "other" / "notes.txt").write_text("mine")
    assert fit(root, "name=other", "trainer.max_steps=2", "--resume", "auto") == 2
    assert (root / "other" / "notes.txt").read_text() == "mine"
