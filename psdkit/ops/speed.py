"""Fast paths for frozen networks (priors and reward towers), each a config switch of the plugin using it.

Every function here returns a network that computes the same thing as the one it is given (to floating-point
rounding); tests/test_fast_paths.py checks each against the unmodified network.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    """torch.compile settings shared by the plugins that compile frozen networks."""

    compile: CompileMode = "none"
    """torch.compile the frozen networks: none, default, reduce-overhead (CUDA graphs; static shapes) or
    max-autotune. The first steps then include compile time (``psdkit bench speed`` reports it)."""
    compile_backend: str = "inductor"
    """torch.compile backend (inductor generates kernels; aot_eager only traces, for checks)."""


def compile_modules(modules: list[nn.Module], config: CompileConfig) -> None:
    """Compile each module's forward in place (``nn.Module.compile``); ``compile: none`` does nothing."""
    if config.compile == "none":
        return
    kwargs: dict = {"backend": config.compile_backend, "dynamic": False}
    if config.compile_backend == "inductor":
        kwargs["mode"] = config.compile
    for module in modules:
        module.compile(**kwargs)


class PatchMatmul(nn.Module):
    """A patch-embedding convolution (stride == kernel, no padding) as reshape + matmul.

    Same output as the convolution; on GPUs its input gradient is a matmul instead of the slow
    strided-convolution dgrad kernel (../shared/bench/README.md: CLIP ViT-L/14 forward+backward 103 -> 30 ms).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.kernel = conv.kernel_size
        self.weight = conv.weight  # [out, in, kh, kw], shared with the convolution it replaces
        self.bias = conv.bias

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, out, H // kh, W // kw]."""
        kh, kw = self.kernel
        b, c, h, w = x.shape
        gh, gw = h // kh, w // kw
        x = x[..., : gh * kh, : gw * kw].reshape(b, c, gh, kh, gw, kw)
        patches = x.permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * kh * kw)
        out = F.linear(patches, self.weight.reshape(self.weight.shape[0], -1), self.bias)
        return out.transpose(1, 2).reshape(b, -1, gh, gw)


def _is_patch_conv(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.Conv2d)
        and m.stride == m.kernel_size
        and m.padding in ((0, 0), "valid")
        and m.dilation == (1, 1)
        and m.groups == 1
        and m.kernel_size != (1, 1)
    )


def patch_convs_as_matmul(model: nn.Module) -> int:
    """Replace every patch-embedding convolution in ``model`` by :class:`PatchMatmul`; returns how many."""
    targets = [(name, m) for name, m in model.named_modules() if _is_patch_conv(m)]
    for name, conv in targets:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, PatchMatmul(conv))
    return len(targets)


def to_channels_last(modules: list[nn.Module]) -> None:
    """Convert the 4D weights of each module to channels-last memory layout (convolution-heavy nets)."""
    for module in modules:
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # nn.Module.to accepts it
