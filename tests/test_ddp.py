"""DDP on 2 CPU processes (gloo), run as a subprocess: DDP inside pytest would re-run pytest itself."""

from __future__ import annotations

import pytest
import torch
from subprocess_fit import run_fit_script

SAME_SAMPLES = ("trainer.max_steps=6", "renderer.config.jitter=false", "renderer.config.occupancy=false")
# Adam divides by sqrt(v) + eps, so on a near-zero gradient (a hash-table entry few rays touch) it turns the
# float-rounding difference of two partial sums all-reduced vs one sum into a step of up to lr x rounding / eps.
# At the recipe's eps (1e-15) that is 1.7e-5 on 11 of 262k entries with no gate at all; at 1e-8 it moved with the
# trajectory (0.6e-6 to 1.3e-6 in the gate cases, 4.0e-5 with DreamDPO's groups). At 1e-6 for the 3D state it is
# at most 3.0e-7 in every case below, while normalizing the gate per rank (the bug these tests exist for) moves
# the hash table by 9.2e-3 and e_n by 0.21 (measured on the psd-reward case with that bug put back): the 1e-6
# bounds test the normalization, not the summation order. e_n keeps eps 1e-8 (PSD_FLOOR).
FLOAT_FLOOR = ("optim.eps=1.0e-6",)
PSD_FLOOR = "guidance.config.negative.eps=1.0e-8"
# The gate tests run e_n at the learning rate the bounds were first measured on (0.05 in the old absolute units =
# 0.2 of the analytic prompt's RMS) with no anchor; the normalization they check does not depend on it.
# test_negative_embedding_identical_on_both_ranks runs the quickstart's settings.
PSD_CALIBRATED = (
    "guidance.config.negative.lr=0.2",
    "guidance.config.negative.anchor_decay=0",
)


def test_negative_embedding_identical_on_both_ranks(tmp_path):
    run_fit_script(tmp_path, 2, 2, "trainer.max_steps=4")
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["world"] == r1["world"] == 2
    assert r0["azimuths"] != r1["azimuths"], "each rank must render different cameras"
    assert set(r0["state"]) == set(r1["state"])
    assert "guidance.neg_offset" in r0["state"] and "guidance.learner.pool.x0" in r0["state"]
    assert not any(k.startswith(("components", "prior")) for k in r0["state"]), "frozen models are not state"
    assert r0["state"]["guidance.neg_offset"].abs().sum() > 0, "the embedding must have trained"
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), f"{key} differs between ranks"
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_two_ranks_match_one_rank_with_twice_the_batch(tmp_path):
    """Global batch = ranks x per-rank batch: 2 ranks x 2 views equals 1 rank x 4 views.

    Cameras and noise are drawn for the global batch on every rank, so both runs see the same samples;
    render jitter (per rank by design) is off. The only difference left is float summation order
    (DDP averages per-rank means), hence a tolerance rather than bit equality.
    """
    args = ("trainer.max_steps=6", "renderer.config.jitter=false", "renderer.config.occupancy=false")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    run_fit_script(one, 1, 4, *args)
    run_fit_script(two, 2, 2, *args)
    a, b = torch.load(one / "rank0.pt"), torch.load(two / "rank0.pt")
    r1 = torch.load(two / "rank1.pt")
    assert sorted(a["azimuths"]) == sorted(b["azimuths"] + r1["azimuths"]), "same global camera batch"
    for key, va in a["state"].items():
        vb = b["state"][key]
        if va.is_floating_point():
            err = (va - vb).abs().max().item()
            scale = va.abs().max().item() + 1e-12
            assert err <= 1e-4 * max(scale, 1.0), f"{key}: max abs diff {err:.3g} (scale {scale:.3g})"
        else:
            assert torch.equal(va, vb), key


