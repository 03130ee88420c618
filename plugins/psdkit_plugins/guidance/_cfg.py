"""Config fields and conditioning shared by the CFG-based strategies (one level of sharing, no deeper)."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import Conditioning
from psdkit.ops.distill import Noised, RescaleIn, Weighting, guide


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Timestep range, weighting and batching of a score-distillation strategy."""

    t_min: Schedule = knob(Schedule(0.02), ge=0.0, le=1.0)
    """Lowest timestep, as a fraction of T (a schedule for annealing)."""
    t_max: Schedule = knob(Schedule(0.98), ge=0.0, le=1.0)
    """Highest timestep, as a fraction of T."""
    weighting: Weighting = "sds"
    """w(t): sds = sigma^2, uniform, or sqrt_snr_inv = sigma / alpha."""
    batch_conditionings: bool = True
    """Run all conditionings of a step in one prior call."""


@dataclasses.dataclass(frozen=True)
class CFGConfig(NoiseConfig):
    """NoiseConfig plus classifier-free guidance."""

    guidance_scale: Schedule = knob(Schedule(7.5), ge=0.0)
    """s, classifier-free guidance scale."""
    guidance_rescale: float = knob(0.0, ge=0.0, le=1.0)
    """CFG rescale phi (Lin et al. 2024): 0 = plain CFG, 1 = guided eps rescaled to the conditional's std."""
    guidance_rescale_in: RescaleIn = "native"
    """Where rescale matches standard deviations: native (the prior's raw prediction, as diffusers) or x0
    (MVDream's recon_std_rescale); pooled over each group of views of a multi-view prior."""
    use_negative_prompt: bool = True
    """CFG baseline: the recipe's negative prompt (true) or the empty prompt (false)."""


def cfg_embeddings(cond: Conditioning, view_index: Tensor, use_negative_prompt: bool) -> tuple[Tensor, Tensor]:
    """(prompt embeddings [B, L, D] per view, CFG-baseline embeddings [B, L, D])."""
    e_y = cond.prompt_emb[view_index]
    base = cond.negative_emb if use_negative_prompt else cond.uncond_emb
    return e_y, base.expand_as(e_y)


def cfg_guided(c: CFGConfig, n: Noised, eps_b: Tensor, eps_y: Tensor, step: int, x_t: Tensor | None = None) -> Tensor:
    """CFG [B, ...] of ``eps_y`` over the baseline ``eps_b`` at ``step``'s scale, rescaled as ``c`` says (in
    ``guidance_rescale_in``, pooled over the prior's groups) at ``n.x_t``, or at ``x_t`` where the strategy
    predicted elsewhere (ISM's inverted point)."""
    space = n.rescale_space(c.guidance_rescale_in)
    if x_t is not None:
        space = dataclasses.replace(space, x_t=x_t)
    return guide(eps_b, eps_y, c.guidance_scale(step), c.guidance_rescale, space)
