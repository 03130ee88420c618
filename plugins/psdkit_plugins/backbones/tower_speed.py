"""Fast-path switches shared by the reward towers (ViT-based: CLIP, BLIP)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from torch import nn

from psdkit.ops.speed import CompileConfig, compile_modules, patch_convs_as_matmul
from psdkit_plugins.backbones.diffusers import DTYPES


@dataclasses.dataclass(frozen=True)
class TowerSpeedConfig(CompileConfig):
    """dtype, patch-embedding rewrite and compilation of a reward's networks."""

    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Weights dtype of the towers; the score is returned in fp32. Prefer bf16: fp16's range can flush the
    image gradient to zero (tests/test_fast_paths.py shows it on a tiny model)."""
    patch_embed: Literal["conv", "matmul"] = "conv"
    """ViT patch embedding as the checkpoint's convolution or as reshape + matmul (same result, a much
    cheaper input gradient on GPUs)."""


def speed_up_towers(model: nn.Module, config: TowerSpeedConfig, compiled: list[nn.Module]) -> None:
    """Apply ``config``'s dtype and patch-embedding rewrite to ``model`` and compile the submodules
    ``compiled`` (those whose ``forward`` the reward calls), in place."""
    model.to(DTYPES[config.dtype])
    if config.patch_embed == "matmul":
        patch_convs_as_matmul(model)
    compile_modules(compiled, config)
