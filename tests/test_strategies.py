"""The strategy library: conformance, closed-form gradients on the analytic prior, limiting cases."""

from __future__ import annotations

import pytest
import torch
from analytic_reference import posterior_eps
from psdkit_plugins.guidance.csd import CSD
from psdkit_plugins.guidance.dreamdpo import DreamDPO
from psdkit_plugins.guidance.dreamreward import DreamReward
from psdkit_plugins.guidance.ism import ISM
from psdkit_plugins.guidance.naive_reward import NaiveReward
from psdkit_plugins.guidance.nfsd import NFSD
from psdkit_plugins.guidance.reward_sds import RewardSDS
from psdkit_plugins.guidance.sds import SDS
from psdkit_plugins.guidance.vsd import VSD

from psdkit.config.schema import build_config
from psdkit.contracts import GuidanceInput
from psdkit.ops.distill import draw_noise
from psdkit.testing import tiny
from psdkit.testing.conformance import GuidanceConformance

B, R = 2, 16


class TestCSD(GuidanceConformance):
    plugin_cls = CSD


class TestNFSD(GuidanceConformance):
    plugin_cls = NFSD


class TestISM(GuidanceConformance):
    plugin_cls = ISM


class TestVSD(GuidanceConformance):
    plugin_cls = VSD


class TestDreamDPO(GuidanceConformance):
    plugin_cls = DreamDPO


class TestRewardSDS(GuidanceConformance):
    plugin_cls = RewardSDS


class TestDreamReward(GuidanceConformance):
    plugin_cls = DreamReward

    def tiny_config(self):
        return build_config(DreamReward.Config, {"reward_start": 0.0}, "")


class TestNaiveReward(GuidanceConformance):
    plugin_cls = NaiveReward


def setup(cls, negative="a blue cube", **config):
    s = cls(build_config(cls.Config, config, "guidance.config"))
    s.setup(tiny.tiny_context("a sphere", negative=negative))
    return s


def run(strategy, seed=3, step=0, max_steps=10):
    x = torch.rand(B, 3, R, R, generator=torch.Generator().manual_seed(0), requires_grad=True)
    inp = GuidanceInput(
        x,
        tiny.tiny_cameras(B, R),
        torch.zeros(B, dtype=torch.long),
        step,
        max_steps,
        torch.Generator().manual_seed(seed),
    )
    out = strategy(inp)
    (grad,) = torch.autograd.grad(out.loss, x, retain_graph=True)
    return out, grad, inp


def reference_terms(s, inp, seed=3, copies=1):
    """(t, eps, alpha, sigma, x_t, eps(e) for e in prompt/uncond/negative) by the closed form."""
    prior, cond = s.ctx.prior, s.ctx.cond
    z = prior.encode_images(inp.images.detach())
    gen = torch.Generator().manual_seed(seed)
    lo, hi = s.config.t_min(0), s.config.t_max(0)
    t, eps = draw_noise(gen, tuple(z.shape), lo, hi, prior.num_train_timesteps, copies=copies)
    alpha, sigma = prior.alpha_sigma(t)
    zz = z.repeat(copies, 1, 1, 1)
    x_t = alpha.view(-1, 1, 1, 1) * zz + sigma.view(-1, 1, 1, 1) * eps
    cams = inp.cameras.repeat(copies)
    n = x_t.shape[0]
    embs = {
        "y": cond.prompt_emb[[0] * n],
        "u": cond.uncond_emb.expand(n, -1, -1),
        "n": cond.negative_emb.expand(n, -1, -1),
    }
    return t, eps, alpha, sigma, x_t, {k: posterior_eps(prior, x_t, t, e, cams) for k, e in embs.items()}


def test_csd_gradient_closed_form():
    s = setup(CSD, guidance_scale=4.0, negative_scale=2.0)
    out, grad, inp = run(s)
    t, eps, alpha, sigma, x_t, e = reference_terms(s, inp)
    expected = (sigma**2).view(-1, 1, 1, 1) * (4.0 * (e["y"] - e["u"]) - 2.0 * (e["n"] - e["u"]))
    assert torch.allclose(grad, 2 * expected / B, atol=1e-5, rtol=1e-4)


def test_nfsd_switches_domain_term():
    s = setup(NFSD, guidance_scale=3.0, switch_t=0.5)
    out, grad, inp = run(s)
    t, eps, alpha, sigma, x_t, e = reference_terms(s, inp)
    high = (t.float() >= 0.5 * 999).view(-1, 1, 1, 1)
    delta_d = torch.where(high, e["u"] - e["n"], e["u"])
    expected = (sigma**2).view(-1, 1, 1, 1) * (delta_d + 3.0 * (e["y"] - e["u"]))
    assert torch.allclose(grad, 2 * expected / B, atol=1e-5, rtol=1e-4)


