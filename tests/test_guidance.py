"""SDS and PSD gradients against the closed form on the analytic prior, and limiting cases."""

from __future__ import annotations

import dataclasses
import re

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
    psd.neg_offset.copy_((e_n - psd.neg_init_emb) / psd.neg_unit)


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
        return build_config(PSD.Config, {"reward_estimate": {"t_max": 1.0}}, "")


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
    psd = setup(PSD, guidance_scale=6.0, negative={"init": "negative", "start": 1.0, "stop": 1.0})
    sds = setup(SDS, guidance_scale=6.0, use_negative_prompt=True)
    assert torch.allclose(run(psd)[1], run(sds)[1], atol=1e-6)


def test_psd_p2_without_preference_equals_sds_with_empty_baseline():
    psd = setup(PSD, form="p2", preference_scale=0.0, guidance_scale=4.0, negative={"start": 1.0, "stop": 1.0})
    sds = setup(SDS, guidance_scale=4.0, use_negative_prompt=False)
    assert torch.allclose(run(psd)[1], run(sds)[1], atol=1e-6)


def test_psd_teacher_uses_learned_negative():
    """After moving e_n, the 3D gradient matches the closed form with the new e_n."""
    psd = setup(PSD, guidance_scale=3.0, negative={"start": 1.0, "stop": 1.0})
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
    psd = setup(PSD, guidance_scale=10.0, neg_loss="reward", reward_estimate={"t_max": 1.0}, t_min=0.9, t_max=0.98)
    out, _, inp = run(psd)
    (g,) = torch.autograd.grad(out.loss, psd.neg_offset)
    assert g.abs().sum() > 0
    before = out.logs["reward"]
    with torch.no_grad():
        psd.neg_offset -= 1e-2 * g / g.norm()
    after = run(psd)[0].logs["reward"]  # same seed: same t and noise
    assert after > before


def test_psd_reward_gate_blocks_high_noise():
    psd = setup(PSD, neg_loss="reward", reward_estimate={"t_max": 0.0}, t_min=0.5, t_max=0.98)
    out = run(psd)[0]
    (g,) = torch.autograd.grad(out.loss, psd.neg_offset, allow_unused=True)
    assert g is None or g.abs().sum() == 0
    assert out.logs["neg_active"] == 0


def test_psd_update_window():
    psd = setup(PSD, negative={"start": 0.2, "stop": 0.5, "every": 2})
    assert [psd.updating(s, 10) for s in range(10)] == [s in (2, 4) for s in range(10)]


def test_psd_pairwise_variant():
    psd = setup(PSD, neg_loss="pairwise", reward_estimate={"t_max": 1.0}, t_min=0.8)
    out, grad, _ = run(psd)
    (g,) = torch.autograd.grad(out.loss, psd.neg_offset)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.isfinite(grad).all() and "pair_margin" in out.logs


def test_psd_reward_scaling_is_bounded():
    psd = setup(PSD, form="p2", reward_scaling={"range": (0.5, 1.5)})
    for step in range(3):
        out, grad, _ = run(psd, seed=step, step=step)
        assert torch.isfinite(grad).all()
    stats = psd.reward_stats
    assert stats.count.item() == 3 * B and stats.var.item() > 0  # count: rewards seen (B per step)


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
    psd = setup(PSD, dataclasses.replace(ctx, reward=_Scaled(ctx.reward, k)), neg_loss="reward",
                reward_estimate={"t_max": 1.0}, **config)  # fmt: skip
    built = build_optimizer({"guidance": psd.param_groups()}, OptimConfig())
    opt, sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
    for step in range(steps):
        opt.zero_grad()
        run(psd, seed=step, step=step, max_steps=100)[0].loss.backward()
        opt.step()
        sched.step()
    return psd.neg_offset.detach().clone()


def test_psd_decoupled_anchor_is_free_of_the_rewards_scale():
    """anchor_decay: e_n's offset does not depend on the reward's units (the penalty anchor's did: 3.7x for a
    reward 1000x larger, before it was retired), and it holds e_n back."""
    decay = {"negative": {"lr": 0.08, "anchor_decay": 7.5}}
    decayed, large = _offset_after_training(1.0, **decay), _offset_after_training(1000.0, **decay)
    assert decayed.norm() > 0
    assert torch.allclose(decayed, large, rtol=1e-3, atol=1e-6), (decayed - large).abs().max()
    free = _offset_after_training(1.0, negative={"lr": 0.08, "anchor_decay": 0.0})
    assert free.norm() > 2 * decayed.norm(), "the decay holds e_n back"


def test_psd_decoupled_anchor_must_not_overshoot():
    with pytest.raises(RecipeError, match="anchor_decay"):
        build_config(PSD.Config, {"negative": {"lr": 0.1, "anchor_decay": 20.0}}, "guidance.config")


def test_psd_refuses_checkpoints_from_before_the_relative_offset():
    """A checkpoint that stored e_n's offset in absolute units (``neg_delta``) gets a clear error, not a silent
    reinterpretation."""
    psd = setup(PSD)
    old = {k: v for k, v in psd.state_dict().items() if k != "neg_offset"} | {"neg_delta": psd.neg_offset.detach()}
    with pytest.raises(RuntimeError, match="before the replay pool"):
        psd.load_state_dict(old)


def test_retired_and_renamed_keys_name_what_replaced_them():
    cases = {
        "neg_lr": (0.1, "renamed: set guidance.config.negative.lr"),
        "bank_copies": (3, "renamed: set guidance.config.pool.copies"),
        "reward_t_max": (1.0, "renamed: set guidance.config.reward_estimate.t_max"),
        "anchor_weight": (1.0, "retired: the penalty anchor; guidance.config.negative.anchor_decay"),
        "prompt_guard": (1.0, "retired: the prompt guard"),
        "neg_loss": ("bank", "renamed: set guidance.config.neg_loss: pool"),
        "reward_scaling": (True, "renamed: set guidance.config.reward_scaling: {}"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(RecipeError, match="^" + re.escape(f"guidance.config.{key}: {message}")):
            build_config(PSD.Config, {key: value}, "guidance.config")
