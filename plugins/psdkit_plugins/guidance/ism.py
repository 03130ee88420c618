"""Interval Score Matching (LucidDreamer, https://arxiv.org/abs/2311.11284).

DDIM-invert the clean latent with the inversion prompt: from 0 to ``s = t - delta_t`` in ``inv_steps``
steps, then one more step ``s -> t``. The baseline is the prior's prediction at ``x_s`` (recorded on
that last inversion step), not the random noise; the teacher is CFG at ``x_t``:
``grad_z = w(t) * (eps_cfg(x_t, t) - eps(x_s, s))`` with ``w = sigma / alpha`` by default.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import GuidanceInput, GuidanceOutput, GuidanceStrategy
from psdkit.ops.distill import (
    Weighting,
    broadcast,
    ddim_step,
    forward_noise,
    predict_many,
    residual_loss,
    timestep_weight,
)
from psdkit_plugins.guidance._cfg import CFGConfig, cfg_guided


@dataclasses.dataclass(frozen=True)
class ISMConfig(CFGConfig):
    """Config of ISM."""

    delta_t: Schedule = knob(Schedule(0.1), ge=0.0, le=1.0)
    """t - s as a fraction of T (LucidDreamer anneals 100 -> 50 of 1000)."""
    inv_steps: int = knob(5, ge=1, le=100)
    """DDIM inversion steps from 0 to s."""
    inversion_prompt: Literal["uncond", "negative"] = "uncond"
    """Embedding used for inversion: the empty prompt or the recipe's negative prompt."""
    t_max: Schedule = knob(Schedule(0.5), ge=0.0, le=1.0)
    """Highest timestep, as a fraction of T (LucidDreamer widens it to 0.98 with warm-up)."""
    weighting: Weighting = "sqrt_snr_inv"
    """w(t); LucidDreamer uses sigma / alpha."""


class ISM(GuidanceStrategy):
    """Interval score matching with DDIM inversion."""

    Config = ISMConfig

    def invert(self, z: Tensor, t: Tensor, s: Tensor, emb: Tensor, cams) -> tuple[Tensor, Tensor]:
        """(x_t, eps(x_s, s)): DDIM inversion 0 -> s in ``inv_steps`` steps, then s -> t."""
        prior, k = self.ctx.prior, self.config.inv_steps
        fracs = torch.arange(k + 1, device=z.device, dtype=torch.float32) / k
        grid = (fracs[None] * s[:, None].float()).round().long()  # [B, k + 1], from 0 to s
        x = z
        for i in range(k):
            if torch.equal(grid[:, i], grid[:, i + 1]):
                continue
            eps = prior.predict_noise(x, grid[:, i], emb, cams)
            x = ddim_step(prior, x, grid[:, i], grid[:, i + 1], eps)
        eps_s = prior.predict_noise(x, s, emb, cams)
        return ddim_step(prior, x, s, t, eps_s), eps_s

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step))
        steps = prior.num_train_timesteps - 1
        s = (n.t - round(c.delta_t(inp.step) * steps)).clamp_min(0)
        e_y = cond.prompt_emb[inp.view_index]
        e_inv = (cond.negative_emb if c.inversion_prompt == "negative" else cond.uncond_emb).expand_as(e_y)
        e_b = (cond.negative_emb if c.use_negative_prompt else cond.uncond_emb).expand_as(e_y)
        with torch.no_grad():
            x_t, eps_s = self.invert(n.z.detach(), n.t, s, e_inv, inp.cameras)
            eps_y, eps_b = predict_many(prior, x_t, n.t, [e_y, e_b], inp.cameras, c.batch_conditionings)
            eps_cfg = cfg_guided(c, n, eps_b, eps_y, inp.step, x_t)
            grad = broadcast(timestep_weight(c.weighting, n.alpha, n.sigma), n.z) * (eps_cfg - eps_s)
        loss = residual_loss(n.z, grad)
        return GuidanceOutput(loss=loss, logs={"grad_norm": grad.flatten(1).norm(dim=1).mean()})
