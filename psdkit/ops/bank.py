"""Sample banks: the prior's own answers to a prompt, ranked by a reward, and the loss that teaches a negative
embedding e_n from them (PSD's ``neg_loss: bank``).

The reward-gradient update (Variant A) scores one-step estimates from the *render*, so e_n only sees the answer
the render already leans to: a reward that is not monotone between two answers (higher on both than on their
blend) leaves e_n in whichever basin the render starts in. Here each bank holds ``copies`` samples per view,
drawn from the prompt-conditioned prior itself (CFG, deterministic DDIM from pure noise), so it holds several of
the prompt's answers whatever the render looks like. Samples of one view share a timestep and a noise; e_n is
trained with the Bradley-Terry loss of Diffusion-DPO on the implicit rewards
``r_c = -beta * (|eps - eps_y(x_t^c)|^2 - |eps - eps_n(x_t^c)|^2)`` of each pair ranked by the reward, so it
learns to denoise the dispreferred answers well and the preferred ones badly (docs/method.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit.contracts import Conditioning
from psdkit.contracts.camera import Cameras
from psdkit.ops.distill import broadcast, ddim_step, draw_noise, guide


@dataclasses.dataclass
class Bank:
    """``copies`` prior samples of each of B views, copies major: rows ``c * B + b``."""

    x0: Tensor
    """[copies * B, ...] samples in the prior's space."""
    reward: Tensor
    """[copies * B] the training reward of each decoded sample."""
    cameras: Cameras
    """[copies * B] each row's camera."""
    view_index: Tensor
    """[copies * B] each row's prompt label."""
    copies: int


@dataclasses.dataclass(frozen=True)
class BankDraw:
    """Where and how a bank is drawn: the step's views and randomness (``psdkit.ops.distill.draw_noise``)."""

    cameras: Cameras
    """[B] the step's cameras."""
    view_index: Tensor
    """[B] the step's prompt labels."""
    shape: tuple[int, ...]
    """[B, ...] the shape of the step's latents."""
    generator: torch.Generator
    offset: int = 0
    global_batch: int | None = None


@torch.no_grad()
def sample_bank(
    prior: Any, reward: Any, cond: Conditioning, draw: BankDraw, copies: int, steps: int, scale: float
) -> Bank:
    """A bank of ``copies`` samples per view: DDIM (eta 0) in ``steps`` steps at CFG ``scale`` against the empty
    prompt, from noise drawn for the global batch (so a rank's samples do not depend on the number of ranks)."""
    group = prior.views_per_group()
    _, x = draw_noise(draw.generator, draw.shape, 0.0, 1.0, prior.num_train_timesteps, draw.offset,
                      draw.global_batch, copies, group)  # fmt: skip
    cams, vi = draw.cameras.repeat(copies), draw.view_index.repeat(copies)
    x = x.to(cond.prompt_emb.device)
    e_y, e_u = cond.prompt_emb[vi], cond.uncond_emb.expand(len(vi), -1, -1)
    ts = torch.linspace(prior.num_train_timesteps - 1, 0, steps + 1).round().long().to(x.device)
    for i in range(steps):
        t = ts[i].repeat(len(x))
        eps_y, eps_u = (prior.predict_noise(x, t, e, cams) for e in (e_y, e_u))
        eps = guide(eps_u, eps_y, scale)
        if i + 1 < steps:
            x = ddim_step(prior, x, t, ts[i + 1].repeat(len(x)), eps)
    x0 = prior.predict_x0(x, t, eps)
    texts = [cond.base_prompt] * len(x0)
    return Bank(x0, reward(prior.decode(x0), texts).float().detach(), cams, vi, copies)


def bank_loss(
    prior: Any, bank: Bank, cond: Conditioning, e_n: Tensor, beta: float, t_range: tuple[float, float], draw: BankDraw
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """([pairs] Bradley-Terry loss per ranked pair, [pairs] weight (1 where the rewards differ), logs).

    ``e_n`` [1, L, D] carries the gradient; the copies of a view share the timestep and noise drawn from
    ``draw`` over ``t_range`` (fractions of T)."""
    c, b = bank.copies, len(bank.x0) // bank.copies
    t, eps = draw_noise(draw.generator, tuple(bank.x0[:b].shape), *t_range, prior.num_train_timesteps,
                        draw.offset, draw.global_batch, 1, prior.views_per_group())  # fmt: skip
    t, eps = t.to(bank.x0.device).repeat(c), eps.to(bank.x0).repeat(c, *([1] * (eps.dim() - 1)))
    alpha, sigma = prior.alpha_sigma(t)
    x_t = broadcast(alpha, bank.x0) * bank.x0 + broadcast(sigma, bank.x0) * eps
    with torch.no_grad():
        eps_y = prior.predict_noise(x_t, t, cond.prompt_emb[bank.view_index], bank.cameras)
    eps_n = prior.predict_noise(x_t, t, e_n.expand(len(x_t), -1, -1).to(x_t), bank.cameras)
    err_y = ((eps - eps_y) ** 2).flatten(1).mean(1)
    err_n = ((eps - eps_n) ** 2).flatten(1).mean(1)
    implicit = (-beta * (err_y - err_n)).view(c, b)
    reward = bank.reward.view(c, b)
    i, j = torch.triu_indices(c, c, 1, device=reward.device)
    sign = torch.sign(reward[i] - reward[j])  # [pairs, B]
    loss = -F.logsigmoid(sign * (implicit[i] - implicit[j]))
    weight = (sign != 0).float()
    logs = {"bank_reward": reward.mean(), "bank_spread": (reward.max(0).values - reward.min(0).values).mean()}
    return loss.flatten(), weight.flatten(), logs
