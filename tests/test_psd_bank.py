"""PSD's sample bank (neg_loss: bank): the prior's own answers, ranked by the reward, teach e_n."""

from __future__ import annotations

import dataclasses

import torch
from psdkit_plugins.guidance.psd import PSD
from test_guidance import run, setup

from psdkit.ops.bank import BankDraw, bank_loss, sample_bank
from psdkit.testing import tiny

VIEWS, R = 4, 16


def _draw(seed: int = 0, views: slice = slice(0, VIEWS)) -> BankDraw:
    cams = tiny.tiny_cameras(VIEWS, R)
    part = dataclasses.replace(
        cams, **{f: getattr(cams, f)[views] for f in ("c2w", "fov_y", "elevation", "azimuth", "distance")}
    )
    n = len(part)
    return BankDraw(part, torch.zeros(n, dtype=torch.long), (n, 3, R, R), torch.Generator().manual_seed(seed),
                    views.start, VIEWS)  # fmt: skip


def _nearest(ctx, bank) -> list[str]:
    refs = ctx.prior.references(bank.cameras.resized(R, R))
    dist = torch.stack([((ctx.prior.decode(bank.x0) - r) ** 2).flatten(1).mean(1) for r in refs.values()])
    return [list(refs)[i] for i in dist.argmin(0)]


class _Negated(torch.nn.Module):
    """The reward with its preference turned around, through a monotone map (``-exp(k R)``)."""

    def __init__(self, reward: torch.nn.Module, k: float = 1.0) -> None:
        super().__init__()
        self.reward, self.k = reward, k

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return -torch.exp(self.k * self.reward(images, prompts))


def test_bank_holds_the_prompts_answers_ranked_by_the_reward():
    ctx = tiny.tiny_context("a sphere")
    bank = sample_bank(ctx.prior, ctx.reward, ctx.cond, _draw(), copies=6, steps=25, scale=7.5)
    names = _nearest(ctx, bank)
    assert set(names) == {"red-sphere", "blue-sphere"}, names
    red = torch.tensor([n == "red-sphere" for n in names])
    assert bank.reward[red].min() > bank.reward[~red].max()  # the analytic reward prefers red
    decoded = ctx.reward(ctx.prior.decode(bank.x0), [ctx.cond.base_prompt] * len(bank.x0))
    assert torch.equal(bank.reward, decoded)


def test_bank_rows_do_not_depend_on_the_rank_split():
    """Each rank draws its slice of the global batch's bank: two halves are the whole bank's rows."""
    ctx = tiny.tiny_context("a sphere")
    whole = sample_bank(ctx.prior, ctx.reward, ctx.cond, _draw(), copies=2, steps=5, scale=7.5)
    for half in (slice(0, 2), slice(2, 4)):
        part = sample_bank(ctx.prior, ctx.reward, ctx.cond, _draw(views=half), copies=2, steps=5, scale=7.5)
        rows = [c * VIEWS + b for c in range(2) for b in range(half.start, half.stop)]
        assert torch.allclose(part.x0, whole.x0[rows], atol=1e-6)


def _weights_after(ctx, reward, steps: int = 40) -> dict[str, float]:
    """e_n's mixture weights after ``steps`` Adam steps on the bank loss alone, from the empty prompt."""
    delta = torch.zeros_like(ctx.cond.uncond_emb, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=0.02)
    for step in range(steps):
        bank = sample_bank(ctx.prior, reward, ctx.cond, _draw(step), copies=4, steps=10, scale=7.5)
        loss, weight, _ = bank_loss(ctx.prior, bank, ctx.cond, ctx.cond.uncond_emb + delta, 3000.0,
                                    (0.02, 0.98), _draw(1000 + step))  # fmt: skip
        opt.zero_grad()
        ((loss * weight).sum() / weight.sum()).backward()
        opt.step()
    w = ctx.prior.mixture_weights(ctx.cond.uncond_emb + delta.detach())[0]
    return {o.name: float(v) for o, v in zip(ctx.prior.objects, w)}


def test_bank_loss_moves_e_n_to_the_dispreferred_answer():
    """e_n learns the answer the reward ranks lower, whichever it is: the CFG teacher then pushes away from it."""
    ctx = tiny.tiny_context("a sphere")
    w = _weights_after(ctx, ctx.reward)
    assert w["blue-sphere"] > w["red-sphere"], w
    w = _weights_after(ctx, _Negated(ctx.reward))
    assert w["red-sphere"] > w["blue-sphere"], w


def test_bank_loss_reads_only_the_rewards_ranking():
    """A monotone map of the reward (any units, any curvature) gives the same loss and gradient."""
    ctx = tiny.tiny_context("a sphere")
    e_n = ctx.cond.uncond_emb.clone().requires_grad_(True)
    grads = []
    for reward in (_Negated(ctx.reward, 1.0), _Negated(ctx.reward, 50.0)):
        bank = sample_bank(ctx.prior, reward, ctx.cond, _draw(), copies=3, steps=5, scale=7.5)
        loss, weight, _ = bank_loss(ctx.prior, bank, ctx.cond, e_n, 3000.0, (0.02, 0.98), _draw(1))
        grads.append(torch.autograd.grad((loss * weight).sum(), e_n)[0])
    assert grads[0].abs().sum() > 0
    assert torch.equal(grads[0], grads[1])


class _Thresholded(torch.nn.Module):
    """A reward without a gradient: the share of pixels redder than they are blue."""

    def forward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return (images[:, 0] > images[:, 2] + 0.1).float().mean((1, 2))


def test_psd_bank_trains_e_n_with_a_reward_that_has_no_gradient():
    ctx = dataclasses.replace(tiny.tiny_context("a sphere"), reward=_Thresholded())
    psd = setup(PSD, ctx, neg_loss="bank", bank_copies=3, bank_steps=5)
    out, grad, _ = run(psd)
    (g,) = torch.autograd.grad(out.loss, psd.neg_delta)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.isfinite(grad).all()
    assert out.logs["bank_spread"] > 0
