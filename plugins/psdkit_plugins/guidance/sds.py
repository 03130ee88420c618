"""Score Distillation Sampling (DreamFusion, https://arxiv.org/abs/2209.14988).

``grad_z = w(t) * (eps_cfg - eps)`` with ``eps_cfg = eps_b + s * (eps_y - eps_b)``, where the baseline
``eps_b`` is conditioned on the negative prompt (or the empty prompt).
"""

from __future__ import annotations

import dataclasses

import torch

from psdkit.config.schema import knob
from psdkit.contracts import GuidanceInput, GuidanceOutput, GuidanceStrategy
from psdkit.ops.distill import (
    broadcast,
    forward_noise,
    predict_many,
    residual_loss,
    timestep_weight,
)
from psdkit_plugins.guidance._cfg import CFGConfig, cfg_embeddings, cfg_guided


@dataclasses.dataclass(frozen=True)
class SDSConfig(CFGConfig):
    """Config of SDS."""

    loss_scale: float = knob(1.0, gt=0.0)
    """Multiplier of the loss."""


class SDS(GuidanceStrategy):
    """Score distillation with classifier-free guidance."""

    Config = SDSConfig

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step))
        z, t, eps, alpha, sigma, x_t = n.z, n.t, n.eps, n.alpha, n.sigma, n.x_t
        e_y, e_b = cfg_embeddings(cond, inp.view_index, c.use_negative_prompt)
        with torch.no_grad():
            eps_y, eps_b = predict_many(prior, x_t, t, [e_y, e_b], inp.cameras, c.batch_conditionings)
            eps_cfg = cfg_guided(c, n, eps_b, eps_y, inp.step)
            grad = broadcast(timestep_weight(c.weighting, alpha, sigma), z) * (eps_cfg - eps)
        loss = c.loss_scale * residual_loss(z, grad)
        logs = {"grad_norm": grad.flatten(1).norm(dim=1).mean(), "t": t.float().mean()}
        return GuidanceOutput(loss=loss, logs=logs)
