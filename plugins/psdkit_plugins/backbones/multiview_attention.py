"""MVDream's 3D self-attention as a diffusers attention processor.

MVDream (https://arxiv.org/abs/2308.16512; reference code ``mvdream/ldm/modules/attention.py``,
``BasicTransformerBlock3D``) turns every self-attention of the Stable Diffusion UNet into attention over the
tokens of all views of one object: ``(b f) l c -> b (f l) c`` before ``attn1``, back after it. Cross-attention
to the text stays per view. Weights are unchanged, so the processor is all a diffusers UNet needs.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn


class MultiViewAttnProcessor:
    """Self-attention across the ``num_views`` consecutive views of each group; cross-attention per view.

    ``num_views`` arrives through the UNet's ``cross_attention_kwargs``; 1 (the default) is plain attention.
    """

    def __init__(self, attention: Literal["sdpa", "eager"] = "sdpa") -> None:
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        self.inner: Any = AttnProcessor2_0() if attention == "sdpa" else AttnProcessor()

    def __call__(
        self,
        attn: Any,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        num_views: int = 1,
    ) -> Tensor:
        """``hidden_states`` [B, L, C] with B = groups * num_views -> [B, L, C]."""
        if encoder_hidden_states is not None or num_views == 1:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        b, length, ch = hidden_states.shape
        if b % num_views:
            raise ValueError(f"a batch of {b} views is not whole groups of {num_views}")
        joint = hidden_states.reshape(b // num_views, num_views * length, ch)
        return self.inner(attn, joint, None, attention_mask, temb).reshape(b, length, ch)


def enable_multiview(unet: nn.Module, attention: Literal["sdpa", "eager"] = "sdpa") -> None:
    """Give every attention layer of a diffusers UNet the multi-view processor."""
    unet.set_attn_processor(MultiViewAttnProcessor(attention))  # type: ignore[operator]
