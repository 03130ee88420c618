"""Noise-Free Score Distillation (https://arxiv.org/abs/2310.17590, project page orenkatzir.github.io/nfsd).

``grad_z = w(t) * (delta_D + s * delta_C)`` with the condition direction ``delta_C = eps_y - eps_u`` and the
domain term ``delta_D = eps_u`` for small t, ``eps_u - eps_neg`` above ``switch_t`` (``eps_neg`` from the
recipe's negative prompt, e.g. "unrealistic, blurry, low quality").
"""

from __future__ import annotations

import dataclasses

import torch

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import GuidanceInput, GuidanceOutput, GuidanceStrategy
from psdkit.ops.distill import broadcast, forward_noise, predict_many, residual_loss, timestep_weight
from psdkit_plugins.guidance._cfg import NoiseConfig


@dataclasses.dataclass(frozen=True)
class NFSDConfig(NoiseConfig):
    """Config of NFSD."""

    guidance_scale: Schedule = knob(Schedule(7.5), ge=0.0)
    """s, weight of the condition direction."""
    switch_t: float = knob(0.2, ge=0.0, le=1.0)
    """Fraction of T above which the domain term uses the negative prompt (200 of 1000 in the paper)."""


class NFSD(GuidanceStrategy):
    """Noise-free score distillation."""

    Config = NFSDConfig

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step))
        e_y = cond.prompt_emb[inp.view_index]
        embs = [e_y, cond.uncond_emb.expand_as(e_y), cond.negative_emb.expand_as(e_y)]
        with torch.no_grad():
            eps_y, eps_u, eps_neg = predict_many(prior, n.x_t, n.t, embs, inp.cameras, c.batch_conditionings)
            high = broadcast(n.t.float() >= c.switch_t * (prior.num_train_timesteps - 1), n.z)
            delta_d = torch.where(high, eps_u - eps_neg, eps_u)
            grad = broadcast(timestep_weight(c.weighting, n.alpha, n.sigma), n.z) * (
                delta_d + c.guidance_scale(inp.step) * (eps_y - eps_u)
            )
        loss = residual_loss(n.z, grad)
        return GuidanceOutput(loss=loss, logs={"grad_norm": grad.flatten(1).norm(dim=1).mean()})
