"""Multi-view consistency in the analytic world: the joint mode of the analytic prior, groups of views from the
orbit sampler, and the view-consistency metric."""

from __future__ import annotations

import pytest
import torch
from psdkit_plugins.cameras.orbit import OrbitCameraConfig, OrbitCameraSampler
from psdkit_plugins.priors.analytic import AnalyticPrior, AnalyticPriorConfig, joint_posterior

from psdkit.config.schema import build_config
from psdkit.errors import RecipeError
from psdkit.run.evaluate import fidelity
from psdkit.testing import tiny


def test_joint_posterior_is_shared_within_each_group_and_follows_the_evidence():
    log_w = torch.zeros(2, 8)
    log_lik = torch.tensor([[5.0, 0, 0, 0, 0, 0, 0, 9], [0, 2, 2, 2, 0, 0, 0, 0]])  # [K=2, B=8]
    alone = joint_posterior(log_w, log_lik, 1)
    assert torch.allclose(alone, (log_w + log_lik).softmax(0))
    for evidence in ("sum", "mean"):
        joint = joint_posterior(log_w, log_lik, 4, evidence)
        assert torch.allclose(joint[:, :4], joint[:, :1].expand(2, 4))
        assert torch.allclose(joint[:, 4:], joint[:, 4:5].expand(2, 4))
        assert joint[1, 0] > 0.5, "three views of evidence for object 1 outweigh one view for object 0 (6 > 5)"
    summed, mean = joint_posterior(log_w, log_lik, 4, "sum"), joint_posterior(log_w, log_lik, 4, "mean")
    assert torch.allclose(summed[0, 4], torch.sigmoid(torch.tensor(9.0)))  # sum: one object seen 4 times
    assert torch.allclose(mean[0, 4], torch.sigmoid(torch.tensor(9.0 / 4)))  # mean: one view's sharpness
    with pytest.raises(ValueError, match="not whole groups"):
        joint_posterior(torch.zeros(2, 6), torch.zeros(2, 6), 4)


def _x0(prior: AnalyticPrior, images: torch.Tensor, cams, t: int) -> torch.Tensor:
    """The prior's one-step estimate x0 [B, 3, r, r] in [0, 1] at timestep ``t`` from ``images`` (no noise)."""
    x0 = prior.encode_images(images)
    tt = torch.full((len(images),), t)
    a, s = prior.alpha_sigma(tt)
    x_t = a.view(-1, 1, 1, 1) * x0
    emb = prior.encode_text(["a sphere"]).expand(len(images), -1, -1)
    return prior.decode(prior.predict_x0(x_t, tt, prior.predict_noise(x_t, tt, emb, cams)))


def test_joint_mode_denoises_every_view_of_a_group_toward_one_object():
    """Views 0-2 look red-ish and view 3 blue-ish: alone, view 3 denoises toward blue; jointly, toward red."""
    cams = tiny.tiny_cameras(4, 16)
    refs = {}
    x0 = {}
    for joint in (1, 4):
        prior = AnalyticPrior(AnalyticPriorConfig(resolution=16, joint_views=joint))
        refs = prior.references(cams)
        red, blue = refs["red-sphere"], refs["blue-sphere"]
        images = torch.cat([0.7 * red[:3] + 0.3 * blue[:3], 0.3 * red[3:] + 0.7 * blue[3:]])
        x0[joint] = _x0(prior, images, cams, 600)

    def names(batch: torch.Tensor) -> list[str]:
        return [
            min(("red-sphere", "blue-sphere"), key=lambda n, i=i: float(((batch[i] - refs[n][i]) ** 2).mean()))
            for i in range(4)
        ]

    assert names(x0[1]) == ["red-sphere"] * 3 + ["blue-sphere"]
    assert names(x0[4]) == ["red-sphere"] * 4


