"""DDP on 2 CPU processes (gloo), run as a subprocess: DDP inside pytest would re-run pytest itself."""

from __future__ import annotations

import torch

from subprocess_fit import run_fit_script


def test_negative_embedding_identical_on_both_ranks(tmp_path):
    run_fit_script(tmp_path, 2, 2, "trainer.max_steps=4")
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["world"] == r1["world"] == 2
    assert r0["azimuths"] != r1["azimuths"], "each rank must render different cameras"
    assert set(r0["state"]) == set(r1["state"])
    assert "guidance.neg_emb" in r0["state"]
    assert not any(k.startswith(("components", "prior")) for k in r0["state"]), "frozen models are not state"
    init = r0["state"]["guidance.neg_init_emb"]
    assert not torch.equal(r0["state"]["guidance.neg_emb"], init), "the embedding must have trained"
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), f"{key} differs between ranks"
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "metrics.json").is_file()
