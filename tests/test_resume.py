"""Exact resume: a run SIGKILLed at a random step and resumed equals an uninterrupted run."""

from __future__ import annotations

import json
import random

import torch
from subprocess_fit import run_fit_script

ARGS = ("trainer.max_steps=10", "trainer.val_every=3")
VOLATILE = {"wall_time_s", "steps_per_s", "peak_memory_mb", "files"}


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    kill_at = random.Random(1234).randint(4, 9)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ref.mkdir(), cut.mkdir()
    run_fit_script(ref, 1, 2, *ARGS)
    run_fit_script(cut, 1, 2, *ARGS, "--kill-at", str(kill_at), expect_rc=-9)
    assert not (cut / "run" / "metrics.json").exists(), "the killed run must not have finished"
    saved = torch.load(cut / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < saved <= kill_at
    run_fit_script(cut, 1, 2, *ARGS, "--resume")
    a, b = torch.load(ref / "rank0.pt")["state"], torch.load(cut / "rank0.pt")["state"]
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume (killed at {kill_at}, resumed from {saved})"
    ma = json.loads((ref / "run" / "metrics.json").read_text())
    mb = json.loads((cut / "run" / "metrics.json").read_text())
    assert {k: v for k, v in ma.items() if k not in VOLATILE} == {k: v for k, v in mb.items() if k not in VOLATILE}
    assert ma["steps"] == mb["steps"] == 10


def test_corrupt_last_checkpoint_falls_back(tmp_path):
    import pytest

    from psdkit.run.rundir import usable_checkpoint

    run_fit_script(tmp_path, 1, 1, "trainer.max_steps=4", "trainer.val_every=2", "trainer.ckpt_every=2")
    ckpts = tmp_path / "run" / "checkpoints"
    (ckpts / "last.ckpt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match=r"last\.ckpt is unreadable"):
        assert usable_checkpoint(ckpts) == ckpts / "step-0000004.ckpt"