def test_ism_with_zero_interval_uses_the_inverted_prediction():
    """delta_t = 0 and one inversion step: x_s = x_t is the DDIM inversion of x0, baseline eps(x_s)."""
    s = setup(ISM, delta_t=0.0, inv_steps=1, guidance_scale=2.0, weighting="uniform")
    out, grad, inp = run(s)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    prior = s.ctx.prior
    z = prior.encode_images(inp.images.detach())
    t, _ = draw_noise(torch.Generator().manual_seed(3), tuple(z.shape), 0.02, 0.5, prior.num_train_timesteps)
    with torch.no_grad():
        x_t, eps_s = s.invert(z, t, t, s.ctx.cond.uncond_emb.expand(B, -1, -1), inp.cameras)
    a0, s0 = prior.alpha_sigma(torch.zeros_like(t))
    e0 = prior.predict_noise(z, torch.zeros_like(t), s.ctx.cond.uncond_emb.expand(B, -1, -1), inp.cameras)
    x0_hat = (z - s0.view(-1, 1, 1, 1) * e0) / a0.view(-1, 1, 1, 1)
    at, st = prior.alpha_sigma(t)
    assert torch.allclose(x_t, at.view(-1, 1, 1, 1) * x0_hat + st.view(-1, 1, 1, 1) * e0, atol=1e-5)


def test_vsd_starts_at_the_prior():
    """The adapter starts at zero: eps_phi = eps_y, so VSD's first gradient is w (eps_cfg - eps_y)."""
    s = setup(VSD, guidance_scale=5.0)
    out, grad, inp = run(s)
    t, eps, alpha, sigma, x_t, e = reference_terms(s, inp)
    cfg = e["n"] + 5.0 * (e["y"] - e["n"])
    expected = (sigma**2).view(-1, 1, 1, 1) * (cfg - e["y"])
    assert torch.allclose(grad, 2 * expected / B, atol=1e-5, rtol=1e-4)
    (g,) = torch.autograd.grad(out.loss, s.score.adapter.net[-1].weight)
    assert g.abs().sum() > 0, "the adapter trains on its diffusion loss"


def test_dreamdpo_equal_scores_reduce_to_fallback():
    s = setup(DreamDPO, gap_threshold=1e9, fallback="sds", guidance_scale=3.0)
    sds = setup(SDS, guidance_scale=3.0)
    dpo_grad = run(s)[1]
    _, _, inp = run(sds)
    t, eps, alpha, sigma, x_t, e = reference_terms(s, inp, copies=2)
    scores = s.ctx.reward(
        s.ctx.prior.decode(s.ctx.prior.predict_x0(x_t, t, e["n"] + 3.0 * (e["y"] - e["n"]))), ["a sphere"] * 2 * B
    ).view(2, B)
    first = (scores[0] >= scores[1]).view(-1, 1, 1, 1)
    cfg = e["n"] + 3.0 * (e["y"] - e["n"])
    win = torch.where(first, cfg[:B] - eps[:B], cfg[B:] - eps[B:])
    expected = (sigma[:B] ** 2).view(-1, 1, 1, 1) * win
    assert torch.allclose(dpo_grad, 2 * expected / B, atol=1e-5, rtol=1e-4)


def test_dreamdpo_pair_gradient():
    s = setup(DreamDPO, gap_threshold=0.0, guidance_scale=3.0)
    grad = run(s)[1]
    _, _, inp = run(s)
    t, eps, alpha, sigma, x_t, e = reference_terms(s, inp, copies=2)
    cfg = e["n"] + 3.0 * (e["y"] - e["n"])
    scores = s.ctx.reward(s.ctx.prior.decode(s.ctx.prior.predict_x0(x_t, t, cfg)), ["a sphere"] * 2 * B).view(2, B)
    first = (scores[0] >= scores[1]).view(-1, 1, 1, 1)
    pair_1 = (cfg[:B] - eps[:B]) - (e["y"][B:] - eps[B:])
    pair_2 = (cfg[B:] - eps[B:]) - (e["y"][:B] - eps[:B])
    expected = (sigma[:B] ** 2).view(-1, 1, 1, 1) * torch.where(first, pair_1, pair_2)
    assert torch.allclose(grad, 2 * expected / B, atol=1e-5, rtol=1e-4)


