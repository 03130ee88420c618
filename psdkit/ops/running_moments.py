"""Running mean and variance of a stream of scalars, for z-normalizing rewards during training."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from psdkit.ops.ddp import global_sum


class RunningMoments(nn.Module):
    """Mean and (population) variance of every sample seen so far, then exponentially weighted.

    Each batch is merged with weight ``w = max(n / (count + n), 1 - momentum)``: exactly the pooled mean and
    variance of all samples while fewer than ``1 / (1 - momentum)`` have been seen (no bias toward the initial
    state), an EMA with ``momentum`` after. The merge is the exact two-group formula
    ``var = (1 - w) var + w var_batch + w (1 - w) (mean_batch - mean)^2``, with the mean *before* the update.
    Batches are pooled over DDP ranks, so the statistics do not depend on how the batch is split.

    Args:
        momentum: EMA momentum once enough samples are seen.
    """

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, momentum: float = 0.99) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.tensor(0.0))
        self.register_buffer("var", torch.tensor(0.0))
        self.register_buffer("count", torch.tensor(0.0))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge the samples ``x`` [B] (this rank's; pooled over ranks). Tensor arithmetic only."""
        x = x.detach().float().flatten()
        sums = global_sum(torch.stack([x.new_tensor(float(x.numel())), x.sum(), (x * x).sum()]))
        n, s1, s2 = sums.unbind()
        batch_mean = s1 / n
        batch_var = (s2 / n - batch_mean**2).clamp_min(0.0)
        w = torch.maximum(n / (self.count + n), torch.tensor(1.0 - self.momentum, device=x.device))
        d = batch_mean - self.mean
        self.var.copy_((1 - w) * self.var + w * batch_var + w * (1 - w) * d**2)
        self.mean.add_(w * d)
        self.count.add_(n)

    def zscore(self, x: Tensor, eps: float = 1e-6) -> Tensor:
        """``(x - mean) / (std + eps)``."""
        return (x - self.mean) / (self.var.sqrt() + eps)
