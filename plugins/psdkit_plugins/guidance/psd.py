"""Preference Score Distillation (https://arxiv.org/abs/2603.01594), as reconstructed in docs/method.md.

Preference enters as a CFG-style term from an implicit reward model whose "dispreferred" side is a
learnable negative text embedding ``e_n``, refined online from a 2D reward; the reward never sends
pixel gradients to the 3D representation.

Teacher (``form``):
    p1: ``eps_T = eps_n + s * (eps_y - eps_n)``  (CFG with the learnable negative as baseline)
    p2: ``eps_T = eps_u + s * (eps_y - eps_u) + lambda_P * rho * (eps_y - eps_n)``
3D update: ``grad_z = w(t) * (sg(eps_T) - eps)``.
e_n = e_n(0) + rms(e_y) * u, with u trained by AdamW whose decoupled decay is the anchor (``negative``).
How e_n learns (``neg_loss``), one module each:
    pool (``_psd_pool``): ranked pairs of the prior's own samples of the prompt, drawn once into a replay pool;
        Diffusion-DPO's Bradley-Terry loss on the implicit rewards ``-beta (|eps - eps_y|^2 - |eps - eps_n|^2)``.
    reward (``_psd_reward``, Variant A): minimize ``-R(decode(x0(x_t, eps_T(e_n))))`` through the frozen prior.
    pairwise (``_psd_pairwise``, Variant B): two noisings of the render ranked by R, the same loss.
Reward-based scaling (``reward_scaling``, p2): ``rho_v = clamp(1 + kappa * (mu_R - R_v) / std_R)``.
Every e_n loss is averaged over the global batch, so DDP gives the single-process result (docs/method.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from psdkit.contracts import GuidanceContext, GuidanceInput, GuidanceOutput, GuidanceStrategy, ParamGroup
from psdkit.contracts.guidance import StateSize
from psdkit.ops.distill import (
    NativeSpace,
    Noised,
    broadcast,
    forward_noise,
    group_mean,
    predict_many,
    rescale_cfg,
    residual_loss,
    timestep_weight,
)
from psdkit.ops.loss_scale import DynamicLossScale
from psdkit.ops.running_moments import RunningMoments
from psdkit_plugins.guidance._psd_config import PSDConfig
from psdkit_plugins.guidance._psd_pairwise import PairwiseLearner
from psdkit_plugins.guidance._psd_pool import PoolLearner
from psdkit_plugins.guidance._psd_reward import RewardLearner
from psdkit_plugins.guidance._psd_step import NegLearner, Predictions, Step, estimate_cfg, score_estimate

LEARNERS: dict[str, type[NegLearner]] = {"pool": PoolLearner, "reward": RewardLearner, "pairwise": PairwiseLearner}


def embedding_rms(emb: Tensor) -> Tensor:
    """Scalar RMS of text embeddings [V, L, D] over their non-zero tokens (a zero-padded encoder's padding carries
    nothing): the unit e_n's offset is measured in."""
    tokens = emb.detach().float().flatten(0, -2)
    used = tokens[tokens.norm(dim=-1) > 0]
    return used.pow(2).mean().sqrt().clamp_min(1e-12) if len(used) else tokens.new_ones(())


