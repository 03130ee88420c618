"""Naive reward gradients (ReFL-style): the baseline PSD argues against.

SDS plus ``-reward_weight * R(img)`` back-propagated into the 3D representation:
``space: render`` scores the render itself; ``space: x0`` scores the decoded one-step estimate
``x0(x_t, eps_cfg(x_t))`` with the gradient flowing through the frozen prior into the render. The
reward model never saw such images, so its pixel gradient tends to leave the data manifold
(reward hacking); ``psdkit bench alignment`` measures that.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import GuidanceInput, GuidanceOutput, GuidanceStrategy
from psdkit.ops.distill import broadcast, forward_noise, predict_many, residual_loss, timestep_weight
from psdkit_plugins.guidance._cfg import CFGConfig, cfg_embeddings, cfg_guided


@dataclasses.dataclass(frozen=True)
class NaiveRewardConfig(CFGConfig):
    """Config of naive reward-gradient guidance."""

    reward_weight: Schedule = knob(Schedule(1.0), ge=0.0)
    """lambda, weight of -R."""
    space: Literal["render", "x0"] = "render"
    """Where the reward is evaluated: the render, or the one-step x0 estimate (through the prior)."""
    reward_start: float = knob(0.0, ge=0.0, le=1.0)
    """Fraction of training after which the reward term is on."""


class NaiveReward(GuidanceStrategy):
    """SDS plus a direct reward gradient."""

    Config = NaiveRewardConfig
    needs_reward = True

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond, reward = self.config, self.ctx.prior, self.ctx.cond, self.ctx.require_reward()
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step))
        e_y, e_b = cfg_embeddings(cond, inp.view_index, c.use_negative_prompt)
        on = c.reward_weight(inp.step) > 0 and inp.step >= c.reward_start * inp.max_steps
        x0_space = on and c.space == "x0"
        # in x0 space, x_t keeps its graph to the render so the reward gradient flows through the prior
        x_t = broadcast(n.alpha, n.z) * n.z + broadcast(n.sigma, n.z) * n.eps if x0_space else n.x_t
        with torch.set_grad_enabled(x0_space):
            eps_y, eps_b = predict_many(prior, x_t, n.t, [e_y, e_b], inp.cameras, c.batch_conditionings)
            eps_cfg = cfg_guided(c, n, eps_b, eps_y, inp.step)
        grad = broadcast(timestep_weight(c.weighting, n.alpha, n.sigma), n.z) * (eps_cfg.detach() - n.eps)
        loss = residual_loss(n.z, grad)
        logs = {"grad_norm": grad.flatten(1).norm(dim=1).mean()}
        if on:
            img = prior.decode(prior.predict_x0(x_t, n.t, eps_cfg)) if x0_space else inp.images
            r = reward(img, inp.reward_prompts(cond))
            loss = loss - c.reward_weight(inp.step) * r.mean()
            logs["reward"] = r.mean().detach()
        return GuidanceOutput(loss=loss, logs=logs)