def test_orbit_groups_share_elevation_distance_and_fov_with_even_azimuths():
    cfg = OrbitCameraConfig(batch_size=8, group_views=4)
    cams = OrbitCameraSampler(cfg).sample(3, torch.Generator().manual_seed(1), num_ranks=2)
    assert len(cams) == 16
    for g in range(4):  # 2 groups per rank: a rank's 8 views are 2 whole groups
        sl = slice(4 * g, 4 * g + 4)
        for field in (cams.elevation, cams.distance, cams.fov_y):
            assert torch.allclose(field[sl], field[sl][:1].expand(4))
        steps = torch.remainder(cams.azimuth[sl] - cams.azimuth[sl][0], 360.0)
        assert torch.allclose(steps, torch.tensor([0.0, 90.0, 180.0, 270.0]), atol=1e-3)
    assert cams.elevation[0] != cams.elevation[4], "groups are drawn independently"
    with pytest.raises(RecipeError, match="not a multiple of group_views"):
        build_config(OrbitCameraConfig, {"batch_size": 6, "group_views": 4}, "camera.config")


def test_view_consistency_counts_the_views_that_agree_with_the_majority():
    cams = tiny.tiny_cameras(4, 16)
    refs = AnalyticPrior(AnalyticPriorConfig(resolution=16)).references(cams)
    images = torch.cat([refs["red-sphere"][:3], refs["blue-sphere"][3:]])
    fid = fidelity(images, refs, ["red-sphere", "blue-sphere"])
    assert fid["view_consistency"] == 0.75 and fid["view_objects"] == ["red-sphere"] * 3 + ["blue-sphere"]
    assert fid["psnr_spread"] > 10
    same = fidelity(refs["red-sphere"], refs, ["red-sphere", "blue-sphere"])
    assert same["view_consistency"] == 1.0 and same["psnr_spread"] == 0.0


def test_views_of_a_group_share_a_timestep_and_single_views_draw_as_before():
    from psdkit.ops.distill import draw_noise

    t1, _ = draw_noise(torch.Generator().manual_seed(0), (8, 3, 4, 4), 0.02, 0.98, 1000)
    t1_again, _ = draw_noise(torch.Generator().manual_seed(0), (8, 3, 4, 4), 0.02, 0.98, 1000, group=1)
    assert torch.equal(t1, t1_again)
    t4, _ = draw_noise(torch.Generator().manual_seed(0), (8, 3, 4, 4), 0.02, 0.98, 1000, group=4)
    assert len(set(t4[:4].tolist())) == 1 and len(set(t4[4:].tolist())) == 1 and t4[0] != t4[4]
    half, _ = draw_noise(
        torch.Generator().manual_seed(0), (4, 3, 4, 4), 0.02, 0.98, 1000, offset=4, global_batch=8, group=4
    )
    assert torch.equal(half, t4[4:]), "a rank's slice of the global batch keeps whole groups"
    assert AnalyticPrior(AnalyticPriorConfig(joint_views=4)).views_per_group() == 4


def test_x0_rescale_over_groups_is_mvdreams_recon_std_rescale():
    """``guidance_rescale_in: x0`` on a 4-view prior is MVDream-threestudio's ``recon_std_rescale``: x0 of the
    guided eps scaled to the std of the conditional x0 over each group of views, blended by phi."""
    from psdkit.ops.distill import NativeSpace, guide

    g = torch.Generator().manual_seed(0)
    x_t, eps_y, eps_b = (torch.randn(8, 4, 6, 6, generator=g) for _ in range(3))
    alpha, sigma = torch.rand(8, generator=g) * 0.8 + 0.1, torch.rand(8, generator=g) * 0.8 + 0.1
    a, s = alpha.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1)
    ours = guide(eps_b, eps_y, 50.0, 0.5, NativeSpace("sample", x_t, alpha, sigma, group=4))
    recon, recon_text = (x_t - s * (eps_b + 50.0 * (eps_y - eps_b))) / a, (x_t - s * eps_y) / a
    factor = recon_text.view(2, 4, -1).std(dim=(1, 2)) / recon.view(2, 4, -1).std(dim=(1, 2))
    expected = 0.5 * recon * factor.repeat_interleave(4).view(-1, 1, 1, 1) + 0.5 * recon
    torch.testing.assert_close((x_t - s * ours) / a, expected, atol=1e-4, rtol=1e-4)
    per_view = guide(eps_b, eps_y, 50.0, 0.5, NativeSpace("sample", x_t, alpha, sigma, group=1))
    assert not torch.allclose(per_view, ours, atol=1e-3), "pooling over the group is not the per-view rescale"


