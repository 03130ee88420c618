"""PSD's prompt-keeping terms on the negative embedding, measured in the prior's noise space (docs/method.md).

Both measure what the learnable negative does to the prior's prediction against the prompt's own CFG direction
``g0 = eps_y - eps_u``, over the *global* batch, so they apply to any prior and text encoder and give the
single-process value under DDP.
"""

from __future__ import annotations

import torch
from torch import Tensor

from psdkit.ops.ddp import global_sum, world_size


def prompt_taken(eps_y: Tensor, eps_u: Tensor, eps_n: Tensor, keep: float) -> Tensor:
    """sum relu(keep |g0|^2 - <g, g0>) / sum |g0|^2 over the global batch, g = eps_y - eps_n [N, C, h, w]: the share
    of the prompt's guidance the negative has taken away (0 while it only steers between the prompt's answers).

    Returns this rank's share of the DDP-averaged value (world size x local sum / global normalizer).
    """
    g0 = (eps_y - eps_u).flatten(1).float()
    energy = (g0 * g0).sum(1)
    g = (eps_y - eps_n).flatten(1).float()
    taken = torch.relu(keep * energy - (g * g0).sum(1))  # relu: no gradient when nothing is taken
    return world_size() * taken.sum() / global_sum(energy.sum()).clamp_min(1e-12)


def teacher_moved(eps_n: Tensor, eps_n0: Tensor, energy: Tensor) -> Tensor:
    """mean |eps_n - eps_n0|^2 over the global batch / ``energy`` (scalar, the running mean of |eps_y - eps_u|^2 per
    sample): how far the negative has moved the prior's prediction from where it started, in units of the
    prompt's own guidance energy (scale-free in the prior's output and in the reward). A running normalizer,
    because one batch's energy vanishes when every view drew a low noise level. [N, C, h, w] each.

    Returns this rank's share of the DDP-averaged value.
    """
    moved = (eps_n - eps_n0).flatten(1).float()
    count = global_sum(moved.new_tensor(float(moved.shape[0])))
    return world_size() * (moved * moved).sum() / (count * energy.clamp_min(1e-12))


def guidance_energy(eps_y: Tensor, eps_u: Tensor) -> Tensor:
    """[N] |eps_y - eps_u|^2 per sample: the energy of the prompt's own CFG direction."""
    g0 = (eps_y - eps_u).flatten(1).float()
    return (g0 * g0).sum(1)
