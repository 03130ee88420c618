"""PSD's replay pool (neg_loss: pool): the prior's own answers, drawn once and ranked by the reward, teach e_n."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from psdkit_plugins.guidance.psd import PSD
from test_guidance import run, setup

from psdkit.errors import PsdkitWarning
from psdkit.ops.pool import PoolSpec, ReplayPool, pool_loss
from psdkit.testing import tiny

R = 16


def _pool(ctx, reward=None, size: int = 4, copies: int = 4, steps: int = 10, draw_batch: int = 16) -> ReplayPool:
    spec = PoolSpec(size, copies, steps, 7.5, draw_batch)
    pool = ReplayPool(spec, len(ctx.cond.labels), ctx.prior.views_per_group())
    pool.draw(list(range(pool.entries)), ctx.prior, reward or ctx.reward, ctx.cond, ctx.views)
    return pool


def _nearest(ctx, pool) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(nearest object of each sample, its reward, its entry), rows copies major."""
    x0, cams, _, reward = pool.rows(torch.arange(pool.entries))
    refs = ctx.prior.references(cams.resized(R, R))
    dist = torch.stack([((ctx.prior.decode(x0) - r) ** 2).flatten(1).mean(1) for r in refs.values()])
    return (
        [list(refs)[i] for i in dist.argmin(0)],
        reward.flatten(),
        torch.arange(pool.entries).repeat(pool.spec.copies),
    )


class _Negated(torch.nn.Module):
    """The reward with its preference turned around, through a monotone map (``-exp(k R)``)."""

    def __init__(self, reward: torch.nn.Module, k: float = 1.0) -> None:
        super().__init__()
        self.reward, self.k = reward, k

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return -torch.exp(self.k * self.reward(images, prompts))


def test_pool_holds_the_prompts_answers_ranked_by_the_reward():
    ctx = tiny.tiny_context("a sphere", view_dependent=True, resolution=R)
    pool = _pool(ctx)
    assert pool.entries == 3 * 4 and pool.view_index[:, 0].tolist() == [lab for lab in range(3) for _ in range(4)]
    names, reward, entry = _nearest(ctx, pool)
    assert set(names) == {"red-sphere", "blue-sphere"}, names
    red = torch.tensor([n == "red-sphere" for n in names])
    mixed = 0
    for e in range(pool.entries):  # at one camera, the analytic reward prefers the red sphere
        here = entry == e
        if red[here].any() and (~red[here]).any():
            assert reward[here & red].min() > reward[here & ~red].max()
            mixed += 1
    assert mixed >= pool.entries // 2, "most entries hold both answers"
    x0, _, _, _ = pool.rows(torch.arange(pool.entries))
    assert torch.equal(reward, ctx.reward(ctx.prior.decode(x0), [ctx.cond.base_prompt] * len(x0)))


def test_pool_does_not_depend_on_how_it_is_batched():
    """Each slot's camera and noise come from its own generator: drawing 1 or 64 at a time gives the same pool,
    and so does a pool whose slots are drawn in another order (every rank draws the same pool)."""
    ctx = tiny.tiny_context("a sphere", view_dependent=True, resolution=R)
    a, b = _pool(ctx, draw_batch=16), _pool(ctx, draw_batch=1)
    c = ReplayPool(a.spec, a.labels, a.group)
    c.draw(list(reversed(range(c.entries))), ctx.prior, ctx.reward, ctx.cond, ctx.views)
    for other in (b, c):
        assert torch.allclose(a.x0, other.x0, atol=1e-6)
        assert torch.equal(a.cameras["c2w"], other.cameras["c2w"]) and torch.equal(a.view_index, other.view_index)


def _weights_after(ctx, reward, updates: int = 40) -> dict[str, float]:
    """e_n's mixture weights after ``updates`` Adam steps on the pool loss alone, from the empty prompt."""
    pool = _pool(ctx, reward)
    delta = torch.zeros_like(ctx.cond.uncond_emb, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=0.02)
    for step in range(updates):
        gen = torch.Generator().manual_seed(step)
        slots = pool.pick(gen, 4)
        loss, weight, _ = pool_loss(ctx.prior, pool, slots, ctx.cond, ctx.cond.uncond_emb + delta, 3000.0,
                                    (0.02, 0.98), gen)  # fmt: skip
        opt.zero_grad()
        ((loss * weight).sum() / weight.sum()).backward()
        opt.step()
    w = ctx.prior.mixture_weights(ctx.cond.uncond_emb + delta.detach())[0]
    return {o.name: float(v) for o, v in zip(ctx.prior.objects, w)}


def test_pool_loss_moves_e_n_to_the_dispreferred_answer():
    """e_n learns the answer the reward ranks lower, whichever it is: the CFG teacher then pushes away from it."""
    ctx = tiny.tiny_context("a sphere", resolution=R)
    w = _weights_after(ctx, ctx.reward)
    assert w["blue-sphere"] > w["red-sphere"], w
    w = _weights_after(ctx, _Negated(ctx.reward))
    assert w["red-sphere"] > w["blue-sphere"], w


