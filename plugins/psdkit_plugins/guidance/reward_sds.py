"""RewardSDS: reward-weighted noise selection (https://arxiv.org/abs/2503.09601).

Draw N noises at one timestep; each gives an SDS loss and the reward of its one-step x0 estimate. The
per-noise losses are combined by reward: ``best`` (mean of the top k), ``min_max``
(``pos_weight * mean(top k) - neg_weight * mean(bottom k)``), ``softmax`` (weights ``softmax(R / tau)``)
or ``none`` (plain mean). After ``reward_duration`` of training the plain mean is used.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from psdkit.config.schema import knob
from psdkit.contracts import GuidanceInput, GuidanceOutput, GuidanceStrategy
from psdkit.ops.distill import broadcast, forward_noise, predict_many, timestep_weight
from psdkit_plugins.guidance._cfg import CFGConfig, cfg_embeddings, cfg_guided


@dataclasses.dataclass(frozen=True)
class RewardSDSConfig(CFGConfig):
    """Config of RewardSDS."""

    num_noises: int = knob(4, ge=1, le=64)
    """N, noises per step (the paper uses 6-7)."""
    combine: Literal["none", "best", "min_max", "softmax"] = "min_max"
    """How per-noise losses are combined by reward."""
    top_k: int = knob(2, ge=1, le=1024)
    """k of best and min_max."""
    pos_weight: float = knob(0.9, ge=0.0)
    """min_max weight of the top-k losses."""
    neg_weight: float = knob(0.1, ge=0.0)
    """min_max weight of the bottom-k losses (subtracted)."""
    temperature: float = knob(1.0, gt=0.0)
    """tau of the softmax combination."""
    reward_duration: float = knob(0.7, ge=0.0, le=1.0)
    """Fraction of training with reward weighting; plain SDS after."""

    def __post_init__(self) -> None:
        if self.top_k > self.num_noises:
            raise ValueError(f"top_k={self.top_k} exceeds num_noises={self.num_noises}")


class RewardSDS(GuidanceStrategy):
    """SDS with reward-weighted noise samples."""

    Config = RewardSDSConfig
    needs_reward = True

    def noise_weights(self, scores: torch.Tensor, active: bool) -> torch.Tensor:
        """[N, B] weight of each noise's loss from its reward [N, B]."""
        c, n = self.config, scores.shape[0]
        if not active or c.combine == "none":
            return torch.full_like(scores, 1.0 / n)
        if c.combine == "softmax":
            return (scores / c.temperature).softmax(0)
        order = scores.argsort(0, descending=True)
        positions = torch.arange(n, device=scores.device)[:, None].expand_as(order)
        ranks = torch.empty_like(order).scatter_(0, order, positions)
        top = (ranks < c.top_k).float() / c.top_k
        if c.combine == "best":
            return top
        bottom = (ranks >= n - c.top_k).float() / c.top_k
        return c.pos_weight * top - c.neg_weight * bottom

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond, reward = self.config, self.ctx.prior, self.ctx.cond, self.ctx.require_reward()
        n_noise = c.num_noises
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step), copies=n_noise)
        b = n.z.shape[0]
        cams, vi = inp.cameras.repeat(n_noise), inp.view_index.repeat(n_noise)
        e_y, e_b = cfg_embeddings(cond, vi, c.use_negative_prompt)
        active = inp.step < c.reward_duration * inp.max_steps
        with torch.no_grad():
            eps_y, eps_b = predict_many(prior, n.x_t, n.t, [e_y, e_b], cams, c.batch_conditionings)
            eps_cfg = cfg_guided(c, n, eps_b, eps_y, inp.step)
            grads = broadcast(timestep_weight(c.weighting, n.alpha, n.sigma), n.x_t) * (eps_cfg - n.eps)
            scores = torch.zeros(n_noise, b, device=n.z.device)
            if active and c.combine != "none":
                images = prior.decode(prior.predict_x0(n.x_t, n.t, eps_cfg))
                scores = reward(images, inp.reward_prompts(cond, n_noise)).view(n_noise, b).float()
            weights = self.noise_weights(scores, active)  # [N, B]
        z_rep = n.z_copies
        per_noise = 0.5 * ((z_rep - (z_rep - grads).detach()) ** 2).flatten(1).sum(1).view(n_noise, b)
        loss = (weights * per_noise).sum() / b
        return GuidanceOutput(loss=loss, logs={"reward": scores.mean(), "reward_spread": scores.std(0).mean()})
