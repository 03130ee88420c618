"""Convert open_clip CLIP state dicts to transformers' CLIPModel (and back, for tests).

Lets psdkit load open_clip checkpoints (HPSv2) without open_clip, whose torchvision dependency replaces
the CPU torch build (docs/environment notes). The architecture is read from the tensor shapes; the
attention head counts are not in the shapes and come from the caller.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}


def _layers(state: dict[str, Tensor], prefix: str) -> int:
    return len({k.split(".")[len(prefix.split("."))] for k in state if k.startswith(prefix)})


def clip_config_from_open_clip(state: dict[str, Tensor], vision_heads: int, text_heads: int):
    """A transformers CLIPConfig matching an open_clip state dict."""
    from transformers import CLIPConfig

    conv = state["visual.conv1.weight"]
    patch, n_pos = conv.shape[-1], state["visual.positional_embedding"].shape[0]
    vision = {
        "hidden_size": conv.shape[0],
        "patch_size": patch,
        "image_size": patch * math.isqrt(n_pos - 1),
        "num_hidden_layers": _layers(state, "visual.transformer.resblocks"),
        "num_attention_heads": vision_heads,
        "intermediate_size": state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        "projection_dim": state["visual.proj"].shape[1],
        "hidden_act": "gelu",
    }
    tok = state["token_embedding.weight"]
    text = {
        "hidden_size": tok.shape[1],
        "vocab_size": tok.shape[0],
        "num_attention_heads": text_heads,
        "max_position_embeddings": state["positional_embedding"].shape[0],
        "num_hidden_layers": _layers(state, "transformer.resblocks"),
        "intermediate_size": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        "projection_dim": state["text_projection"].shape[1],
        "hidden_act": "gelu",
        "bos_token_id": tok.shape[0] - 2,
        "eos_token_id": tok.shape[0] - 1,
        "pad_token_id": tok.shape[0] - 1,
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=state["visual.proj"].shape[1])


def _blocks(state: dict[str, Tensor], src: str, dst: str, out: dict[str, Tensor]) -> None:
    for i in range(_layers(state, f"{src}.resblocks")):
        s, d = f"{src}.resblocks.{i}", f"{dst}.layers.{i}"
        q, k, v = state[f"{s}.attn.in_proj_weight"].chunk(3)
        qb, kb, vb = state[f"{s}.attn.in_proj_bias"].chunk(3)
        for name, w, b in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            out[f"{d}.self_attn.{name}.weight"], out[f"{d}.self_attn.{name}.bias"] = w, b
        for a, c in BLOCK.items():
            out[f"{d}.{c}.weight"], out[f"{d}.{c}.bias"] = state[f"{s}.{a}.weight"], state[f"{s}.{a}.bias"]


#: open_clip key -> transformers key, for every tensor outside the transformer blocks
KEYS = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "visual.proj": "visual_projection.weight",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "text_projection": "text_projection.weight",
    "logit_scale": "logit_scale",
}
TRANSPOSED = {"visual.proj", "text_projection"}  # open_clip stores x @ P, transformers Linear stores P^T
SIDES = (("visual.transformer", "vision_model.encoder"), ("transformer", "text_model.encoder"))


def _t(key: str, value: Tensor) -> Tensor:
    return value.T.contiguous() if key in TRANSPOSED else value


def _converted_keys(state: dict[str, Tensor]) -> set[str]:
    """The open_clip keys :func:`open_clip_to_hf` reads."""
    keys = set(KEYS)
    for src, _ in SIDES:
        for i in range(_layers(state, f"{src}.resblocks")):
            s = f"{src}.resblocks.{i}"
            keys |= {f"{s}.attn.in_proj_weight", f"{s}.attn.in_proj_bias"}
            keys |= {f"{s}.{a}.{p}" for a in BLOCK for p in ("weight", "bias")}
    return keys


#: keys an open_clip checkpoint may carry that describe nothing to convert (the causal mask is rebuilt)
HARMLESS = frozenset({"attn_mask"})


def open_clip_to_hf(state: dict[str, Any]) -> dict[str, Tensor]:
    """transformers CLIPModel state dict from an open_clip one (``state_dict``/``module.`` wrappers removed).

    Raises ValueError naming the keys it would have to drop (a checkpoint of another architecture, e.g. with
    layer scale or attention pooling, must not load half-converted).
    """
    inner = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in inner.items()}
    out = {dst: _t(src, state[src]) for src, dst in KEYS.items()}
    for src, dst in SIDES:
        _blocks(state, src, dst, out)
    leftover = sorted(set(state) - _converted_keys(state) - HARMLESS)
    if leftover:
        raise ValueError(f"keys with no transformers counterpart: {leftover[:5]}")
    return out


def hf_to_open_clip(hf: dict[str, Tensor], text_only: bool = False) -> dict[str, Tensor]:
    """The inverse of :func:`open_clip_to_hf` (writes open_clip-layout test checkpoints); ``text_only``: the text
    tower alone (``hf`` from a ``CLIPTextModel``, which has no projection)."""
    keys = {k: v for k, v in KEYS.items() if not text_only or v.startswith("text_model.")}
    out = {src: _t(src, hf[dst]) for src, dst in keys.items()}
    for side, dst in SIDES[1:] if text_only else SIDES:
        i = 0
        while f"{dst}.layers.{i}.self_attn.q_proj.weight" in hf:
            d, s = f"{dst}.layers.{i}", f"{side}.resblocks.{i}"
            out[f"{s}.attn.in_proj_weight"] = torch.cat([hf[f"{d}.self_attn.{p}_proj.weight"] for p in "qkv"])
            out[f"{s}.attn.in_proj_bias"] = torch.cat([hf[f"{d}.self_attn.{p}_proj.bias"] for p in "qkv"])
            for a, c in BLOCK.items():
                out[f"{s}.{a}.weight"], out[f"{s}.{a}.bias"] = hf[f"{d}.{c}.weight"], hf[f"{d}.{c}.bias"]
            i += 1
    return out
