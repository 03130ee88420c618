"""Preference Score Distillation (https://arxiv.org/abs/2603.01594), as reconstructed in docs/method.md.

Preference enters as a CFG-style term from an implicit reward model whose "dispreferred" side is a
learnable negative text embedding ``e_n``, refined online from a 2D reward; the reward never sends
pixel gradients to the 3D representation.

Teacher (``form``):
    p1: ``eps_T = eps_n + s * (eps_y - eps_n)``  (CFG with the learnable negative as baseline)
    p2: ``eps_T = eps_u + s * (eps_y - eps_u) + lambda_P * rho * (eps_y - eps_n)``
3D update: ``grad_z = w(t) * (sg(eps_T) - eps)``.
Negative-embedding update (``neg_loss``):
    reward (Variant A): minimize ``-R(decode(x0(x_t, eps_T(e_n))))``, gradient through the frozen prior.
    pairwise (Variant B): two noises ranked by R; Bradley-Terry loss on the implicit rewards
        ``r(i) = -beta * w(t) * (|eps_i - eps_y_i|^2 - |eps_i - eps_n_i|^2)``.
Reward-based scaling (``reward_scaling``, p2): ``rho_v = clamp(1 + kappa * (mu_R - R_v) / std_R)``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import GuidanceContext, GuidanceInput, GuidanceOutput, GuidanceStrategy, ParamGroup
from psdkit.ops.distill import (
    Weighting,
    broadcast,
    forward_noise,
    guide,
    predict_many,
    rescale_cfg,
    residual_loss,
    timestep_weight,
)


@dataclasses.dataclass(frozen=True)
class PSDConfig:
    """Config of PSD."""

    guidance_scale: Schedule = knob(Schedule(7.5), ge=0.0)
    """s, CFG scale of the teacher."""
    guidance_rescale: float = knob(0.0, ge=0.0, le=1.0)
    """CFG rescale phi of the teacher (Lin et al. 2024), relative to eps_y's std; 0 = plain CFG."""
    form: Literal["p1", "p2"] = "p1"
    """p1: the learnable negative is the CFG baseline; p2: a separate preference term on top of CFG."""
    preference_scale: Schedule = knob(Schedule(1.0), ge=0.0)
    """lambda_P, weight of the preference term (p2 only)."""
    neg_init: Literal["negative", "uncond"] = "negative"
    """Initial e_n: the recipe's negative prompt or the empty prompt."""
    neg_loss: Literal["reward", "pairwise"] = "reward"
    """How e_n learns: reward back-propagation (Variant A) or pairwise implicit rewards (Variant B)."""
    neg_lr: Schedule = knob(Schedule(1e-3), ge=0.0)
    """Learning rate of e_n (Adam)."""
    neg_every: int = knob(1, ge=1)
    """Update e_n every this many steps."""
    update_start: float = knob(0.0, ge=0.0, le=1.0)
    """Fraction of training after which e_n starts updating."""
    update_stop: float = knob(0.9, ge=0.0, le=1.0)
    """Fraction of training after which e_n is frozen (a stationary target for the end)."""
    reward_t_max: float = knob(0.5, ge=0.0, le=1.0)
    """Only timesteps <= reward_t_max * T train e_n (x0 is too blurry for the reward above)."""
    reward_gate: Literal["hard", "alpha_bar"] = "hard"
    """hard: drop samples above reward_t_max; alpha_bar: also weight each sample by alpha_t^2."""
    reward_weight: float = knob(1.0, gt=0.0)
    """Multiplier of the e_n loss."""
    anchor_weight: float = knob(0.0, ge=0.0)
    """Weight of ||e_n - e_n(0)||^2 (limits drift and reward hacking)."""
    pairwise_beta: float = knob(1.0, gt=0.0)
    """beta of the implicit reward (Variant B)."""
    reward_scaling: bool = False
    """Scale the preference term per view by the z-normalized reward (p2)."""
    scaling_kappa: float = knob(0.5, ge=0.0)
    """kappa of reward-based scaling."""
    scaling_range: tuple[float, float] = (0.0, 2.0)
    """Clamp of rho."""
    scaling_momentum: float = knob(0.99, ge=0.0, lt=1.0)
    """EMA momentum of the running reward mean and variance."""
    t_min: Schedule = knob(Schedule(0.02), ge=0.0, le=1.0)
    """Lowest timestep, as a fraction of T."""
    t_max: Schedule = knob(Schedule(0.98), ge=0.0, le=1.0)
    """Highest timestep, as a fraction of T."""
    weighting: Weighting = "sds"
    """w(t) of the 3D update."""
    loss_scale: float = knob(1.0, gt=0.0)
    """Multiplier of the 3D loss."""
    batch_conditionings: bool = True
    """Run eps_y, eps_u and eps_n in one prior call (one UNet launch); false: separate calls, and the e_n
    update back-propagates through eps_n's call alone."""
    reward_decode_size: int | None = knob(None, ge=1)
    """Resize x0's latents to this side before decoding them for the reward (a cheaper VAE decode; the
    reward resizes to its own input size anyway); null: decode at full size."""

    def __post_init__(self) -> None:
        if self.update_stop < self.update_start:
            raise ValueError("update_stop must be >= update_start")
        if self.scaling_range[0] > self.scaling_range[1]:
            raise ValueError("scaling_range: low end above high end")


