"""Convert the original BLIP state dict (as in ImageReward.pt) to transformers' BLIP vision and text models.

BLIP's text encoder uses BERT naming, which transformers' BlipTextModel shares; only the ViT keys are
renamed. The architecture is read from the tensor shapes; head counts come from the caller.
"""

from __future__ import annotations

import math

from torch import Tensor

VIT_BLOCK = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
VIT_KEYS = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    "norm.weight": "post_layernorm.weight",
    "norm.bias": "post_layernorm.bias",
}


def _count(state: dict[str, Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})


def blip_configs(vit: dict[str, Tensor], text: dict[str, Tensor], vision_heads: int, text_heads: int):
    """(BlipVisionConfig, BlipTextConfig) matching original-layout vision and text state dicts."""
    from transformers import BlipTextConfig, BlipVisionConfig

    patch = vit["patch_embed.proj.weight"]
    n_pos = vit["pos_embed"].shape[1]
    vision = BlipVisionConfig(
        hidden_size=patch.shape[0],
        patch_size=patch.shape[-1],
        image_size=patch.shape[-1] * math.isqrt(n_pos - 1),
        num_hidden_layers=_count(vit, "blocks."),
        num_attention_heads=vision_heads,
        intermediate_size=vit["blocks.0.mlp.fc1.weight"].shape[0],
        layer_norm_eps=1e-6,
        hidden_act="gelu",
    )
    words = text["embeddings.word_embeddings.weight"]
    txt = BlipTextConfig(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        num_hidden_layers=_count(text, "encoder.layer."),
        num_attention_heads=text_heads,
        intermediate_size=text["encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=text["embeddings.position_embeddings.weight"].shape[0],
        encoder_hidden_size=text["encoder.layer.0.crossattention.self.key.weight"].shape[1],
        layer_norm_eps=1e-12,
        bos_token_id=words.shape[0] - 2,
        sep_token_id=min(102, words.shape[0] - 1),
        pad_token_id=0,
    )
    return vision, txt


def vit_to_hf(vit: dict[str, Tensor]) -> dict[str, Tensor]:
    """BLIP ViT keys -> BlipVisionModel keys."""
    out = {dst: vit[src] for src, dst in VIT_KEYS.items()}
    for i in range(_count(vit, "blocks.")):
        for src, dst in VIT_BLOCK.items():
            for p in ("weight", "bias"):
                out[f"encoder.layers.{i}.{dst}.{p}"] = vit[f"blocks.{i}.{src}.{p}"]
    return out


def hf_to_vit(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`vit_to_hf` (writes original-layout test checkpoints)."""
    out = {src: hf[dst] for src, dst in VIT_KEYS.items()}
    i = 0
    while f"encoder.layers.{i}.self_attn.qkv.weight" in hf:
        for src, dst in VIT_BLOCK.items():
            for p in ("weight", "bias"):
                out[f"blocks.{i}.{src}.{p}"] = hf[f"encoder.layers.{i}.{dst}.{p}"]
        i += 1
    return out


def split(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix`` with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
