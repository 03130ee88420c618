"""SDS and PSD gradients against the closed form on the analytic prior, and limiting cases."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from analytic_reference import posterior_eps
from psdkit_plugins.guidance.psd import PSD
from psdkit_plugins.guidance.sds import SDS

from psdkit.config.recipe_schema import OptimConfig
from psdkit.config.schema import RecipeError, build_config
from psdkit.contracts import GuidanceInput
from psdkit.ops.distill import sample_timesteps
from psdkit.optim import build_optimizer
from psdkit.testing import tiny
from psdkit.testing.conformance import GuidanceConformance

B, R = 2, 16


def images() -> torch.Tensor:
    return torch.rand(B, 3, R, R, generator=torch.Generator().manual_seed(0), requires_grad=True)


def run(strategy, seed=7, step=0, max_steps=10):
    """(loss, d loss / d images, GuidanceInput) for one step."""
    x = images()
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


def setup(cls, ctx=None, **config):
    s = cls(build_config(cls.Config, config, "guidance.config"))
    s.setup(ctx or tiny.tiny_context("a sphere", negative="a blue cube"))
    return s


def set_negative(psd: PSD, e_n: torch.Tensor) -> None:
    """Put PSD's learnable negative embedding at ``e_n`` [1, L, D] (its offset from the start)."""
    psd.neg_delta.copy_(e_n - psd.neg_init_emb)


def replay_noise(seed, t_lo, t_hi, T, shape, copies=1):
    """The (t, eps) a strategy draws from generator(seed): timesteps first, then noise."""
    gen = torch.Generator().manual_seed(seed)
    t = sample_timesteps(B, t_lo, t_hi, T, gen).repeat(copies)
    eps = torch.randn((copies * shape[0], *shape[1:]), generator=gen)
    return t, eps


class TestSDSConformance(GuidanceConformance):
    plugin_cls = SDS


class TestPSDConformance(GuidanceConformance):
    plugin_cls = PSD

    def tiny_config(self):
        return build_config(PSD.Config, {"reward_t_max": 1.0}, "")


@pytest.mark.parametrize("weighting", ["sds", "uniform", "sqrt_snr_inv"])
def test_sds_gradient_matches_closed_form(weighting):
    s = setup(SDS, guidance_scale=5.0, weighting=weighting)
    out, grad, inp = run(s)
    prior, cond = s.ctx.prior, s.ctx.cond
    z = prior.encode_images(inp.images.detach())
    t, eps = replay_noise(7, 0.02, 0.98, prior.num_train_timesteps, z.shape)
    alpha, sigma = prior.alpha_sigma(t)
    x_t = alpha.view(-1, 1, 1, 1) * z + sigma.view(-1, 1, 1, 1) * eps
    e_y, e_n = cond.prompt_emb[[0, 0]], cond.negative_emb.expand(B, -1, -1)
    eps_y = posterior_eps(prior, x_t, t, e_y, inp.cameras)
    eps_n = posterior_eps(prior, x_t, t, e_n, inp.cameras)
    w = {"sds": sigma**2, "uniform": torch.ones_like(sigma), "sqrt_snr_inv": sigma / alpha}[weighting]
    expected_dz = w.view(-1, 1, 1, 1) * (eps_n + 5.0 * (eps_y - eps_n) - eps) / B
    # z = 2 * images - 1 at the prior's resolution, so d/d images = 2 * d/dz
    assert torch.allclose(grad, 2 * expected_dz, atol=1e-5, rtol=1e-4)


def test_sds_uses_empty_prompt_when_asked():
    a = run(setup(SDS, use_negative_prompt=False))[1]
    ctx = tiny.tiny_context("a sphere", negative="")
    b = run(setup(SDS, ctx, use_negative_prompt=True))[1]
    assert torch.allclose(a, b, atol=1e-6)


def test_sds_batched_equals_separate_calls():
    a = run(setup(SDS, batch_conditionings=True))[1]
    b = run(setup(SDS, batch_conditionings=False))[1]
    assert torch.allclose(a, b, atol=1e-6)


def test_psd_with_frozen_negative_equals_sds_with_that_negative():
    """P1 with e_n never updated is SDS whose CFG baseline is e_n's initial prompt."""
    psd = setup(PSD, guidance_scale=6.0, neg_init="negative", update_start=1.0, update_stop=1.0)
    sds = setup(SDS, guidance_scale=6.0, use_negative_prompt=True)
    assert torch.allclose(run(psd)[1], run(sds)[1], atol=1e-6)


def test_psd_p2_without_preference_equals_sds_with_empty_baseline():
    psd = setup(PSD, form="p2", preference_scale=0.0, guidance_scale=4.0, update_start=1.0, update_stop=1.0)
    sds = setup(SDS, guidance_scale=4.0, use_negative_prompt=False)
    assert torch.allclose(run(psd)[1], run(sds)[1], atol=1e-6)


