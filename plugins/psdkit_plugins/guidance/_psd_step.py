"""What one PSD step hands its e_n learner, and the learner contract (one learner per module: ``_psd_pool``,
``_psd_reward``, ``_psd_pairwise``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from psdkit.contracts import GuidanceContext, GuidanceInput
from psdkit.ops.distill import Noised
from psdkit_plugins.guidance._psd_config import PSDConfig


@dataclasses.dataclass
class Predictions:
    """The prior's predictions at one step's ``x_t`` (rows: copies x views)."""

    eps_y: Tensor
    """[N, C, h, w] prompt-conditioned, no gradient."""
    eps_u: Tensor | None
    """[N, C, h, w] unconditional (form p2), no gradient."""
    eps_n: Tensor
    """[N, C, h, w] conditioned on e_n, with gradient to e_n where the learner needs it."""


@dataclasses.dataclass
class Step:
    """One PSD step, as an e_n learner sees it."""

    inp: GuidanceInput
    noised: Noised
    pred: Predictions
    texts: list[str]
    """[N] prompts the reward scores against."""
    teacher: Callable[[float, float], Tensor]
    """eps_T [N, C, h, w] at a CFG (scale, rescale), gradient to e_n through ``pred.eps_n``."""
    eps_t: Tensor
    """[N, C, h, w] the step's own teacher."""
    cfg: tuple[float, float]
    """(scale, rescale) of ``eps_t``."""
    w: Tensor
    """[N] w(t) of the 3D update."""
    copies: int
    """Noise copies of the step's views."""


class NegLearner(nn.Module):
    """How e_n learns (a submodule of PSD: its state is checkpointed with it)."""

    noise_copies = 1
    """Noisings of each view the step draws for this learner."""
    needs_step_grad = True
    """Whether the loss back-propagates through the step's eps_n (otherwise it runs without gradient)."""

    def __init__(self, config: PSDConfig, ctx: GuidanceContext) -> None:
        super().__init__()
        self.config, self.ctx = config, ctx

    def prepare(self, progress: bool) -> None:
        """Once before the first step (the pool draws itself). Default: nothing."""

    def maintain(self, step: int, updating_window: bool) -> None:
        """Bookkeeping at the start of every step (the pool's refresh). Default: nothing."""

    def active(self) -> bool:
        """Whether updates can train e_n at all (the pool: only if its rewards are not all tied). Default: yes."""
        return True

    def loss(self, step: Step, e_n: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(this rank's share of the e_n loss, logs); ``e_n`` [1, L, D] carries the gradient (through the loss
        scale)."""
        raise NotImplementedError


def score_estimate(ctx: GuidanceContext, decode_size: int | None, x_t: Tensor, t: Tensor, eps: Tensor,
                   texts: list[str]) -> Tensor:  # fmt: skip
    """[B] reward of the one-step estimate x0(x_t, eps), its latents resized to ``decode_size`` before decoding."""
    prior, reward = ctx.prior, ctx.require_reward()
    x0 = prior.predict_x0(x_t, t, eps)
    if decode_size is not None and x0.shape[-1] != decode_size:
        x0 = F.interpolate(x0, size=(decode_size, decode_size), mode="bilinear", align_corners=False, antialias=True)
    return reward(prior.decode(x0), texts)


def estimate_cfg(c: PSDConfig, step: int) -> tuple[float, float]:
    """(scale, rescale) of the teacher whose estimate the reward scores."""
    e = c.reward_estimate
    s = c.guidance_scale(step) if e.guidance_scale is None else e.guidance_scale(step)
    return s, c.guidance_rescale if e.guidance_rescale is None else e.guidance_rescale


def gate(c: PSDConfig, t: Tensor, num_train_timesteps: int) -> Tensor:
    """[B] 1 where ``t`` <= reward_estimate.t_max * T (the samples whose estimate the reward can judge), else 0."""
    return (t.float() <= c.reward_estimate.t_max * (num_train_timesteps - 1)).float()
