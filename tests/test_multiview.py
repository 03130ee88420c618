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