def test_psd_teacher_uses_learned_negative():
    """After moving e_n, the 3D gradient matches the closed form with the new e_n."""
    psd = setup(PSD, guidance_scale=3.0, update_start=1.0, update_stop=1.0)
    with torch.no_grad():
        set_negative(psd, psd.ctx.prior.encode_text(["a red ball"]))
    out, grad, inp = run(psd)
    prior = psd.ctx.prior
    z = prior.encode_images(inp.images.detach())
    t, eps = replay_noise(7, 0.02, 0.98, prior.num_train_timesteps, z.shape)
    alpha, sigma = prior.alpha_sigma(t)
    x_t = alpha.view(-1, 1, 1, 1) * z + sigma.view(-1, 1, 1, 1) * eps
    eps_y = posterior_eps(prior, x_t, t, psd.ctx.cond.prompt_emb[[0, 0]], inp.cameras)
    eps_n = posterior_eps(prior, x_t, t, psd.neg_emb.detach().expand(B, -1, -1), inp.cameras)
    expected = 2 * (sigma**2).view(-1, 1, 1, 1) * (eps_n + 3.0 * (eps_y - eps_n) - eps) / B
    assert torch.allclose(grad, expected, atol=1e-5, rtol=1e-4)


def test_psd_reward_step_raises_the_reward():
    """Variant A: a small step of e_n against its gradient raises the reward of the same x0 estimate."""
    psd = setup(PSD, guidance_scale=10.0, reward_t_max=1.0, t_min=0.9, t_max=0.98)
    out, _, inp = run(psd)
    (g,) = torch.autograd.grad(out.loss, psd.neg_delta)
    assert g.abs().sum() > 0
    before = out.logs["reward"]
    with torch.no_grad():
        psd.neg_delta -= 1e-2 * g / g.norm()
    after = run(psd)[0].logs["reward"]  # same seed: same t and noise
    assert after > before


def test_psd_reward_gate_blocks_high_noise():
    psd = setup(PSD, reward_t_max=0.0, t_min=0.5, t_max=0.98)
    out = run(psd)[0]
    (g,) = torch.autograd.grad(out.loss, psd.neg_delta, allow_unused=True)
    assert g is None or g.abs().sum() == 0
    assert out.logs["neg_active"] == 0


def test_psd_update_window():
    psd = setup(PSD, update_start=0.2, update_stop=0.5, neg_every=2)
    assert [psd.updating(s, 10) for s in range(10)] == [s in (2, 4) for s in range(10)]


def test_psd_pairwise_variant():
    psd = setup(PSD, neg_loss="pairwise", reward_t_max=1.0, t_min=0.8)
    out, grad, _ = run(psd)
    (g,) = torch.autograd.grad(out.loss, psd.neg_delta)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.isfinite(grad).all() and "pair_margin" in out.logs


def test_psd_reward_scaling_is_bounded():
    psd = setup(PSD, form="p2", reward_scaling=True, scaling_range=(0.5, 1.5))
    for step in range(3):
        out, grad, _ = run(psd, seed=step, step=step)
        assert torch.isfinite(grad).all()
    stats = psd.reward_stats
    assert stats.count.item() == 3 * B and stats.var.item() > 0  # count: rewards seen (B per step)


def test_psd_trust_region_measures_how_far_e_n_moved_the_prediction():
    """At e_n's start the prediction has not moved: D = 0 and no gradient beyond the plain loss's, with a non-empty
    negative prompt too (then eps_n0 is its own prior call). e_n set to the prompt moves the prediction by the
    prompt's whole guidance, D = 1 (up to the running normalizer's other batches); a step against the trust
    region's gradient lowers D, and a radius above D costs nothing."""
    kw = dict(guidance_scale=10.0, reward_t_max=1.0, t_min=0.6, t_max=0.98, reward_weight=1e-9)
    for neg_init in ("uncond", "negative"):
        trust = setup(PSD, teacher_trust=1.0, neg_init=neg_init, **kw)
        out, _, _ = run(trust)
        assert out.logs["teacher_moved"] == 0.0
        plain = setup(PSD, neg_init=neg_init, **kw)
        (g_trust,) = torch.autograd.grad(out.loss, trust.neg_delta)
        (g_plain,) = torch.autograd.grad(run(plain)[0].loss, plain.neg_delta)
        assert torch.allclose(g_trust, g_plain, atol=1e-9), neg_init
    psd = setup(PSD, teacher_trust=1.0, neg_init="uncond", **kw)
    with torch.no_grad():
        set_negative(psd, psd.ctx.cond.prompt_emb[:1])
    out, _, _ = run(psd)
    assert out.logs["teacher_moved"] == pytest.approx(1.0, rel=1e-4), "one batch: the normalizer is its own energy"
    (g,) = torch.autograd.grad(out.loss, psd.neg_delta)
    with torch.no_grad():
        psd.neg_delta -= 0.05 * g / g.norm()
    assert run(psd)[0].logs["teacher_moved"] < out.logs["teacher_moved"]
    loose = setup(PSD, teacher_trust=1.0, teacher_trust_radius=2.0, neg_init="uncond", **kw)
    with torch.no_grad():
        set_negative(loose, loose.ctx.cond.prompt_emb[:1])
    bare = setup(PSD, neg_init="uncond", **kw)
    with torch.no_grad():
        set_negative(bare, bare.ctx.cond.prompt_emb[:1])
    (g_loose,) = torch.autograd.grad(run(loose)[0].loss, loose.neg_delta)
    (g_bare,) = torch.autograd.grad(run(bare)[0].loss, bare.neg_delta)
    assert torch.allclose(g_loose, g_bare, atol=1e-9), "inside the radius"