def test_reward_sds_none_is_mean_of_sds_over_noises():
    s = setup(RewardSDS, num_noises=3, combine="none", guidance_scale=2.0)
    grad = run(s)[1]
    _, _, inp = run(s)
    t, eps, alpha, sigma, x_t, e = reference_terms(s, inp, copies=3)
    g = (sigma**2).view(-1, 1, 1, 1) * (e["n"] + 2.0 * (e["y"] - e["n"]) - eps)
    expected = g.view(3, B, *g.shape[1:]).mean(0)
    assert torch.allclose(grad, 2 * expected / B, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("combine", ["best", "min_max", "softmax"])
def test_reward_sds_weights(combine):
    s = setup(RewardSDS, num_noises=4, combine=combine, top_k=1)
    scores = torch.tensor([[0.1], [0.4], [0.2], [0.3]])
    w = s.noise_weights(scores, active=True)[:, 0]
    if combine == "best":
        assert w.tolist() == [0.0, 1.0, 0.0, 0.0]
    elif combine == "min_max":
        assert torch.allclose(w, torch.tensor([-0.1, 0.9, 0.0, 0.0]))
    else:
        assert torch.allclose(w, scores[:, 0].softmax(0)) and w.argmax() == 1
    assert torch.allclose(s.noise_weights(scores, active=False)[:, 0], torch.full((4,), 0.25))


def test_reward_terms_off_equal_sds():
    base = run(setup(SDS, guidance_scale=3.0))[1]
    dr = run(setup(DreamReward, guidance_scale=3.0, reward_weight=0.0))[1]
    nv = run(setup(NaiveReward, guidance_scale=3.0, reward_weight=0.0))[1]
    assert torch.allclose(base, dr, atol=1e-6) and torch.allclose(base, nv, atol=1e-6)


def test_naive_reward_render_space_adds_the_pixel_gradient():
    lam = 2.0
    base_out, base, inp = run(setup(SDS, guidance_scale=3.0))
    naive = run(setup(NaiveReward, guidance_scale=3.0, reward_weight=lam))[1]
    x = inp.images.detach().requires_grad_(True)
    (rgrad,) = torch.autograd.grad(tiny.tiny_reward()(x, ["a sphere"] * B).mean(), x)
    assert torch.allclose(naive, base - lam * rgrad, atol=1e-5)


def test_naive_reward_x0_space_reaches_the_render_through_the_prior():
    s = setup(NaiveReward, space="x0", reward_weight=1.0, guidance_scale=3.0)
    out, grad, _ = run(s)
    base = run(setup(SDS, guidance_scale=3.0))[1]
    assert torch.isfinite(grad).all() and not torch.allclose(grad, base)
    assert "reward" in out.logs


def test_dreamreward_window_and_hinge():
    s = setup(DreamReward, reward_start=0.5, reward_stop=0.8, threshold=10.0, reward_weight=1.0)
    assert "reward" not in run(s, step=4)[0].logs
    assert "reward" in run(s, step=5)[0].logs
    assert "reward" not in run(s, step=8)[0].logs
    off = setup(DreamReward, reward_start=0.0, threshold=-10.0)  # every reward above the hinge: no extra term
    assert torch.allclose(run(off)[1], run(setup(SDS))[1], atol=1e-6)


def test_vsd_lora_needs_a_network_prior():
    from psdkit.errors import PluginError

    with pytest.raises(
        PluginError,
        match=r"score_model: lora needs a prior that can carry a trainable adapter "
        r"\(TrainableAdapter\), not AnalyticPrior",
    ):
        setup(VSD, score_model="lora")


def test_ism_gradient_closed_form():
    """ISM's gradient: w(t) (eps_cfg(x_t) - eps(x_s, s)), with x_s, x_t from DDIM inversion, all by the
    reference posterior (two inversion steps to s, then s -> t)."""
    s = setup(ISM, delta_t=0.1, inv_steps=2, guidance_scale=3.0, weighting="sqrt_snr_inv", t_min=0.3, t_max=0.6)
    out, grad, inp = run(s)
    prior, cond = s.ctx.prior, s.ctx.cond
    z = prior.encode_images(inp.images.detach())
    t, _ = draw_noise(torch.Generator().manual_seed(3), tuple(z.shape), 0.3, 0.6, prior.num_train_timesteps)
    s_t = (t - round(0.1 * 999)).clamp_min(0)
    e_inv, e_y, e_b = cond.uncond_emb.expand(B, -1, -1), cond.prompt_emb[[0, 0]], cond.negative_emb.expand(B, -1, -1)

    def ddim(x, a, b, eps):
        (aa, sa), (ab, sb) = prior.alpha_sigma(a), prior.alpha_sigma(b)
        x0 = (x - sa.view(-1, 1, 1, 1) * eps) / aa.view(-1, 1, 1, 1)
        return ab.view(-1, 1, 1, 1) * x0 + sb.view(-1, 1, 1, 1) * eps

    grid = [(s_t.float() * k / 2).round().long() for k in range(3)]
    x = z
    for a, b in zip(grid, grid[1:]):
        x = ddim(x, a, b, posterior_eps(prior, x, a, e_inv, inp.cameras))
    eps_s = posterior_eps(prior, x, s_t, e_inv, inp.cameras)
    x_t = ddim(x, s_t, t, eps_s)
    e_yt, e_bt = posterior_eps(prior, x_t, t, e_y, inp.cameras), posterior_eps(prior, x_t, t, e_b, inp.cameras)
    alpha, sigma = prior.alpha_sigma(t)
    expected = (sigma / alpha).view(-1, 1, 1, 1) * (e_bt + 3.0 * (e_yt - e_bt) - eps_s)
    # float32 round-off compounds through three DDIM steps that each divide by alpha, so the bound is
    # relative to the gradient's scale (measured: max error 3.4e-4 of max |grad|; a wrong formula is O(1))
    diff = (grad - 2 * expected / B).abs()
    assert diff.max() <= 1e-3 * grad.abs().max()
    assert diff.median() <= 1e-5 * grad.abs().max()
