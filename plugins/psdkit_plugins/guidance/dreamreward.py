"""DreamReward-style reward feedback (DreamFL, https://arxiv.org/abs/2403.14613).

SDS plus a hinge on the reward, switched on inside a window of training:
``loss = SDS + reward_weight * relu(threshold - R(img))``. At small t (``t <= straight_through_t``) the
image is the decoded one-step x0 estimate wired straight-through to the render
(``img = render - sg(render - x0)``); otherwise it is the render itself.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from psdkit.config.schema import knob
from psdkit.contracts import GuidanceInput, GuidanceOutput, GuidanceStrategy
from psdkit.ops.distill import broadcast, forward_noise, predict_many, residual_loss, timestep_weight
from psdkit_plugins.guidance._cfg import CFGConfig, cfg_embeddings, cfg_guided


@dataclasses.dataclass(frozen=True)
class DreamRewardConfig(CFGConfig):
    """Config of the DreamReward-style strategy."""

    reward_weight: float = knob(1.0, ge=0.0)
    """Weight of the hinge term (DreamReward matches its magnitude to SDS, then x0.6)."""
    threshold: float = 1.0
    """Hinge threshold: rewards above it give no gradient."""
    reward_start: float = knob(0.6, ge=0.0, le=1.0)
    """Fraction of training where the reward term starts (6000 of 10000 in DreamReward)."""
    reward_stop: float = knob(1.0, ge=0.0, le=1.0)
    """Fraction of training where it stops."""
    straight_through_t: float = knob(0.1, ge=0.0, le=1.0)
    """At or below this fraction of T the reward sees the straight-through x0 estimate."""


class DreamReward(GuidanceStrategy):
    """SDS with a hinge reward loss in a training window."""

    Config = DreamRewardConfig
    needs_reward = True

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond, reward = self.config, self.ctx.prior, self.ctx.cond, self.ctx.require_reward()
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step))
        e_y, e_b = cfg_embeddings(cond, inp.view_index, c.use_negative_prompt)
        with torch.no_grad():
            eps_y, eps_b = predict_many(prior, n.x_t, n.t, [e_y, e_b], inp.cameras, c.batch_conditionings)
            eps_cfg = cfg_guided(c, n, eps_b, eps_y, inp.step)
            grad = broadcast(timestep_weight(c.weighting, n.alpha, n.sigma), n.z) * (eps_cfg - n.eps)
        loss = residual_loss(n.z, grad)
        logs = {"grad_norm": grad.flatten(1).norm(dim=1).mean()}
        frac = inp.step / max(inp.max_steps, 1)
        if c.reward_weight > 0 and c.reward_start <= frac < c.reward_stop:
            render = inp.images
            with torch.no_grad():
                x0 = prior.decode(prior.predict_x0(n.x_t, n.t, eps_cfg))
                x0 = F.interpolate(x0, render.shape[-2:], mode="bilinear", align_corners=False)
            small = broadcast(n.t.float() <= c.straight_through_t * (prior.num_train_timesteps - 1), render)
            img = torch.where(small, render - (render - x0).detach(), render)
            r = reward(img, inp.reward_prompts(cond))
            loss = loss + c.reward_weight * F.relu(c.threshold - r).mean()
            logs["reward"] = r.mean().detach()
        return GuidanceOutput(loss=loss, logs=logs)
