"""PSD's Variant B e_n learner (``neg_loss: pairwise``): two noisings of each render at one timestep, ranked by the
reward of their one-step estimates; Bradley-Terry loss on the implicit rewards
``r(i) = -beta * w(t) * (|eps_i - eps_y_i|^2 - |eps_i - eps_n_i|^2)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit.ops.ddp import global_weighted_mean
from psdkit.ops.distill import group_mean
from psdkit_plugins.guidance._psd_step import NegLearner, Step, estimate_cfg, gate, score_estimate


class PairwiseLearner(NegLearner):
    """Pairs of noisings of the render (DreamDPO's construction) as the implicit reward's comparisons."""

    noise_copies = 2

    def loss(self, step: Step, e_n: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The Bradley-Terry loss of each view's two noisings, over the samples the gate keeps."""
        c, n, p = self.config, step.noised, step.pred
        cfg = estimate_cfg(c, step.inp.step)
        eps_r = step.eps_t if cfg == step.cfg else step.teacher(*cfg)
        with torch.no_grad():
            r = score_estimate(self.ctx, c.reward_estimate.decode_size, n.x_t, n.t, eps_r, step.texts)
            r = group_mean(r, n.group).view(2, -1)
        err_y = ((n.eps - p.eps_y) ** 2).flatten(1).mean(1)
        err_n = ((n.eps - p.eps_n) ** 2).flatten(1).mean(1)
        implicit = group_mean(-c.pairwise_beta * step.w * (err_y - err_n), n.group).view(2, -1)
        margin = (2 * (r[0] >= r[1]).float() - 1) * (implicit[0] - implicit[1])
        keep = gate(c, n.t, self.ctx.prior.num_train_timesteps).view(2, -1)[0]
        loss = global_weighted_mean(-F.logsigmoid(margin), keep, keep.sum())
        return loss, {"reward": r.mean(), "neg_active": keep.mean(), "pair_margin": margin.mean().detach()}
