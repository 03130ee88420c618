"""Helpers shared by the diffusers-based priors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from psdkit.contracts.prior import PREDICTION_TYPES, PredictionType
from psdkit.errors import PluginError
from psdkit.ops.distill import from_native
from psdkit.text_cache import TextCache

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_dtype(name: str) -> torch.dtype:
    """The weights dtype for a config value; ``auto`` is fp16 on CUDA and fp32 on the CPU."""
    return DTYPES.get(name, torch.float16 if torch.cuda.is_available() else torch.float32)


class OffloadedTextEncoder:
    """Mixin of the diffusers priors: prompts are encoded once, before training, through the disk cache;
    ``self.text_encoder`` then stays on the CPU when ``config.offload_text_encoder`` is set, even when the prior
    is moved to a device. The prior provides ``_encode(prompts) -> [B, L, D]``, ``dtype_`` and
    ``alphas_cumprod``."""

    config: Any
    text_encoder: Any
    dtype_: torch.dtype
    alphas_cumprod: Tensor

    def _encode(self, prompts: list[str]) -> Tensor:
        raise NotImplementedError

    def encode_cached(self, prompts: list[str], max_length: int) -> Tensor:
        """[B, L, D] embeddings of ``prompts`` on the prior's device, from the cache where present (keyed on
        everything that changes them: model, revision, dtype, token length, encoder class)."""
        c = self.config
        cache = TextCache(
            c.text_cache,
            model=c.model,
            revision=c.revision,
            dtype=self.dtype_,
            max_length=max_length,
            encoder=type(self.text_encoder).__name__,
        )
        emb = cache.encode(prompts, self._encode)
        if c.offload_text_encoder:
            self.text_encoder.to("cpu")
        return emb.to(self.alphas_cumprod.device)

    def _apply(self, fn, recurse: bool = True):
        result = super()._apply(fn, recurse)  # type: ignore[misc]  # a mixin of an nn.Module
        if self.config.offload_text_encoder:
            self.text_encoder.to("cpu")
        return result


def pick_prediction_type(configured: str, scheduler: str, where: str) -> PredictionType:
    """The network's prediction type: ``configured`` unless ``auto``, else the scheduler's; refuses what psdkit
    cannot convert to eps, naming ``where`` (the dotted path of the config key)."""
    kind = scheduler if configured == "auto" else configured
    if kind not in PREDICTION_TYPES:
        raise PluginError(
            f"{where}: the model predicts {kind!r}, which psdkit cannot convert to eps; "
            f"set {where} to one of {', '.join(PREDICTION_TYPES)} if its scheduler config is wrong"
        )
    return cast(PredictionType, kind)


def eps_from_output(prior: Any, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """eps [B, C, h, w] from the network's native output ``out`` (``prior.prediction_type``) at ``x_t``, ``t``."""
    if prior.prediction_type == "epsilon":
        return out
    alpha, sigma = prior.alpha_sigma(t)
    return from_native(out, x_t, alpha, sigma, prior.prediction_type)


def set_lora(module: nn.Module, on: bool) -> None:
    """Switch peft LoRA layers on or off without touching ``requires_grad`` (peft's enable/disable_adapters
    also freeze the adapter, which would drop its gradients and confuse optimizers and DDP)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for m in module.modules():
        if isinstance(m, BaseTunerLayer):
            m._disable_adapters = not on


class UNetAdapters:
    """Mixin implementing :class:`psdkit.contracts.capabilities.TrainableAdapter` on ``self.unet`` (peft)."""

    unet: Any
    """A diffusers ``UNet2DConditionModel``."""

    def add_adapter(self, name: str, rank: int, targets: Sequence[str]) -> list[nn.Parameter]:
        """A peft LoRA of ``rank`` on ``targets``, disabled; its parameters with ``requires_grad`` set."""
        from peft import LoraConfig

        self.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets)), adapter_name=name)
        set_lora(self.unet, False)
        params = [p for n, p in self.unet.named_parameters() if "lora_" in n and f".{name}." in n]
        for p in params:
            p.requires_grad_(True)
        return params

    @contextlib.contextmanager
    def adapter_enabled(self, name: str) -> Iterator[None]:
        """LoRA layers on inside the context (psdkit adds one adapter per prior)."""
        set_lora(self.unet, True)
        try:
            yield
        finally:
            set_lora(self.unet, False)