def test_relative_distance_keeps_the_object_the_same_size_in_the_frame():
    """``distance_relative``: distance * tan(fov / 2), the half-height of the frame at the origin, stays in
    distance_range for every fov, for single views and for groups."""
    for group in (1, 4):
        cfg = OrbitCameraConfig(
            batch_size=8, group_views=group, distance_range=(0.8, 1.0), fov_range=(15.0, 60.0), distance_relative=True
        )
        cams = OrbitCameraSampler(cfg).sample(0, torch.Generator().manual_seed(2))
        half = cams.distance * torch.tan(0.5 * cams.fov_y)
        assert ((half >= 0.8 - 1e-5) & (half <= 1.0 + 1e-5)).all()
        assert cams.distance.max() > 1.7, "a narrow fov puts the camera far away"
        eye = cams.c2w[:, :3, 3].norm(dim=-1)
        assert torch.allclose(eye, cams.distance, atol=1e-4)


def _group_step(cls, seed: int = 3, **config):
    """One step of strategy ``cls`` on two groups of 4 views of a joint analytic prior: (strategy, output)."""
    from psdkit.contracts import GuidanceInput

    s = cls(build_config(cls.Config, config, "guidance.config"))
    s.setup(tiny.tiny_context("a sphere", negative="a blue cube", views=4))
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    inp = GuidanceInput(
        x, tiny.tiny_cameras(8, 16), torch.zeros(8, dtype=torch.long), 5, 10, torch.Generator().manual_seed(seed)
    )
    return s, s(inp)


def test_dreamdpo_pairs_are_decided_per_group_of_views(monkeypatch):
    """All views of one object pick the same noise copy as winner: the pair is scored by the group's mean."""
    from psdkit_plugins.guidance.dreamdpo import DreamDPO

    from psdkit.ops import distill

    seen: list[torch.Tensor] = []
    real = distill.group_mean

    def spy(v: torch.Tensor, group: int) -> torch.Tensor:
        out = real(v, group)
        seen.append(out.detach())
        return out

    monkeypatch.setattr("psdkit_plugins.guidance.dreamdpo.group_mean", spy)
    for seed in range(4):
        _group_step(DreamDPO, seed=seed, gap_threshold=0.0, guidance_scale=3.0)
    assert len(seen) == 4
    for scores in seen:
        pairs = scores.view(2, 2, 4)  # copy, group, view
        assert torch.equal(pairs, pairs[..., :1].expand_as(pairs)), "one score per object and copy"
        assert not torch.equal(pairs[:, 0, 0], pairs[:, 1, 0]), "groups are scored apart"


def test_group_mean_and_psd_reward_scaling_give_one_rho_per_object():
    from psdkit_plugins.guidance.psd import PSD

    from psdkit.ops.distill import group_mean

    v = torch.arange(8.0)
    assert torch.equal(group_mean(v, 4), torch.tensor([1.5] * 4 + [5.5] * 4)) and torch.equal(group_mean(v, 1), v)
    _, out = _group_step(PSD, form="p2", reward_scaling={"warmup": 0, "kappa": 0.5}, neg_loss="reward")
    assert "rho" in out.logs
    s, _ = _group_step(PSD, form="p2", reward_scaling={"warmup": 0}, neg_loss="reward")
    assert int(s.reward_stats.count) == 2, "the running reward statistics count objects, not views"


def test_a_multi_view_prior_refuses_cameras_not_drawn_in_its_groups(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from psdkit.cli.main import main

    monkeypatch.chdir(tmp_path)
    quickstart = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    args = ["fit", str(quickstart), "prior.config.joint_views=4", "camera.config.batch_size=4"]
    assert main([*args, "trainer.max_steps=1", "trainer.progress=false"]) == 2
    assert "camera.config.group_views: the prior denoises groups of 4" in capsys.readouterr().err
    from psdkit.run.build import check_groups

    with pytest.raises(RecipeError, match=r"camera.config.group_views: the prior denoises groups of 4"):
        check_groups(4, OrbitCameraSampler(OrbitCameraConfig(batch_size=4)))
    check_groups(4, OrbitCameraSampler(OrbitCameraConfig(batch_size=4, group_views=4)))
    check_groups(1, OrbitCameraSampler(OrbitCameraConfig(batch_size=4, group_views=4)))
