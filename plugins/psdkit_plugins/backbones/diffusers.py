"""Helpers shared by the diffusers-based priors."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from psdkit.config.schema import knob
from psdkit.contracts.prior import PREDICTION_TYPES, PredictionType
from psdkit.errors import PluginError
from psdkit.ops.distill import from_native
from psdkit.ops.speed import CompileConfig, compile_modules, to_channels_last
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


@dataclasses.dataclass(frozen=True)
class LatentUNetConfig(CompileConfig):
    """Options shared by the latent UNet priors (Stable Diffusion, MVDream)."""

    revision: str | None = None
    """Hub revision of ``model`` (branch, tag or commit); null: the default branch."""
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """Weights dtype; auto: fp16 on CUDA, fp32 on CPU."""
    resolution: int = knob(512, ge=32, le=4096)
    """Side renders are resized to before VAE encoding (latents are resolution / 8)."""
    attention: Literal["sdpa", "eager"] = "sdpa"
    """UNet attention: PyTorch scaled-dot-product (fused) or the plain implementation."""
    vae_slicing: bool = False
    """Decode/encode the batch one image at a time (less memory)."""
    channels_last: bool = False
    """Channels-last memory layout for the UNet and VAE (faster convolutions on recent GPUs)."""
    gradient_checkpointing: bool = False
    """Recompute UNet activations in the backward (the negative-embedding update) to save memory."""
    offload_text_encoder: bool = True
    """Move the text encoder to the CPU after the prompts are encoded."""
    text_cache: str | None = "~/.cache/psdkit/text-embeddings"
    """Folder of cached text embeddings (keyed by model, revision, dtype and prompt); null: no cache."""


class ClipTextVAE:
    """Mixin of the latent priors with a CLIP tokenizer and text encoder (prompts -> the last hidden state
    [B, 77, D], through :class:`OffloadedTextEncoder`'s cache) and a Stable Diffusion VAE (renders resized to
    ``config.resolution`` <-> scaled latents). The prior sets ``tokenizer``, ``text_encoder``, ``vae``,
    ``scaling`` (the VAE's scaling factor) and ``dtype_``."""

    config: Any
    tokenizer: Any
    text_encoder: Any
    vae: Any
    scaling: float
    dtype_: torch.dtype
    encode_cached: Callable[[list[str], int], Tensor]
    """From :class:`OffloadedTextEncoder` (after this mixin in the prior's bases)."""

    unet: Any

    @classmethod
    def sample_shape(cls, config: Any) -> tuple[int, ...]:
        """[4, r/8, r/8]: Stable Diffusion VAE latents of renders at ``resolution``."""
        return (4, config.resolution // 8, config.resolution // 8)

    def speed_options(self) -> None:
        """Apply the config's memory and speed options (:class:`LatentUNetConfig`) to the loaded networks and set
        ``scaling``."""
        c = self.config
        if c.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        if c.vae_slicing:
            self.vae.enable_slicing()
        self.scaling = float(self.vae.config.scaling_factor)
        if c.channels_last:
            to_channels_last([self.unet, self.vae])
        compile_modules([self.unet, self.vae.encoder, self.vae.decoder], c)

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> Tensor:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, 77, D] embeddings of ``prompts``."""
        return self.encode_cached(prompts, self.tokenizer.model_max_length)

    def _layout(self, x: Tensor) -> Tensor:
        """``x`` in the memory layout of the networks (channels-last when configured)."""
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def encode_images(self, images: Tensor) -> Tensor:
        """Scaled VAE latents [B, 4, r/8, r/8] of ``images`` [B, 3, H, W] in [0, 1], resized to r x r."""
        r = self.config.resolution
        x = F.interpolate(images, (r, r), mode="bilinear", align_corners=False) * 2 - 1
        return self.vae.encode(self._layout(x.to(self.dtype_))).latent_dist.mean.float() * self.scaling

    def decode(self, latents: Tensor) -> Tensor:
        """Images [B, 3, r, r] in [0, 1] of scaled VAE ``latents``."""
        img = self.vae.decode(self._layout((latents / self.scaling).to(self.dtype_))).sample.float()
        return (img * 0.5 + 0.5).clamp(0, 1)


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
