"""Rank-invariant reductions: a loss averaged over samples must not depend on how the batch is split.

DDP averages each parameter's gradient over ranks, so a per-rank loss ``sum_local / n_local`` becomes the
global mean only when every rank divides by the same count. A count that differs per rank (the samples a
timestep gate keeps, say) must be summed over ranks first; these helpers do that (one tiny all-reduce, no
host synchronisation) and are identities in a single process.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_sum(x: Tensor) -> Tensor:
    """``x`` summed over ranks (a detached copy; ``x`` itself is untouched)."""
    out = x.detach().clone()
    if world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def global_weighted_mean(values: Tensor, weights: Tensor, count: Tensor) -> Tensor:
    """``sum(weights * values) / count`` over the global batch, as this rank's share of a DDP-averaged loss.

    ``values`` and ``weights`` are [B] on this rank; ``count`` is this rank's contribution to the normalizer
    (e.g. the number of samples a gate keeps). Returns ``world * sum_local / max(global count, 1)``, whose
    average over ranks (what DDP's gradient all-reduce computes) is the global weighted mean.
    """
    total = global_sum(count.float()).clamp_min(1.0)
    return world_size() * (weights * values).sum() / total