@pytest.mark.parametrize(
    "strategy",
    [
        ["guidance.config.neg_loss=reward", "guidance.config.reward_estimate.t_max=0.5", PSD_FLOOR],
        ["guidance.config.neg_loss=pairwise", "guidance.config.reward_estimate.t_max=0.5", PSD_FLOOR],
        ["guidance.config.pool={size: 6, steps: 5}", PSD_FLOOR],
        ["guidance.name=reward-sds", "guidance.config={num_noises: 3, top_k: 1}"],
    ],
    ids=["psd-reward", "psd-pairwise", "psd-pool", "reward-sds"],
)
def test_rank_invariant_with_a_gate_that_drops_samples(tmp_path, strategy):
    """reward_t_max 0.5 drops about half the samples, unevenly between ranks: the e_n loss is averaged over
    the samples kept in the *global* batch, so 2 ranks x 2 views give 1 rank x 4 views to float precision
    (on main, normalizing by each rank's own count, e_n differed by 1.65e-3)."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    strategy = [*PSD_CALIBRATED, *strategy] if PSD_FLOOR in strategy else strategy
    run_fit_script(one, 1, 4, *SAME_SAMPLES, *FLOAT_FLOOR, *strategy)
    run_fit_script(two, 2, 2, *SAME_SAMPLES, *FLOAT_FLOOR, *strategy)
    a, b = torch.load(one / "rank0.pt"), torch.load(two / "rank0.pt")
    worst = {}
    for key, va in a["state"].items():
        if va.is_floating_point():
            worst[key] = (va - b["state"][key]).abs().max().item()
    # e_n is what the global normalization makes rank-invariant: measured <= 6e-8 (0.21 with per-rank
    # normalization); the 3D state <= 1.7e-7 (psd-reward, psd-pairwise; FLOAT_FLOOR).
    assert worst.get("guidance.neg_offset", 0.0) <= 2e-7, f"e_n differs by {worst.get('guidance.neg_offset'):.3g}"
    assert max(worst.values()) <= 1e-6, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    if "guidance.neg_offset" in a["state"]:
        drift = a["state"]["guidance.neg_offset"].abs().max().item()
        assert drift > 1e-3, "e_n must have trained for the comparison to mean anything"


@pytest.mark.parametrize(
    "strategy",
    [
        ["guidance.config={neg_loss: pairwise, reward_estimate: {t_max: 1.0}}", PSD_FLOOR],
        ["guidance.config.pool={size: 6, steps: 5}", PSD_FLOOR],
        ["guidance.config={form: p2, reward_scaling: {warmup: 0}}", PSD_FLOOR],
        ["guidance.name=dreamdpo", "guidance.config={gap_threshold: 0.0}"],
    ],
    ids=["psd-pairwise", "psd-pool", "psd-reward-scaling", "dreamdpo"],
)
def test_groups_of_views_are_rank_invariant(tmp_path, strategy):
    """A joint (multi-view) prior with groups of 4: 2 ranks x 4 views (one whole group each) equal 1 rank x 8
    views, with the strategies that compare or normalize rewards per group."""
    groups = ("prior.config.joint_views=4", "camera.config.group_views=4")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    run_fit_script(one, 1, 8, *SAME_SAMPLES, *FLOAT_FLOOR, *groups, *strategy)
    run_fit_script(two, 2, 4, *SAME_SAMPLES, *FLOAT_FLOOR, *groups, *strategy)
    a, b, r1 = (torch.load(p) for p in (one / "rank0.pt", two / "rank0.pt", two / "rank1.pt"))
    assert sorted(a["azimuths"]) == sorted(b["azimuths"] + r1["azimuths"]), "same global camera batch"
    for rank in (b["azimuths"], r1["azimuths"]):  # each step, one whole group per rank: 90 degrees apart
        for i in range(0, len(rank), 4):
            az = rank[i : i + 4]
            assert sorted(round((x - az[0]) % 360.0, 3) % 360.0 for x in az) == [0.0, 90.0, 180.0, 270.0], az
    worst = {k: (va - b["state"][k]).abs().max().item() for k, va in a["state"].items() if va.is_floating_point()}
    # measured: at most 3.0e-7 on a few hash-table entries (DreamDPO, FLOAT_FLOOR); everything else agrees to 3e-8
    assert max(worst.values()) <= 1e-6, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
