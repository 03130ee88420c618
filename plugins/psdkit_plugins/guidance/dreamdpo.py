"""DreamDPO: pairwise preference inside score distillation (https://arxiv.org/abs/2502.04370).

Two noises at one timestep; each gets a CFG prediction and a one-step x0 estimate that the reward
scores. Per sample, the winner pulls toward its denoising residual and the loser's text-only residual is
pushed away: ``grad_z = w(t) [(eps_cfg^w - eps^w) - (eps_y^l - eps^l)]``. If the score gap is below
``gap_threshold`` the pair is not informative and the fallback applies: ``reference`` follows the
released code (``w(t) * eps_cfg^w``), ``sds`` uses ``w(t) (eps_cfg^w - eps^w)``. With a multi-view prior the
score of a sample is its group's mean, so all views of one object pick the same winner.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from psdkit.config.schema import knob
from psdkit.contracts import GuidanceInput, GuidanceOutput, GuidanceStrategy
from psdkit.ops.distill import (
    broadcast,
    forward_noise,
    group_mean,
    predict_many,
    residual_loss,
    timestep_weight,
)
from psdkit_plugins.guidance._cfg import CFGConfig, cfg_embeddings, cfg_guided


@dataclasses.dataclass(frozen=True)
class DreamDPOConfig(CFGConfig):
    """Config of DreamDPO."""

    gap_threshold: float = knob(0.01, ge=0.0)
    """Below this reward gap the fallback gradient is used (beta_dpo in the reference code)."""
    fallback: Literal["reference", "sds"] = "reference"
    """Fallback gradient: the released code's w(t) * eps_cfg^w, or the SDS residual of the winner."""


class DreamDPO(GuidanceStrategy):
    """Pairwise-preference score distillation."""

    Config = DreamDPOConfig
    needs_reward = True

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond, reward = self.config, self.ctx.prior, self.ctx.cond, self.ctx.require_reward()
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step), copies=2)
        b = n.z.shape[0]
        cams, vi = inp.cameras.repeat(2), inp.view_index.repeat(2)
        e_y, e_b = cfg_embeddings(cond, vi, c.use_negative_prompt)
        with torch.no_grad():
            eps_y, eps_b = predict_many(prior, n.x_t, n.t, [e_y, e_b], cams, c.batch_conditionings)
            eps_cfg = cfg_guided(c, n, eps_b, eps_y, inp.step)
            images = prior.decode(prior.predict_x0(n.x_t, n.t, eps_cfg))
            scores = group_mean(reward(images, inp.reward_prompts(cond, 2)), n.group).view(2, b)
            first_wins = scores[0] >= scores[1]
            pick = broadcast(first_wins, n.z)
            (cfg1, cfg2), (y1, y2), (e1, e2) = eps_cfg.chunk(2), eps_y.chunk(2), n.eps.chunk(2)
            cfg_w, eps_w = torch.where(pick, cfg1, cfg2), torch.where(pick, e1, e2)
            y_l, eps_l = torch.where(pick, y2, y1), torch.where(pick, e2, e1)
            pair = (cfg_w - eps_w) - (y_l - eps_l)
            fallback = cfg_w if c.fallback == "reference" else cfg_w - eps_w
            informative = broadcast((scores[0] - scores[1]).abs() >= c.gap_threshold, n.z)
            w = broadcast(timestep_weight(c.weighting, n.alpha[:b], n.sigma[:b]), n.z)
            grad = w * torch.where(informative, pair, fallback)
        logs = {
            "reward_gap": (scores[0] - scores[1]).abs().mean(),
            "informative": informative.float().mean(),
            "reward": scores.mean(),
        }
        return GuidanceOutput(loss=residual_loss(n.z, grad), logs=logs)
