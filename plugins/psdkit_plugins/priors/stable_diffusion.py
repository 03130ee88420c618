"""Stable Diffusion 1.x / 2.x as a frozen prior, through diffusers (``pip install 'psdkit[diffusers]'``).

Loads the UNet, VAE, CLIP text encoder, tokenizer and noise schedule of any checkpoint folder laid out
like the hub's (``model_index.json`` + subfolders) from a hub id or a local path. v-prediction models
are converted to eps. ``latents: vae`` encodes renders (resized to ``resolution``) with the VAE;
``latents: direct`` skips the VAE and maps 64x64 RGB linearly to latents (fast, approximate).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from psdkit import hub
from psdkit.config.schema import knob
from psdkit.contracts import Cameras, DiffusionPrior
from psdkit.contracts.capabilities import TrainableAdapter
from psdkit.contracts.prior import CumprodSchedule
from psdkit.contracts.weights import WeightSize
from psdkit.ops.speed import CompileConfig, compile_modules, to_channels_last
from psdkit_plugins.backbones.diffusers import (
    OffloadedTextEncoder,
    UNetAdapters,
    eps_from_output,
    pick_dtype,
    pick_prediction_type,
)

# Linear latent -> RGB approximation of SD's VAE (rows: latent channels), used by ``latents: direct``.
LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))


@dataclasses.dataclass(frozen=True)
class StableDiffusionConfig(CompileConfig):
    """Config of the Stable Diffusion prior."""

    model: str = "stabilityai/stable-diffusion-2-1-base"
    """Hub id or local folder (with model_index.json and unet/ vae/ text_encoder/ tokenizer/ scheduler/)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit); null: the default branch."""
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """Weights dtype; auto: fp16 on CUDA, fp32 on CPU."""
    resolution: int = knob(512, ge=64, le=4096)
    """Side renders are resized to before VAE encoding (latents are resolution / 8)."""
    latents: Literal["vae", "direct"] = "vae"
    """vae: encode renders with the VAE; direct: map 64x64 RGB linearly to latents (no VAE)."""
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
    prediction_type: Literal["auto", "epsilon", "v_prediction", "sample"] = "auto"
    """What the UNet predicts; auto: the checkpoint's scheduler config says (v_prediction for SD 2.x 768)."""


class StableDiffusionPrior(UNetAdapters, TrainableAdapter, OffloadedTextEncoder, CumprodSchedule, DiffusionPrior):
    """Stable Diffusion's UNet as an eps-predicting prior over VAE latents."""

    Config = StableDiffusionConfig
    packages = {"diffusers": "psdkit[diffusers]", "transformers": "psdkit[diffusers]"}
    latent_rgb: Tensor
    """[4, 3] linear latent -> RGB map of SD's VAE (``latents: direct``)."""

    @classmethod
    def required_weights(cls, config: StableDiffusionConfig) -> list[tuple[str, bool]]:
        """(model, present locally) for ``psdkit doctor`` and the pre-flight check."""
        return [(config.model, hub.status(config.model, "model_index.json"))]

    @classmethod
    def random_weights(cls, config: StableDiffusionConfig, folder: Path, size: WeightSize) -> list[str]:
        """SD 2.1-base's architecture (``full``, saved in fp16) or a tiny one, with random weights."""
        from psdkit_plugins.priors.checkpoints import save_stable_diffusion

        save_stable_diffusion(folder, size, dtype=torch.float16 if size == "full" else torch.float32)
        return [f"model={folder}", "text_cache=null", *(["resolution=64"] if size == "tiny" else [])]

    def __init__(self, config: StableDiffusionConfig) -> None:
        super().__init__(config)
        try:
            from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as err:
            raise ImportError("the stable-diffusion prior needs: pip install 'psdkit[diffusers]'") from err
        ref, local_only = hub.resolve(config.model, "prior stable-diffusion", "model_index.json")
        kw = {"revision": config.revision, "local_files_only": local_only}
        dtype = pick_dtype(config.dtype)
        self.dtype_ = dtype
        self.unet = UNet2DConditionModel.from_pretrained(ref, subfolder="unet", torch_dtype=dtype, **kw)
        self.vae = AutoencoderKL.from_pretrained(ref, subfolder="vae", torch_dtype=dtype, **kw)
        self.text_encoder = CLIPTextModel.from_pretrained(ref, subfolder="text_encoder", torch_dtype=dtype, **kw)
        self.tokenizer = CLIPTokenizer.from_pretrained(ref, subfolder="tokenizer", **kw)
        sched = DDPMScheduler.from_pretrained(ref, subfolder="scheduler", **kw)
        self.prediction_type = pick_prediction_type(
            config.prediction_type, sched.config.prediction_type, "prior.config.prediction_type"
        )
        self.register_buffer("alphas_cumprod", sched.alphas_cumprod.float().clone(), persistent=False)
        self.register_buffer("latent_rgb", torch.tensor(LATENT_RGB), persistent=False)
        if config.attention == "eager":
            from diffusers.models.attention_processor import AttnProcessor

            self.unet.set_attn_processor(AttnProcessor())
        if config.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        if config.vae_slicing:
            self.vae.enable_slicing()
        self.scaling = float(self.vae.config.scaling_factor)
        if config.channels_last:
            to_channels_last([self.unet, self.vae])
        compile_modules([self.unet, self.vae.encoder, self.vae.decoder], config)
        self._text_device: torch.device | None = None

    # ---- text --------------------------------------------------------------------------------
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
        return self.encode_cached(prompts, self.tokenizer.model_max_length)

    # ---- images ------------------------------------------------------------------------------
    def encode_images(self, images: Tensor) -> Tensor:
        if self.config.latents == "direct":
            rgb = F.interpolate(images, (64, 64), mode="bilinear", align_corners=False) * 2 - 1
            return torch.einsum("bchw,lc->blhw", rgb, torch.linalg.pinv(self.latent_rgb.T))
        r = self.config.resolution
        x = F.interpolate(images, (r, r), mode="bilinear", align_corners=False) * 2 - 1
        latents = self.vae.encode(self._layout(x.to(self.dtype_))).latent_dist.mean
        return latents.float() * self.scaling

    def decode(self, latents: Tensor) -> Tensor:
        if self.config.latents == "direct":
            rgb = torch.einsum("blhw,lc->bchw", latents, self.latent_rgb)
            return (rgb * 0.5 + 0.5).clamp(0, 1)
        img = self.vae.decode(self._layout((latents / self.scaling).to(self.dtype_))).sample.float()
        return (img * 0.5 + 0.5).clamp(0, 1)

    def _layout(self, x: Tensor) -> Tensor:
        """``x`` in the memory layout of the networks (channels-last when configured)."""
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    # ---- noise -------------------------------------------------------------------------------
    def predict_noise(self, x_t: Tensor, t: Tensor, text_emb: Tensor, cameras: Cameras | None = None) -> Tensor:
        x = self._layout(x_t.to(self.dtype_))
        out = self.unet(x, t, encoder_hidden_states=text_emb.to(self.dtype_)).sample.float()
        return eps_from_output(self, out, x_t, t)