def test_psd_prompt_guard_restores_the_prompts_guidance():
    """e_n = the prompt cancels the prompt's CFG direction: with keep=1 the guard reports all of it taken, and a
    step against the guard's gradient gives some back; at e_n's start nothing is taken and the guard adds no
    gradient. With keep=0 only a reversed direction counts (e_n beyond the prompt), not a cancelled one."""
    kw = dict(guidance_scale=10.0, reward_t_max=1.0, t_min=0.6, t_max=0.98, reward_weight=1e-9, neg_init="uncond")
    psd = setup(PSD, prompt_guard=1.0, prompt_guard_keep=1.0, **kw)
    out, _, _ = run(psd)
    assert out.logs["prompt_taken"] == 0.0
    (g_start,) = torch.autograd.grad(out.loss, psd.neg_delta)
    plain = setup(PSD, **kw)
    (g_plain,) = torch.autograd.grad(run(plain)[0].loss, plain.neg_delta)
    assert torch.allclose(g_start, g_plain, atol=1e-9), "no penalty, no gradient, while the prompt is intact"
    with torch.no_grad():
        set_negative(psd, psd.ctx.cond.prompt_emb[:1])
    out, _, _ = run(psd)
    assert out.logs["prompt_taken"] == pytest.approx(1.0, abs=1e-4)
    (g,) = torch.autograd.grad(out.loss, psd.neg_delta)
    with torch.no_grad():
        psd.neg_delta -= 0.05 * g / g.norm()
    assert run(psd)[0].logs["prompt_taken"] < out.logs["prompt_taken"]
    lenient = setup(PSD, prompt_guard=1.0, prompt_guard_keep=0.0, **kw)
    with torch.no_grad():
        set_negative(lenient, lenient.ctx.cond.prompt_emb[:1])
    assert run(lenient)[0].logs["prompt_taken"] == 0.0, "cancelled, not reversed"
    with torch.no_grad():
        set_negative(lenient, 3.0 * lenient.ctx.cond.prompt_emb[:1])
    assert run(lenient)[0].logs["prompt_taken"] > 0.0, "e_n beyond the prompt turns its guidance around"


class _Scaled(torch.nn.Module):
    """A reward in other units: ``k`` times the wrapped one."""

    def __init__(self, reward: torch.nn.Module, k: float) -> None:
        super().__init__()
        self.reward, self.k = reward, k

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.k * self.reward(images, prompts)


def _offset_after_training(k: float, steps: int = 30, **config) -> torch.Tensor:
    """e_n - e_n(0) after ``steps`` optimizer steps of PSD under the analytic reward times ``k``."""
    ctx = tiny.tiny_context("a sphere")
    psd = setup(PSD, dataclasses.replace(ctx, reward=_Scaled(ctx.reward, k)), reward_t_max=1.0, **config)
    built = build_optimizer({"guidance": psd.param_groups()}, OptimConfig())
    opt, sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
    for step in range(steps):
        opt.zero_grad()
        run(psd, seed=step, step=step, max_steps=100)[0].loss.backward()
        opt.step()
        sched.step()
    return psd.neg_delta.detach().clone()


def test_psd_decoupled_anchor_is_free_of_the_rewards_scale():
    """anchor_decay: e_n's offset does not depend on the reward's units; the penalty anchor's does."""
    decay = {"neg_lr": 0.02, "anchor_decay": 30.0}
    decayed, large = _offset_after_training(1.0, **decay), _offset_after_training(1000.0, **decay)
    assert decayed.norm() > 0
    assert torch.allclose(decayed, large, rtol=1e-3, atol=1e-6), (decayed - large).abs().max()
    penalty = {"neg_lr": 0.02, "anchor_weight": 1.0}
    small, large = _offset_after_training(1.0, **penalty), _offset_after_training(1000.0, **penalty)
    assert large.norm() > 3 * small.norm(), "the penalty's pull weakens as the reward's gradient grows"
    free = _offset_after_training(1.0, neg_lr=0.02)
    assert free.norm() > 2 * decayed.norm(), "the decay holds e_n back"


def test_psd_decoupled_anchor_must_not_overshoot():
    with pytest.raises(RecipeError, match="anchor_decay"):
        build_config(PSD.Config, {"neg_lr": 0.1, "anchor_decay": 20.0}, "guidance.config")


def test_psd_reads_checkpoints_that_stored_e_n_itself():
    """Checkpoints from before the offset parametrization (key ``neg_emb``) load into the same e_n."""
    psd = setup(PSD)
    e_n = psd.ctx.prior.encode_text(["a red ball"])
    old = {k: v for k, v in psd.state_dict().items() if k != "neg_delta"} | {"neg_emb": e_n}
    psd.load_state_dict(old)
    assert torch.allclose(psd.neg_emb, e_n)