class PSD(GuidanceStrategy):
    """Preference Score Distillation with a learnable negative text embedding."""

    Config = PSDConfig
    needs_reward = True

    def setup(self, ctx: GuidanceContext) -> None:
        super().setup(ctx)
        init = ctx.cond.negative_emb if self.config.neg_init == "negative" else ctx.cond.uncond_emb
        self.neg_emb = nn.Parameter(init.detach().clone().float())
        self.register_buffer("neg_init_emb", init.detach().clone().float())
        self.register_buffer("reward_stats", torch.tensor([0.0, 1.0, 0.0]))  # mean, var, count

    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup("negative_embedding", [self.neg_emb], self.config.neg_lr)]

    def updating(self, step: int, max_steps: int) -> bool:
        """Whether e_n is trained at ``step``."""
        c = self.config
        frac = step / max(max_steps, 1)
        return c.update_start <= frac < c.update_stop and step % c.neg_every == 0

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior = self.config, self.ctx.prior
        update = self.updating(inp.step, inp.max_steps)
        n_noise = 2 if (update and c.neg_loss == "pairwise") else 1
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step), copies=n_noise)
        zz, t, eps, alpha, sigma, x_t = n.zz, n.t, n.eps, n.alpha, n.sigma, n.x_t
        cams = inp.cameras.repeat(n_noise)
        vi = inp.view_index.repeat(n_noise)
        texts = inp.prompt_texts(self.ctx.cond, n_noise)
        eps_y, eps_n, eps_t = self._teacher(x_t, t, vi, cams, inp.step, update, texts)
        w = timestep_weight(c.weighting, alpha, sigma)
        grad = broadcast(w, zz) * (eps_t.detach() - eps)
        loss = c.loss_scale * residual_loss(zz, grad)
        logs: dict[str, Tensor] = {"grad_norm": grad.flatten(1).norm(dim=1).mean().detach()}
        if update:
            neg_loss, neg_logs = self._neg_loss(x_t, t, eps, eps_y, eps_n, eps_t, texts, w, n_noise)
            loss = loss + c.reward_weight * neg_loss
            logs.update(neg_logs)
        logs["neg_drift"] = (self.neg_emb - self.neg_init_emb).norm().detach()
        return GuidanceOutput(loss=loss, logs=logs)

    def _predict(self, x_t: Tensor, t: Tensor, vi: Tensor, cams, update: bool) -> tuple[Tensor, Tensor | None, Tensor]:
        """eps_y and eps_u (p2 only), without gradient, and eps_n (gradient to e_n iff ``update``)."""
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        e_y = cond.prompt_emb[vi]
        e_n = self.neg_emb.expand_as(e_y).to(x_t)
        embs = [e_y, cond.uncond_emb.expand_as(e_y)] if c.form == "p2" else [e_y]
        if c.batch_conditionings:  # one prior call; with ``update`` its backward spans every row
            with torch.set_grad_enabled(update):
                *fixed, eps_n = predict_many(prior, x_t, t, [*embs, e_n], cams)
            fixed = [e.detach() for e in fixed]
        else:
            with torch.no_grad():
                fixed = predict_many(prior, x_t, t, embs, cams, batched=False)
            with torch.set_grad_enabled(update):
                eps_n = prior.predict_noise(x_t, t, e_n, cams)
        return fixed[0], (fixed[1] if c.form == "p2" else None), eps_n

    def _teacher(
        self, x_t: Tensor, t: Tensor, vi: Tensor, cams, step: int, update: bool, texts: list[str]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """eps_y (no grad), eps_n (grad to e_n iff ``update``) and the teacher eps_T."""
        c = self.config
        eps_y, eps_u, eps_n = self._predict(x_t, t, vi, cams, update)
        s, phi = c.guidance_scale(step), c.guidance_rescale
        if c.form == "p1":
            return eps_y, eps_n, guide(eps_n, eps_y, s, phi)
        eps_cfg = eps_u + s * (eps_y - eps_u)
        rho = self._reward_scale(x_t, t, eps_cfg, texts) if c.reward_scaling else 1.0
        pref = c.preference_scale(step) * rho * (eps_y - eps_n)
        return eps_y, eps_n, rescale_cfg(eps_cfg + pref, eps_y, phi)

    def _score(self, x_t: Tensor, t: Tensor, eps_t: Tensor, texts: list[str]) -> Tensor:
        """[B] reward of the one-step estimate x0(x_t, eps_T), decoded at ``reward_decode_size``."""
        prior, reward, size = self.ctx.prior, self.ctx.reward, self.config.reward_decode_size
        if reward is None:
            raise RuntimeError("PSD needs a reward model (recipe key: reward)")
        x0 = prior.predict_x0(x_t, t, eps_t)
        if size is not None and x0.shape[-1] != size:
            x0 = F.interpolate(x0, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return reward(prior.decode(x0), texts)

    @torch.no_grad()
    def _reward_scale(self, x_t: Tensor, t: Tensor, eps_cfg: Tensor, texts: list[str]) -> Tensor:
        """[B, 1, 1, 1] rho from the z-normalized reward of the CFG estimate; updates running stats.

        Tensor arithmetic only: no device-to-host read.
        """
        c = self.config
        r = self._score(x_t, t, eps_cfg, texts).float()
        mean, var, count = self.reward_stats.unbind()
        batch_mean, batch_var = r.mean(), r.var(unbiased=False)
        m = c.scaling_momentum
        first = count == 0
        mean = torch.where(first, batch_mean, m * mean + (1 - m) * batch_mean)
        var = torch.where(first, batch_var.clamp_min(1e-8),
                          m * var + (1 - m) * (batch_var + (batch_mean - mean) ** 2))
        self.reward_stats.copy_(torch.stack([mean, var, count + 1]))
        rho = (1 + c.scaling_kappa * (mean - r) / (var.sqrt() + 1e-6)).clamp(*c.scaling_range)
        return broadcast(rho, x_t).to(x_t)

    def _gate(self, t: Tensor, alpha: Tensor) -> Tensor:
        """[B] weight of each sample in the e_n loss."""
        c = self.config
        keep = (t.float() <= c.reward_t_max * (self.ctx.prior.num_train_timesteps - 1)).float()
        return keep * alpha**2 if c.reward_gate == "alpha_bar" else keep

    def _neg_loss(self, x_t, t, eps, eps_y, eps_n, eps_t, texts, w, n_noise) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        alpha, _ = self.ctx.prior.alpha_sigma(t)
        gate = self._gate(t, alpha)
        anchor = c.anchor_weight * ((self.neg_emb - self.neg_init_emb) ** 2).sum()
        if c.neg_loss == "reward":
            r = self._score(x_t, t, eps_t, texts)
            loss = -(gate * r).sum() / gate.sum().clamp_min(1.0)
            return loss + anchor, {"reward": r.mean().detach(), "neg_active": gate.mean()}
        with torch.no_grad():
            r = self._score(x_t, t, eps_t, texts).view(n_noise, -1)
        err_y = ((eps - eps_y) ** 2).flatten(1).mean(1)
        err_n = ((eps - eps_n) ** 2).flatten(1).mean(1)
        implicit = (-c.pairwise_beta * w * (err_y - err_n)).view(n_noise, -1)
        win = (r[0] >= r[1]).float()
        margin = (2 * win - 1) * (implicit[0] - implicit[1])
        g = gate.view(n_noise, -1)[0]
        loss = (-F.logsigmoid(margin) * g).sum() / g.sum().clamp_min(1.0)
        return loss + anchor, {"reward": r.mean(), "neg_active": g.mean(), "pair_margin": margin.mean().detach()}
