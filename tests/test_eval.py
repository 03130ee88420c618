"""psdkit eval: scores a finished run from its checkpoints, flags reward hacking, compares runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_overrides import TINY_QUICKSTART

from psdkit.cli.main import main
from psdkit.run.eval_run import hacking

ROOT = Path(__file__).resolve().parents[1]
TINY = [*TINY_QUICKSTART, "trainer.max_steps=4", "trainer.ckpt_every=2", "logger.name=none"]


def test_eval_and_compare(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, extra in (("a", []), ("b", ["guidance.name=sds"])):
        assert main(["fit", str(ROOT / "recipes" / "quickstart.yaml"), f"name={name}", *TINY, *extra]) == 0
    run = tmp_path / "runs" / "a"
    assert (
        main(["eval", str(run), "--views", "3", "--resolution", "24", "--rewards", "analytic", "analytic-heldout"])
        == 0
    )
    out = json.loads((run / "eval.json").read_text())
    assert out["final"]["step"] == 4 and out["first"]["step"] == 2
    assert set(out["final"]["heldout_rewards"]) == {"analytic", "analytic-heldout"}
    assert isinstance(out["reward_hacking"], bool) and out["hacking"]["unavailable"] == []
    assert (run / "contact_sheet.png").is_file()
    fid = out["final"]["fidelity"]
    views = fid["view_objects"]
    assert len(views) == 3
    assert fid["view_consistency"] == pytest.approx(views.count(max(set(views), key=views.count)) / 3, abs=1e-4)
    assert "views agree: " in capsys.readouterr().out
    assert main(["eval", str(run), str(tmp_path / "runs" / "b"), "--compare"]) == 0
    table = capsys.readouterr().out
    assert "| a | 4 |" in table and "| b | 4 |" in table


def test_hacking_rule():
    base = {"train_reward": 0.1, "heldout_rewards": {"x": 0.5, "y": 0.5}}
    trend = "held-out down while train up"
    assert hacking(base, {"train_reward": 0.3, "heldout_rewards": {"x": 0.2, "y": 0.4}})["fired"] == [trend]
    no = hacking(base, {"train_reward": 0.3, "heldout_rewards": {"x": 0.6, "y": 0.5}})
    assert (
        no["flagged"] is False
        and no["fired"] == []
        and set(no["unavailable"]) == {"wrong object", "prior fit collapsed"}
    )
    assert hacking({"heldout_rewards": {}}, base)["flagged"] is None, "nothing could be checked"
    fid = {"matches_prompt": True, "psnr": 27.0}
    good = {**base, "fidelity": fid}
    assert hacking(None, good) == {"flagged": False, "fired": [], "unavailable": [trend]}
    wrong = {**base, "fidelity": {**fid, "matches_prompt": False}}
    assert hacking(None, wrong)["fired"] == ["wrong object"]
    collapsed = {**base, "fidelity": {**fid, "psnr": 14.0}}
    assert hacking(None, collapsed)["fired"] == ["prior fit collapsed"]
    assert hacking(good, {**base, "fidelity": {**fid, "psnr": 23.5}})["fired"] == ["prior fit collapsed"], "a drop"
    assert hacking(good, {**base, "fidelity": {**fid, "psnr": 25.0}})["flagged"] is False


def test_eval_flags_a_run_that_shows_the_wrong_object(tmp_path, monkeypatch, capsys):
    """A short run on "a sphere" still shows a cube (the initial blob fits it best): the flag fires and says why,
    and eval with the run's own views and resolution reproduces metrics.json exactly."""
    monkeypatch.chdir(tmp_path)
    assert main(["fit", str(ROOT / "recipes" / "quickstart.yaml"), "name=short", *TINY, "trainer.ckpt_every=0"]) == 0
    run = tmp_path / "runs" / "short"
    metrics = json.loads((run / "metrics.json").read_text())
    assert not metrics["fidelity"]["matches_prompt"]
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert "reward hacking: YES (wrong object, prior fit collapsed); not checked: held-out down while train up" in out
    final = json.loads((run / "eval.json").read_text())["final"]
    for key in ("train_reward", "heldout_rewards", "fidelity", "views", "resolution"):
        assert final[key] == metrics[key], key


def test_eval_of_a_non_run_fails_clearly(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a psdkit run directory" in capsys.readouterr().err


def test_eval_scores_a_stable_diffusion_run(tmp_path, monkeypatch, tiny_weights, capsys):
    """psd_nerf.yaml with its models pointed at tiny checkpoints trains on CPU and psdkit eval scores it."""
    from conftest import tiny_model_overrides

    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        str(ROOT / "recipes" / "psd_nerf.yaml"),
        "name=sd",
        *TINY,
        "trainer.max_steps=2",
        "trainer.ckpt_every=0",
        *tiny_model_overrides(tiny_weights),
    ]
    assert main(args) == 0
    run = tmp_path / "runs" / "sd"
    assert main(["eval", str(run), "--views", "2", "--resolution", "32"]) == 0
    out = json.loads((run / "eval.json").read_text())
    assert set(out["final"]["heldout_rewards"]) == {"hpsv2", "pickscore", "aesthetic", "clip-score"}
    assert "train_reward" in out["final"] and out["final"]["step"] == 2
