"""Regularizers of a render's accumulated opacity, shared by renderers."""

from __future__ import annotations

from torch import Tensor


def opacity_terms(opacity: Tensor, sparsity: float, entropy: float) -> dict[str, Tensor]:
    """``sparsity`` x mean opacity and ``entropy`` x mean binary entropy of ``opacity`` [B, 1, H, W] (pushes each
    pixel to empty or opaque), for the weights that are positive."""
    terms: dict[str, Tensor] = {}
    if sparsity > 0:
        terms["sparsity"] = sparsity * opacity.mean()
    if entropy > 0:
        a = opacity.clamp(1e-5, 1 - 1e-5)
        terms["entropy"] = entropy * (-(a * a.log() + (1 - a) * (1 - a).log())).mean()
    return terms
