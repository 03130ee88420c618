"""Dynamic loss scaling for one branch of the graph (a learnable input fed through a frozen fp16 network).

A gradient that passes back through fp16 activations underflows to zero when it is small (seen: the
negative-embedding gradient through a tiny fp16 UNet and VAE is exactly zero, docs/method.md). The
gradient leaving the branch's loss is multiplied by ``scale`` and the gradient reaching the learnable input
is divided by it again, so the fp16 backward runs on values ``scale`` times larger and the result is
unchanged (a power of two: exact in floating point). A non-finite gradient at the input means the scale
overflowed: that gradient is dropped (zero), the scale halves, and after ``growth_interval`` clean backwards
it doubles, as torch.amp's GradScaler does. Everything stays on the device: no host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _GradScale(torch.autograd.Function):
    """Identity forward (values stay what they are). Backward at the loss (``unscale=False``): multiply by the
    scale. Backward at the learnable input (``unscale=True``): divide by it, and zero a non-finite gradient
    (recording the overflow)."""

    @staticmethod
    def forward(ctx, x: Tensor, scaler: DynamicLossScale, unscale: bool) -> Tensor:
        """``x`` unchanged."""
        ctx.scaler, ctx.unscale = scaler, unscale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        """The scaled or unscaled gradient (see the class)."""
        scaler: DynamicLossScale = ctx.scaler
        scale = scaler.scale.to(grad.dtype)
        if not ctx.unscale:
            return grad * scale, None, None
        finite = torch.isfinite(grad).all()
        scaler.overflow.logical_or_(~finite)
        scaler.seen.fill_(True)
        out = grad / scale
        return torch.where(finite, out, torch.zeros_like(out)), None, None


class DynamicLossScale(nn.Module):
    """The scale of one branch, as buffers (checkpointed, broadcast from rank 0 under DDP).

    Use: ``x_in = scaler.unscale(x)`` where the learnable ``x`` enters the fp16 network, and
    ``scaler.scale_loss(loss)`` on the branch's loss; call :meth:`update` once per step before either. The
    loss keeps its value (logs are unchanged): only its gradient is scaled.

    Args:
        init: initial scale (a power of two).
        growth_interval: clean backwards after which the scale doubles.
        max_scale: the scale never grows above this.
        enabled: False makes every method an identity (scale 1).
    """

    scale: Tensor
    clean: Tensor
    overflow: Tensor
    seen: Tensor

    def __init__(
        self, init: float = 2.0**16, growth_interval: int = 100, max_scale: float = 2.0**24, enabled: bool = True
    ) -> None:
        super().__init__()
        self.enabled, self.growth_interval, self.max_scale = enabled, growth_interval, max_scale
        self.register_buffer("scale", torch.tensor(float(init) if enabled else 1.0))
        self.register_buffer("clean", torch.tensor(0))
        self.register_buffer("overflow", torch.tensor(False))
        self.register_buffer("seen", torch.tensor(False))

    def update(self) -> None:
        """Apply the last backward's outcome (if one ran since the last call): halve after an overflow, double
        after ``growth_interval`` clean backwards. Tensor arithmetic only."""
        if not self.enabled:
            return
        seen, overflow = self.seen, self.overflow
        clean = torch.where(seen, torch.where(overflow, torch.zeros_like(self.clean), self.clean + 1), self.clean)
        grow = seen & ~overflow & (clean >= self.growth_interval)
        doubled = (self.scale * 2).clamp_max(self.max_scale)
        halved = (self.scale * 0.5).clamp_min(1.0)
        scale = torch.where(seen & overflow, halved, torch.where(grow, doubled, self.scale))
        self.scale.copy_(scale)
        self.clean.copy_(torch.where(grow, torch.zeros_like(clean), clean))
        self.overflow.fill_(False)
        self.seen.fill_(False)

    def unscale(self, x: Tensor) -> Tensor:
        """``x`` unchanged; its gradient is divided by the scale (zero if non-finite)."""
        if not self.enabled:
            return x
        return _GradScale.apply(x, self, True)

    def scale_loss(self, loss: Tensor) -> Tensor:
        """``loss`` unchanged; the gradient flowing back from it is multiplied by the scale."""
        return _GradScale.apply(loss, self, False) if self.enabled else loss
