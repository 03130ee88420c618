"""diffusers modules -> MVDream's original (latent-diffusion) key layout, for random-weight checkpoints.

The inverse of :func:`psdkit_plugins.priors.mvdream_checkpoint.convert`, written from the latent-diffusion
module tree (``openaimodel.py``: ``input_blocks``/``middle_block``/``output_blocks``; ``model.py``: the VAE's
``down``/``mid``/``up``). Tests load what it writes through diffusers' own converters, so a key it gets wrong
fails to load.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from psdkit_plugins.backbones.open_clip import hf_to_open_clip
from psdkit_plugins.priors.mvdream_checkpoint import TEXT, UNET, VAE

RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "class_embedding.linear_1.": "camera_embed.0.",
    "class_embedding.linear_2.": "camera_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_key(key: str, per_level: int, attn_up: set[int]) -> str:
    for new, old in UNET_FIXED.items():
        if key.startswith(new):
            return old + key[len(new) :]
    if m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.+)", key):
        side, b, j, name, rest = m.groups()
        idx = int(b) * per_level + int(j) + (1 if side == "down" else 0)
        return f"{'input' if side == 'down' else 'output'}_blocks.{idx}.0.{RESNET[name]}.{rest}"
    if m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        side, b, j, rest = m.groups()
        idx = int(b) * per_level + int(j) + (1 if side == "down" else 0)
        return f"{'input' if side == 'down' else 'output'}_blocks.{idx}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{int(m[1]) * per_level + per_level}.0.op.{m[2]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        slot = 2 if int(m[1]) in attn_up else 1
        return f"output_blocks.{int(m[1]) * per_level + per_level - 1}.{slot}.conv.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(\w+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{RESNET[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    raise KeyError(f"no original-layout name for UNet key {key}")


def unet_to_original(state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """Original keys (``model.diffusion_model.`` ...) of a diffusers UNet state dict built from ``config``."""
    per_level = config["layers_per_block"] + 1
    attn_up = {i for i, t in enumerate(config["up_block_types"]) if t.startswith("CrossAttn")}
    return {UNET + _unet_key(k, per_level, attn_up): v for k, v in state.items()}


def _vae_key(key: str, levels: int) -> str:
    key = key.replace("conv_norm_out.", "norm_out.").replace("conv_shortcut", "nin_shortcut")
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(resnets|downsamplers)\.(\d+)\.(.+)", key):
        part = f"block.{m[3]}" if m[2] == "resnets" else "downsample"
        return f"encoder.down.{m[1]}.{part}.{m[4]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)", key):
        part = f"block.{m[3]}" if m[2] == "resnets" else "upsample"
        return f"decoder.up.{levels - 1 - int(m[1])}.{part}.{m[4]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        return f"{m[1]}.mid.attn_1.{VAE_ATTN[m[2]]}.{m[3]}"
    return key


def vae_to_original(state: dict[str, Tensor], levels: int) -> dict[str, Tensor]:
    """Original keys (``first_stage_model.`` ...) of a diffusers AutoencoderKL state dict; the mid attention's
    linear layers become the 1x1 convolutions latent diffusion uses."""
    out = {}
    for k, v in state.items():
        name = _vae_key(k, levels)
        conv = ".mid.attn_1." in name and name.endswith("weight") and ".norm." not in name
        out[VAE + name] = v[:, :, None, None] if conv else v
    return out


def text_to_original(state: dict[str, Tensor], projection: Tensor, logit_scale: Tensor) -> dict[str, Tensor]:
    """Original keys (``cond_stage_model.model.`` ...) of a transformers CLIPTextModel state dict, with the
    open_clip projection [width, dim] and logit scale the original carries."""
    prefixed = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}
    out = hf_to_open_clip(prefixed, text_only=True)
    out.pop("text_projection", None)
    out |= {"text_projection": projection, "logit_scale": logit_scale}
    return {TEXT + k: v for k, v in out.items()}