def test_pool_loss_reads_only_the_rewards_ranking():
    """A monotone map of the reward (any units, any curvature) gives the same loss and gradient."""
    ctx = tiny.tiny_context("a sphere", resolution=R)
    e_n = ctx.cond.uncond_emb.clone().requires_grad_(True)
    grads = []
    for reward in (_Negated(ctx.reward, 1.0), _Negated(ctx.reward, 50.0)):
        pool = _pool(ctx, reward, copies=3)
        gen = torch.Generator().manual_seed(1)
        slots = pool.pick(gen, 2)
        loss, weight, _ = pool_loss(ctx.prior, pool, slots, ctx.cond, e_n, 3000.0, (0.02, 0.98), gen)
        grads.append(torch.autograd.grad((loss * weight).sum(), e_n)[0])
    assert grads[0].abs().sum() > 0
    assert torch.equal(grads[0], grads[1])


class _Thresholded(torch.nn.Module):
    """A reward without a gradient: the share of pixels redder than they are blue."""

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return (images[:, 0] > images[:, 2] + 0.1).float().mean((1, 2))


def test_psd_pool_trains_e_n_with_a_reward_that_has_no_gradient():
    ctx = dataclasses.replace(tiny.tiny_context("a sphere", resolution=R), reward=_Thresholded())
    psd = setup(PSD, ctx, pool={"size": 4, "copies": 3, "steps": 5})
    out, grad, _ = run(psd)
    (g,) = torch.autograd.grad(out.loss, psd.neg_offset)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.isfinite(grad).all()
    assert out.logs["pool_pairs"] > 0


class _NaNForBlue(torch.nn.Module):
    """The analytic reward, NaN for bluish images."""

    def __init__(self, reward: torch.nn.Module) -> None:
        super().__init__()
        self.reward = reward

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        r = self.reward(images, prompts)
        blue = images[:, 2].mean((1, 2)) > images[:, 0].mean((1, 2))
        return torch.where(blue, torch.nan, r)


def test_non_finite_rewards_leave_the_ranking_with_one_warning_and_e_n_stays_finite():
    ctx = tiny.tiny_context("a sphere", resolution=R)
    ctx = dataclasses.replace(ctx, reward=_NaNForBlue(ctx.reward))
    psd = setup(PSD, ctx, pool={"size": 4, "steps": 10})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        psd.prepare()
    bad = [w for w in seen if issubclass(w.category, PsdkitWarning) and "non-finite reward" in str(w.message)]
    assert len(bad) == 1, [str(w.message) for w in seen]
    pool = psd.learner.pool
    assert 0 < int(torch.isnan(pool.reward).sum()) < pool.reward.numel()  # some samples dropped, the rest ranked
    opt = torch.optim.Adam([psd.neg_offset], lr=0.1)
    for step in range(5):
        out, _, _ = run(psd, seed=step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        assert torch.isfinite(psd.neg_offset).all() and torch.isfinite(out.loss)


class _Constant(torch.nn.Module):
    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return images.new_zeros(len(images))


def test_a_pool_whose_rewards_all_tie_updates_nothing_and_says_so(capsys):
    ctx = dataclasses.replace(tiny.tiny_context("a sphere", resolution=R), reward=_Constant())
    psd = setup(PSD, ctx, pool={"size": 4, "steps": 3})
    psd.prepare()
    assert "every reward ties" in capsys.readouterr().err
    assert not psd.updating(0, 10)
    out, _, _ = run(psd)
    assert "pool_pairs" not in out.logs  # no e_n loss this step
    (g,) = torch.autograd.grad(out.loss, psd.neg_offset, allow_unused=True)
    assert g is None or g.abs().sum() == 0


def test_refresh_redraws_the_oldest_share_with_fresh_samples():
    ctx = tiny.tiny_context("a sphere", resolution=R)
    psd = setup(PSD, ctx, pool={"size": 8, "steps": 5, "refresh_every": 2, "refresh_share": 0.25})
    psd.prepare()
    pool = psd.learner.pool
    before = pool.x0.clone()
    for step in range(1, 5):  # refreshes at steps 2 and 4: slots 0-1, then 2-3
        psd.learner.maintain(step, True)
    assert pool.generation.tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and pool.refreshed == 2
    changed = (pool.x0 - before).flatten(1).abs().amax(1) > 0
    assert changed.tolist() == [True] * 4 + [False] * 4
    psd.learner.maintain(6, False)  # outside e_n's update window: nothing
    assert pool.refreshed == 2


def test_pool_resumes_from_the_checkpoint_bit_for_bit():
    ctx = tiny.tiny_context("a sphere", view_dependent=True, resolution=R)
    a = setup(PSD, ctx, pool={"size": 4, "steps": 3})
    a.prepare()
    state = a.state_dict()
    b = setup(PSD, ctx, pool={"size": 4, "steps": 3})
    b.load_state_dict(state)
    assert b.learner.pool.ready and b.learner.draw_seconds is None  # loaded, not drawn
    for key in ("x0", "reward", "view_index"):
        assert torch.equal(getattr(a.learner.pool, key), getattr(b.learner.pool, key))
    out_a, grad_a, _ = run(a)
    out_b, grad_b, _ = run(b)
    assert torch.equal(out_a.loss, out_b.loss) and torch.equal(grad_a, grad_b)
    c = setup(PSD, ctx, pool={"size": 5, "steps": 3})
    with pytest.raises(ValueError, match="pool.size"):
        c.load_state_dict(state)
