"""Classifier Score Distillation (https://arxiv.org/abs/2310.19415).

Distils only the implicit-classifier direction: ``grad_z = w(t) * [w1 (eps_y - eps_u) - w2 (eps_neg - eps_u)]``
(no ``- eps`` term); ``w2 > 0`` uses the recipe's negative prompt.
"""

from __future__ import annotations

import dataclasses

import torch

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import GuidanceInput, GuidanceOutput, GuidanceStrategy
from psdkit.ops.distill import broadcast, forward_noise, predict_many, residual_loss, timestep_weight
from psdkit_plugins.guidance._cfg import NoiseConfig


@dataclasses.dataclass(frozen=True)
class CSDConfig(NoiseConfig):
    """Config of CSD."""

    guidance_scale: Schedule = knob(Schedule(10.0), ge=0.0)
    """w1, weight of the prompt direction (eps_y - eps_u)."""
    negative_scale: Schedule = knob(Schedule(0.0), ge=0.0)
    """w2, weight of the negative-prompt direction (eps_neg - eps_u); 0 disables it."""


class CSD(GuidanceStrategy):
    """Classifier score distillation."""

    Config = CSDConfig

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step))
        e_y = cond.prompt_emb[inp.view_index]
        w2 = c.negative_scale(inp.step)
        embs = [e_y, cond.uncond_emb.expand_as(e_y)] + ([cond.negative_emb.expand_as(e_y)] if w2 > 0 else [])
        with torch.no_grad():
            eps = predict_many(prior, n.x_t, n.t, embs, inp.cameras, c.batch_conditionings)
            direction = c.guidance_scale(inp.step) * (eps[0] - eps[1])
            if w2 > 0:
                direction = direction - w2 * (eps[2] - eps[1])
            grad = broadcast(timestep_weight(c.weighting, n.alpha, n.sigma), n.z) * direction
        loss = residual_loss(n.z, grad)
        return GuidanceOutput(loss=loss, logs={"grad_norm": grad.flatten(1).norm(dim=1).mean()})
