"""PSD's Variant A e_n learner (``neg_loss: reward``): minimize -R(decode(x0(x_t, eps_T(e_n)))) of the render's
one-step estimate, back-propagated through the frozen prior to e_n, over the samples the timestep gate keeps in the
global batch."""

from __future__ import annotations

from torch import Tensor

from psdkit.ops.ddp import global_weighted_mean
from psdkit_plugins.guidance._psd_step import NegLearner, Step, estimate_cfg, gate, score_estimate


class RewardLearner(NegLearner):
    """Reward back-propagation (ReNeg-style)."""

    def loss(self, step: Step, e_n: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """-R of the estimate, averaged over the samples the gate keeps (e_n's gradient comes through eps_n)."""
        c, n = self.config, step.noised
        cfg = estimate_cfg(c, step.inp.step)
        eps_r = step.eps_t if cfg == step.cfg else step.teacher(*cfg)
        keep = gate(c, n.t, self.ctx.prior.num_train_timesteps)
        r = score_estimate(self.ctx, c.reward_estimate.decode_size, n.x_t, n.t, eps_r, step.texts)
        loss = global_weighted_mean(-r, keep, keep.sum())
        return loss, {"reward": r.mean().detach(), "neg_active": keep.mean()}