class PSD(GuidanceStrategy):
    """Preference Score Distillation with a learnable negative text embedding."""

    Config = PSDConfig
    needs_reward = True
    neg_init_emb: Tensor
    """[1, L, D] e_n at the start (a buffer; the anchor's centre)."""
    neg_unit: Tensor
    """Scalar RMS of the prompt's embeddings (a buffer): e_n's offset is ``neg_unit * neg_offset``."""
    neg_offset: nn.Parameter
    """[1, L, D] u, e_n's learned offset in units of ``neg_unit`` (what AdamW trains and decays)."""
    learner: NegLearner

    def setup(self, ctx: GuidanceContext) -> None:
        super().setup(ctx)
        c = self.config
        init = ctx.cond.negative_emb if c.negative.init == "negative" else ctx.cond.uncond_emb
        self.register_buffer("neg_init_emb", init.detach().clone().float())
        self.register_buffer("neg_unit", embedding_rms(ctx.cond.prompt_emb))
        self.neg_offset = nn.Parameter(torch.zeros_like(self.neg_init_emb))
        self.learner = LEARNERS[c.neg_loss](c, ctx)
        if c.reward_scaling is not None:
            self.reward_stats = RunningMoments(c.reward_scaling.momentum)
        self.loss_scale = DynamicLossScale(enabled=c.negative.loss_scaling == "dynamic")

    @property
    def neg_emb(self) -> Tensor:
        """[1, L, D] the learnable negative embedding e_n."""
        return self.neg_init_emb + self.neg_unit * self.neg_offset

    def _neg_for_update(self) -> Tensor:
        """[1, L, D] e_n as an update's backward sees it: its gradient passes through the dynamic loss scale."""
        return self.neg_init_emb + self.neg_unit * self.loss_scale.unscale(self.neg_offset)

    def param_groups(self) -> list[ParamGroup]:
        """e_n's offset, with its own AdamW settings, learning-rate schedule and decoupled anchor."""
        n = self.config.negative
        return [ParamGroup("negative_embedding", [self.neg_offset], n.lr, n.betas, n.eps, n.anchor_decay)]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        if prefix + "neg_delta" in state_dict:
            raise RuntimeError(
                "this checkpoint is from psdkit before the replay pool (e_n stored as neg_delta, in absolute units): "
                "resume it with psdkit at commit e734b2b or earlier, or start a new run"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _window(self, step: int, max_steps: int) -> bool:
        """Whether ``step`` lies in e_n's update window (``negative.start`` <= fraction < ``negative.stop``)."""
        n = self.config.negative
        return n.start <= step / max(max_steps, 1) < n.stop

    def updating(self, step: int, max_steps: int) -> bool:
        """Whether e_n is trained at ``step`` (never while the learner has nothing to learn from)."""
        every = self.config.negative.every
        return self._window(step, max_steps) and step % every == 0 and self.learner.active()

    def prepare(self, progress: bool = False) -> None:
        """The learner's one-time work (the replay pool's draw) before the first step."""
        self.learner.prepare(progress)

    @classmethod
    def memory_estimate(cls, config: PSDConfig, sample: StateSize) -> tuple[int, str, str]:
        """The replay pool's samples (fp32, on the prior's device)."""
        if config.neg_loss != "pool" or sample.sample_shape is None:
            return 0, "", ""
        p, shape = config.pool, sample.sample_shape
        n = sample.labels * p.size * p.copies * sample.group
        why = (f"replay pool: {sample.labels} labels x {p.size} cameras x {p.copies} samples x {sample.group} views x "
               f"{list(shape)} fp32")  # fmt: skip
        return n * math.prod(shape) * 4, why, "guidance.config.pool.size"

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, step = self.config, self.ctx.prior, inp.step
        self.learner.maintain(step, self._window(step, inp.max_steps))
        update = self.updating(step, inp.max_steps)
        copies = self.learner.noise_copies if update else 1
        n = forward_noise(prior, inp, c.t_min(step), c.t_max(step), copies=copies)
        texts = inp.reward_prompts(self.ctx.cond, copies)
        space = n.rescale_space(c.guidance_rescale_in)
        if update:
            self.loss_scale.update()
        vi, cams = inp.view_index.repeat(copies), inp.cameras.repeat(copies)
        pred = self._predict(n.x_t, n.t, vi, cams, grad_n=update and self.learner.needs_step_grad)
        rho = self._reward_scale(n, pred, texts, step, space) if c.reward_scaling is not None else 1.0

        def teacher(s: float, phi: float) -> Tensor:
            return self._teacher(pred, s, phi, rho, step, space)

        cfg = (c.guidance_scale(step), c.guidance_rescale)
        eps_t = teacher(*cfg)
        w = timestep_weight(c.weighting, n.alpha, n.sigma)
        z_rep = n.z_copies
        grad = broadcast(w, z_rep) * (eps_t.detach() - n.eps)
        loss = c.loss_scale * residual_loss(z_rep, grad)
        logs: dict[str, Tensor] = {"grad_norm": grad.flatten(1).norm(dim=1).mean().detach()}
        if isinstance(rho, Tensor):
            logs["rho"] = rho.mean()
        if update:
            state = Step(inp, n, pred, texts, teacher, eps_t, cfg, w, copies)
            neg_loss, neg_logs = self.learner.loss(state, self._neg_for_update())
            loss = loss + self.loss_scale.scale_loss(neg_loss)
            logs.update(neg_logs)
            logs["neg_loss_scale"] = self.loss_scale.scale.detach().float()
        logs["neg_drift"] = self.neg_offset.detach().pow(2).mean().sqrt()  # RMS of u: units of the prompt's RMS
        return GuidanceOutput(loss=loss, logs=logs)

    def _predict(self, x_t: Tensor, t: Tensor, vi: Tensor, cams: Any, grad_n: bool) -> Predictions:
        """eps_y (and eps_u for p2) without gradient, and eps_n (gradient to e_n iff ``grad_n``)."""
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        e_y = cond.prompt_emb[vi]
        e_n = (self._neg_for_update() if grad_n else self.neg_emb).expand_as(e_y).to(x_t)
        embs = [e_y, cond.uncond_emb.expand_as(e_y)] if c.form == "p2" else [e_y]
        if c.batch_conditionings:  # one prior call; with ``grad_n`` its backward spans every row
            with torch.set_grad_enabled(grad_n):
                *fixed, eps_n = predict_many(prior, x_t, t, [*embs, e_n], cams)
            fixed = [e.detach() for e in fixed]
        else:
            with torch.no_grad():
                fixed = predict_many(prior, x_t, t, embs, cams, batched=False)
            with torch.set_grad_enabled(grad_n):
                eps_n = prior.predict_noise(x_t, t, e_n, cams)
        return Predictions(fixed[0], fixed[1] if c.form == "p2" else None, eps_n)

    def _teacher(
        self, p: Predictions, s: float, phi: float, rho: Tensor | float, step: int, space: NativeSpace
    ) -> Tensor:
        """eps_T [N, C, h, w] at CFG scale ``s`` and rescale ``phi`` (gradient to e_n through ``p.eps_n``)."""
        c = self.config
        if c.form == "p1":
            return rescale_cfg(p.eps_n + s * (p.eps_y - p.eps_n), p.eps_y, phi, space)
        assert p.eps_u is not None
        pref = c.preference_scale(step) * rho * (p.eps_y - p.eps_n)
        return rescale_cfg(p.eps_u + s * (p.eps_y - p.eps_u) + pref, p.eps_y, phi, space)

    @torch.no_grad()
    def _reward_scale(self, n: Noised, p: Predictions, texts: list[str], step: int, space: NativeSpace) -> Tensor:
        """[N, 1, 1, 1] rho from the z-normalized reward of the estimate's CFG teacher; 1 during warm-up.

        Updates the running statistics (pooled over ranks). Tensor arithmetic only: no device-to-host read.
        """
        c = self.config
        sc = c.reward_scaling
        assert p.eps_u is not None and sc is not None
        s, phi = estimate_cfg(c, step)
        eps_cfg = rescale_cfg(p.eps_u + s * (p.eps_y - p.eps_u), p.eps_y, phi, space)
        r = score_estimate(self.ctx, c.reward_estimate.decode_size, n.x_t, n.t, eps_cfg, texts).float()
        r = group_mean(r, n.group)  # one rho per object
        self.reward_stats.update(r[:: n.group])
        rho = (1 - sc.kappa * self.reward_stats.zscore(r)).clamp(*sc.range)
        rho = torch.where(self.reward_stats.count >= sc.warmup, rho, torch.ones_like(rho))
        return broadcast(rho, n.x_t).to(n.x_t)
