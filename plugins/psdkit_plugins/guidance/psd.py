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
    bank: the same loss over pairs of the prior's own samples of the prompt, ranked by R (``psdkit.ops.bank``): e_n
        compares the prompt's answers whatever the render shows, and R needs no gradient.
Reward-based scaling (``reward_scaling``, p2): ``rho_v = clamp(1 + kappa * (mu_R - R_v) / std_R)``.
Anchors: ``e_n = e_n(0) + delta``; ``delta`` is held back by the penalty ``anchor_weight * |delta|^2`` or by
AdamW's decoupled decay (``anchor_decay``), which does not depend on the reward's scale.
The reward scores the *base* prompt (view suffixes are for the prior), the one-step estimate of a teacher
with its own CFG scale (``reward_guidance_scale``), and the e_n loss is averaged over the samples the
timestep gate keeps in the *global* batch, so DDP gives the single-process result (docs/method.md).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import GuidanceContext, GuidanceInput, GuidanceOutput, GuidanceStrategy, ParamGroup
from psdkit.ops.bank import BankDraw, bank_loss, sample_bank
from psdkit.ops.ddp import global_sum, global_weighted_mean, world_size
from psdkit.ops.distill import (
    NativeSpace,
    Noised,
    RescaleIn,
    Weighting,
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
from psdkit_plugins.guidance._psd_keep import guidance_energy, prompt_taken, teacher_moved


@dataclasses.dataclass(frozen=True)
class PSDConfig:
    """Config of PSD."""

    guidance_scale: Schedule = knob(Schedule(7.5), ge=0.0)
    """s, CFG scale of the teacher."""
    guidance_rescale: float = knob(0.0, ge=0.0, le=1.0)
    """CFG rescale phi of the teacher (Lin et al. 2024), relative to eps_y's std; 0 = plain CFG."""
    guidance_rescale_in: RescaleIn = "native"
    """Where rescale matches standard deviations: native (the prior's raw prediction) or x0 (MVDream's
    recon_std_rescale); pooled over each group of views of a multi-view prior."""
    form: Literal["p1", "p2"] = "p1"
    """p1: the learnable negative is the CFG baseline; p2: a separate preference term on top of CFG."""
    preference_scale: Schedule = knob(Schedule(1.0), ge=0.0)
    """lambda_P, weight of the preference term (p2 only)."""
    neg_init: Literal["negative", "uncond"] = "negative"
    """Initial e_n: the recipe's negative prompt or the empty prompt."""
    neg_loss: Literal["reward", "pairwise", "bank"] = "reward"
    """How e_n learns: reward back-propagation (Variant A), pairwise implicit rewards of two noisings of the render
    (Variant B), or implicit rewards of the prior's own samples of the prompt ranked by the reward (bank)."""
    bank_copies: int = knob(4, ge=2)
    """Samples of the prompt per view in each bank (neg_loss bank); each pair of a view's samples is one comparison."""
    bank_steps: int = knob(25, ge=1)
    """DDIM steps that draw each bank sample from pure noise (two prior calls per sample and step)."""
    bank_guidance_scale: float = knob(7.5, ge=0.0)
    """CFG scale, against the empty prompt, the bank's samples are drawn at."""
    bank_beta: float = knob(3000.0, gt=0.0)
    """beta of the bank's implicit rewards, on per-pixel mean squared errors (Diffusion-DPO's scale)."""
    bank_t_range: tuple[float, float] = (0.02, 0.98)
    """Timesteps, as fractions of T, at which the bank's samples are noised for their implicit rewards."""
    neg_lr: Schedule = knob(Schedule(1e-3), ge=0.0)
    """Learning rate of e_n (Adam)."""
    neg_betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas of e_n (the values the quickstart was tuned with)."""
    neg_eps: float = knob(1e-15, gt=0.0)
    """Adam epsilon of e_n (the quickstart's tuned value)."""
    neg_every: int = knob(1, ge=1)
    """Update e_n every this many steps."""
    update_start: float = knob(0.0, ge=0.0, le=1.0)
    """Fraction of training after which e_n starts updating."""
    update_stop: float = knob(0.9, ge=0.0, le=1.0)
    """Fraction of training after which e_n is frozen (a stationary target for the end)."""
    reward_t_max: float = knob(0.5, ge=0.0, le=1.0)
    """Only timesteps <= reward_t_max * T train e_n (x0 is too blurry for the reward above)."""
    reward_gate: Literal["hard", "alpha_bar"] = "hard"
    """hard: drop samples above reward_t_max; alpha_bar: also weight each kept sample by alpha_t^2 (an
    absolute weight: the loss is divided by the number of kept samples, not by the sum of weights)."""
    reward_guidance_scale: Schedule | None = knob(None, ge=0.0)
    """CFG scale of the teacher whose one-step x0 the reward scores (Variant A, reward scaling); null: the
    teacher's guidance_scale. A large scale saturates the decoded x0, and clamped pixels pass no gradient."""
    reward_guidance_rescale: float | None = knob(None, ge=0.0, le=1.0)
    """CFG rescale phi of that teacher; null: guidance_rescale."""
    reward_weight: float = knob(1.0, gt=0.0)
    """Multiplier of the e_n loss."""
    anchor_weight: float = knob(0.0, ge=0.0)
    """Weight of the penalty ||e_n - e_n(0)||^2 (limits drift and reward hacking). Added to the reward's
    gradient before Adam, so its strength depends on the reward's gradient scale (see anchor_decay)."""
    anchor_decay: float = knob(0.0, ge=0.0)
    """Decoupled anchor: AdamW weight decay of e_n's offset from e_n(0) (each update shrinks the offset by
    neg_lr x anchor_decay of itself). The offset settles near Adam's normalized step / anchor_decay per
    coordinate, whatever the reward's scale, so one value keeps the prompt under any reward
    (docs/method.md). neg_lr x anchor_decay must stay below 2. 0: off."""
    prompt_guard: float = knob(0.0, ge=0.0)
    """Weight of the prompt guard (p1): on e_n update steps, penalizes the guidance direction eps_y - eps_n for
    losing its component along the prompt's own CFG direction eps_y - eps_u, as mean(relu(1 - <g, g0> /
    |g0|^2)^2); e_n may then steer between the prompt's answers but not away from the prompt (docs/method.md).
    0: off (no extra prior call)."""
    prompt_guard_keep: float = knob(0.0, ge=0.0, le=1.0)
    """Share of the prompt's guidance the guard keeps: 0 only forbids turning it around (<g, g0> < 0), 1 forbids
    any loss of it (which also stops e_n from steering between answers that share the prompt's words)."""
    teacher_trust: float = knob(0.0, ge=0.0)
    """Weight of the teacher's trust region (p1 and p2): on e_n update steps, penalizes relu(D - radius) where D =
    mean |eps_n - eps_n0|^2 over the global batch / running mean |eps_y - eps_u|^2 is how far e_n has moved the
    prior's prediction from that of its start, in units of the prompt's own guidance energy (docs/method.md).
    0: off (no extra prior call)."""
    teacher_trust_radius: float = knob(0.0, ge=0.0)
    """D below which the trust region costs nothing."""
    teacher_trust_momentum: float = knob(0.99, ge=0.0, lt=1.0)
    """Momentum of the running mean of |eps_y - eps_u|^2 that D is measured in (exact pooled mean until
    1 / (1 - momentum) samples)."""
    pairwise_beta: float = knob(1.0, gt=0.0)
    """beta of the implicit reward (Variant B)."""
    reward_scaling: bool = False
    """Scale the preference term per view by the z-normalized reward (p2)."""
    scaling_kappa: float = knob(0.5, ge=0.0)
    """kappa of reward-based scaling."""
    scaling_range: tuple[float, float] = (0.0, 2.0)
    """Clamp of rho."""
    scaling_momentum: float = knob(0.99, ge=0.0, lt=1.0)
    """EMA momentum of the running reward mean and variance (exact pooled moments until 1 / (1 - momentum)
    samples are seen)."""
    scaling_warmup: int = knob(16, ge=0)
    """Rewards to collect before rho departs from 1 (the variance of a handful of samples is not an estimate)."""
    neg_loss_scaling: Literal["dynamic", "off"] = "dynamic"
    """Dynamic loss scaling of the e_n update's backward through the frozen prior (fp16 gradients underflow
    without it); exact in any precision (a power of two), so always safe."""
    neg_loss_scale_init: float = knob(2.0**16, ge=1.0)
    """Initial loss scale."""
    neg_loss_scale_interval: int = knob(100, ge=1)
    """Clean e_n updates after which the scale doubles (it halves on an overflow)."""
    neg_loss_scale_max: float = knob(2.0**24, ge=1.0)
    """Upper bound of the loss scale."""
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
    reward_decode_size: int | None = knob(None, ge=1, le=4096)
    """Resize x0's latents to this side before decoding them for the reward (a cheaper VAE decode; the
    reward resizes to its own input size anyway); null: decode at full size."""

    def __post_init__(self) -> None:
        if self.neg_loss_scale_max < self.neg_loss_scale_init:
            raise ValueError("neg_loss_scale_max must be >= neg_loss_scale_init")
        if self.update_stop < self.update_start:
            raise ValueError("update_stop must be >= update_start")
        if self.neg_lr.bounds()[1] * self.anchor_decay >= 2:
            raise ValueError("anchor_decay: neg_lr x anchor_decay must be < 2 (the decay would overshoot e_n(0))")
        if self.scaling_range[0] > self.scaling_range[1]:
            raise ValueError("scaling_range: low end above high end")
        if not 0 <= self.bank_t_range[0] <= self.bank_t_range[1] <= 1:
            raise ValueError("bank_t_range: needs 0 <= low <= high <= 1")


@dataclasses.dataclass
class Predictions:
    """The prior's predictions at one step's ``x_t`` (rows: copies x views)."""

    eps_y: Tensor
    """[N, C, h, w] prompt-conditioned, no gradient."""
    eps_u: Tensor | None
    """[N, C, h, w] unconditional (p2, or the prompt guard or trust region on an update step), no gradient."""
    eps_n: Tensor
    """[N, C, h, w] conditioned on e_n, with gradient to e_n on update steps."""
    eps_n0: Tensor | None = None
    """[N, C, h, w] conditioned on e_n's start (the trust region on an update step), no gradient."""


@dataclasses.dataclass
class NegLossInput:
    """What the e_n loss of one step needs."""

    noised: Noised
    pred: Predictions
    eps_r: Tensor
    """[N, C, h, w] the reward branch's teacher (gradient to e_n)."""
    texts: list[str]
    """[N] prompts the reward scores against."""
    w: Tensor
    """[N] w(t) of the 3D update."""
    n_noise: int
    draw: BankDraw
    """The step's views and randomness (a bank's draw)."""


class PSD(GuidanceStrategy):
    """Preference Score Distillation with a learnable negative text embedding."""

    Config = PSDConfig
    needs_reward = True
    neg_init_emb: Tensor
    """[1, L, D] e_n at the start (a buffer; the anchor's centre)."""
    neg_delta: nn.Parameter
    """[1, L, D] e_n's learned offset from ``neg_init_emb`` (what the optimizer trains and decays)."""

    def setup(self, ctx: GuidanceContext) -> None:
        super().setup(ctx)
        c = self.config
        init = ctx.cond.negative_emb if c.neg_init == "negative" else ctx.cond.uncond_emb
        self.register_buffer("neg_init_emb", init.detach().clone().float())
        self.neg_delta = nn.Parameter(torch.zeros_like(self.neg_init_emb))
        self._start_is_uncond = bool(torch.equal(init, ctx.cond.uncond_emb))  # then eps_n0 = eps_u: no extra call
        if c.teacher_trust > 0:  # only then: checkpoints of runs without it keep their keys
            self.prompt_energy = RunningMoments(c.teacher_trust_momentum)
        self.reward_stats = RunningMoments(c.scaling_momentum)
        self.loss_scale = DynamicLossScale(
            c.neg_loss_scale_init,
            c.neg_loss_scale_interval,
            c.neg_loss_scale_max,
            enabled=c.neg_loss_scaling == "dynamic",
        )

    @property
    def neg_emb(self) -> Tensor:
        """[1, L, D] the learnable negative embedding e_n = e_n(0) + offset."""
        return self.neg_init_emb + self.neg_delta

    def param_groups(self) -> list[ParamGroup]:
        """e_n's offset, with its own Adam settings, learning-rate schedule and decoupled anchor."""
        c = self.config
        return [ParamGroup("negative_embedding", [self.neg_delta], c.neg_lr, c.neg_betas, c.neg_eps, c.anchor_decay)]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Reads checkpoints that stored e_n itself (``neg_emb``, before the offset) as well."""
        old = state_dict.pop(prefix + "neg_emb", None)
        if old is not None and prefix + "neg_delta" not in state_dict:
            state_dict[prefix + "neg_delta"] = old - state_dict[prefix + "neg_init_emb"]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        texts = inp.reward_prompts(self.ctx.cond, n_noise)
        space = n.rescale_space(c.guidance_rescale_in)
        if update:
            self.loss_scale.update()
        vi, cams = inp.view_index.repeat(n_noise), inp.cameras.repeat(n_noise)
        pred = self._predict(n.x_t, n.t, vi, cams, update, grad_n=update and self._grad_through_eps_n)
        rho = self._reward_scale(n, pred, texts, inp.step, space) if c.form == "p2" and c.reward_scaling else 1.0
        eps_t = self._teacher(pred, c.guidance_scale(inp.step), c.guidance_rescale, rho, inp.step, space)
        w = timestep_weight(c.weighting, n.alpha, n.sigma)
        z_rep = n.z_copies
        grad = broadcast(w, z_rep) * (eps_t.detach() - n.eps)
        loss = c.loss_scale * residual_loss(z_rep, grad)
        logs: dict[str, Tensor] = {"grad_norm": grad.flatten(1).norm(dim=1).mean().detach()}
        if isinstance(rho, Tensor):
            logs["rho"] = rho.mean()
        if update:
            s_r, phi_r = self._reward_cfg(inp.step)
            same = c.neg_loss == "bank" or (s_r, phi_r) == (c.guidance_scale(inp.step), c.guidance_rescale)
            eps_r = eps_t if same else self._teacher(pred, s_r, phi_r, rho, inp.step, space)
            draw = BankDraw(inp.cameras, inp.view_index, tuple(n.z.shape), inp.generator, inp.batch_offset,
                            inp.global_batch)  # fmt: skip
            neg_loss, neg_logs = self._neg_loss(NegLossInput(n, pred, eps_r, texts, w, n_noise, draw))
            anchor = c.anchor_weight * (self.neg_delta**2).sum()
            keep = self._prompt_guard(pred, neg_logs) + self._trust(pred, neg_logs)
            loss = loss + c.reward_weight * self.loss_scale.scale_loss(neg_loss) + anchor + keep
            logs.update(neg_logs)
            logs["neg_loss_scale"] = self.loss_scale.scale.detach().float()
        logs["neg_drift"] = self.neg_delta.norm().detach()
        return GuidanceOutput(loss=loss, logs=logs)

    def _prompt_guard(self, p: Predictions, logs: dict[str, Tensor]) -> Tensor | float:
        """prompt_guard x the share of the prompt's guidance e_n has taken away (``_psd_keep.prompt_taken``)."""
        c = self.config
        if c.prompt_guard == 0 or c.form != "p1" or p.eps_u is None:
            return 0.0
        share = prompt_taken(p.eps_y, p.eps_u, p.eps_n, c.prompt_guard_keep)
        logs["prompt_taken"] = global_sum(share) / world_size()  # the global share (no host read)
        return c.prompt_guard * self.loss_scale.scale_loss(share)  # e_n enters unscaled, as for the reward loss

    def _trust(self, p: Predictions, logs: dict[str, Tensor]) -> Tensor | float:
        """teacher_trust x relu(D - radius), D: how far e_n moved the prediction (``_psd_keep.teacher_moved``)."""
        c = self.config
        if c.teacher_trust == 0 or p.eps_u is None:
            return 0.0
        self.prompt_energy.update(guidance_energy(p.eps_y, p.eps_u))
        start = p.eps_u if p.eps_n0 is None else p.eps_n0
        moved = teacher_moved(p.eps_n, start, self.prompt_energy.mean)
        global_moved = global_sum(moved) / world_size()  # D over the whole batch (no host read)
        logs["teacher_moved"] = global_moved
        outside = (global_moved > c.teacher_trust_radius).float()  # the rank average is relu(D - radius)
        return c.teacher_trust * self.loss_scale.scale_loss(outside * (moved - c.teacher_trust_radius))

    def _reward_cfg(self, step: int) -> tuple[float, float]:
        """(scale, phi) of the reward branch's teacher."""
        c = self.config
        s = c.guidance_scale(step) if c.reward_guidance_scale is None else c.reward_guidance_scale(step)
        phi = c.guidance_rescale if c.reward_guidance_rescale is None else c.reward_guidance_rescale
        return s, phi

    def _neg_for_update(self) -> Tensor:
        """[1, L, D] e_n as an update's backward sees it: its gradient passes through the dynamic loss scale."""
        return self.neg_init_emb + self.loss_scale.unscale(self.neg_delta)

    @property
    def _grad_through_eps_n(self) -> bool:
        """Whether an update step back-propagates through the step's eps_n (not for the bank alone)."""
        c = self.config
        return c.neg_loss != "bank" or c.prompt_guard > 0 or c.teacher_trust > 0

    def _predict(self, x_t: Tensor, t: Tensor, vi: Tensor, cams, update: bool, grad_n: bool) -> Predictions:
        """eps_y and eps_u (p2, or the keeping terms on ``update`` steps), without gradient, and eps_n (gradient to
        e_n iff ``grad_n``)."""
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        e_y = cond.prompt_emb[vi]
        e_n = self._neg_for_update() if grad_n else self.neg_emb
        e_n = e_n.expand_as(e_y).to(x_t)
        with_u = c.form == "p2" or (update and (c.prompt_guard > 0 or c.teacher_trust > 0))
        with_n0 = update and c.teacher_trust > 0 and not self._start_is_uncond
        embs = [e_y, cond.uncond_emb.expand_as(e_y)] if with_u else [e_y]
        embs += [self.neg_init_emb.expand_as(e_y).to(x_t)] if with_n0 else []
        if c.batch_conditionings:  # one prior call; with ``grad_n`` its backward spans every row
            with torch.set_grad_enabled(grad_n):
                *fixed, eps_n = predict_many(prior, x_t, t, [*embs, e_n], cams)
            fixed = [e.detach() for e in fixed]
        else:
            with torch.no_grad():
                fixed = predict_many(prior, x_t, t, embs, cams, batched=False)
            with torch.set_grad_enabled(grad_n):
                eps_n = prior.predict_noise(x_t, t, e_n, cams)
        return Predictions(fixed[0], fixed[1] if with_u else None, eps_n, fixed[-1] if with_n0 else None)

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

    def _score(self, x_t: Tensor, t: Tensor, eps_t: Tensor, texts: list[str]) -> Tensor:
        """[B] reward of the one-step estimate x0(x_t, eps_T), decoded at ``reward_decode_size``."""
        prior, reward, size = self.ctx.prior, self.ctx.require_reward(), self.config.reward_decode_size
        x0 = prior.predict_x0(x_t, t, eps_t)
        if size is not None and x0.shape[-1] != size:
            x0 = F.interpolate(x0, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return reward(prior.decode(x0), texts)

    @torch.no_grad()
    def _reward_scale(self, n: Noised, p: Predictions, texts: list[str], step: int, space: NativeSpace) -> Tensor:
        """[N, 1, 1, 1] rho from the z-normalized reward of the reward branch's CFG estimate; 1 during warm-up.

        Updates the running statistics (pooled over ranks). Tensor arithmetic only: no device-to-host read.
        """
        c = self.config
        assert p.eps_u is not None
        s, phi = self._reward_cfg(step)
        eps_cfg = rescale_cfg(p.eps_u + s * (p.eps_y - p.eps_u), p.eps_y, phi, space)
        r = group_mean(self._score(n.x_t, n.t, eps_cfg, texts).float(), n.group)  # one rho per object
        self.reward_stats.update(r[:: n.group])
        rho = (1 - c.scaling_kappa * self.reward_stats.zscore(r)).clamp(*c.scaling_range)
        rho = torch.where(self.reward_stats.count >= c.scaling_warmup, rho, torch.ones_like(rho))
        return broadcast(rho, n.x_t).to(n.x_t)

    def _gate(self, t: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        """([B] kept (0/1), [B] weight of each sample in the e_n loss)."""
        c = self.config
        keep = (t.float() <= c.reward_t_max * (self.ctx.prior.num_train_timesteps - 1)).float()
        return keep, (keep * alpha**2 if c.reward_gate == "alpha_bar" else keep)

    def _neg_loss(self, inp: NegLossInput) -> tuple[Tensor, dict[str, Tensor]]:
        """The e_n loss (without the anchor), averaged over the kept samples of the global batch."""
        c, n = self.config, inp.noised
        if c.neg_loss == "bank":
            return self._bank_loss(inp.draw)
        keep, weight = self._gate(n.t, n.alpha)
        if c.neg_loss == "reward":
            r = self._score(n.x_t, n.t, inp.eps_r, inp.texts)
            loss = global_weighted_mean(-r, weight, keep.sum())
            return loss, {"reward": r.mean().detach(), "neg_active": keep.mean()}
        with torch.no_grad():
            r = group_mean(self._score(n.x_t, n.t, inp.eps_r, inp.texts), n.group).view(inp.n_noise, -1)
        err_y = ((n.eps - inp.pred.eps_y) ** 2).flatten(1).mean(1)
        err_n = ((n.eps - inp.pred.eps_n) ** 2).flatten(1).mean(1)
        implicit = group_mean(-c.pairwise_beta * inp.w * (err_y - err_n), n.group).view(inp.n_noise, -1)
        win = (r[0] >= r[1]).float()
        margin = (2 * win - 1) * (implicit[0] - implicit[1])
        keep0, weight0 = keep.view(inp.n_noise, -1)[0], weight.view(inp.n_noise, -1)[0]
        loss = global_weighted_mean(-F.logsigmoid(margin), weight0, keep0.sum())
        return loss, {"reward": r.mean(), "neg_active": keep0.mean(), "pair_margin": margin.mean().detach()}

    def _bank_loss(self, draw: BankDraw) -> tuple[Tensor, dict[str, Tensor]]:
        """The bank's Bradley-Terry loss, averaged over the ranked pairs of the global batch."""
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        bank = sample_bank(prior, self.ctx.require_reward(), cond, draw, c.bank_copies, c.bank_steps,
                           c.bank_guidance_scale)  # fmt: skip
        loss, weight, logs = bank_loss(prior, bank, cond, self._neg_for_update(), c.bank_beta, c.bank_t_range, draw)
        return global_weighted_mean(loss, weight, weight.sum()), logs
