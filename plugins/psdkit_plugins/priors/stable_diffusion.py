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
from psdkit_plugins.backbones.diffusers import (
    ClipTextVAE,
    LatentUNetConfig,
    OffloadedTextEncoder,
    UNetAdapters,
    eps_from_output,
    pick_dtype,
    pick_prediction_type,
)

# Linear latent -> RGB approximation of SD's VAE (rows: latent channels), used by ``latents: direct``.
LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))


@dataclasses.dataclass(frozen=True)
class StableDiffusionConfig(LatentUNetConfig):
    """Config of the Stable Diffusion prior."""

    model: str = "stabilityai/stable-diffusion-2-1-base"
    """Hub id or local folder (with model_index.json and unet/ vae/ text_encoder/ tokenizer/ scheduler/)."""
    resolution: int = knob(512, ge=64, le=4096)
    """Side renders are resized to before VAE encoding (latents are resolution / 8)."""
    latents: Literal["vae", "direct"] = "vae"
    """vae: encode renders with the VAE; direct: map 64x64 RGB linearly to latents (no VAE)."""
    prediction_type: Literal["auto", "epsilon", "v_prediction", "sample"] = "auto"
    """What the UNet predicts; auto: the checkpoint's scheduler config says (v_prediction for SD 2.x 768)."""


class StableDiffusionPrior(
    UNetAdapters, TrainableAdapter, ClipTextVAE, OffloadedTextEncoder, CumprodSchedule, DiffusionPrior
):
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
        self.speed_options()
        self._text_device: torch.device | None = None

    # ---- images ------------------------------------------------------------------------------
    @classmethod
    def sample_shape(cls, config: StableDiffusionConfig) -> tuple[int, ...]:
        """[4, 64, 64] with ``latents: direct``, else VAE latents at ``resolution`` / 8."""
        return (4, 64, 64) if config.latents == "direct" else super().sample_shape(config)

    def encode_images(self, images: Tensor) -> Tensor:
        if self.config.latents == "direct":
            rgb = F.interpolate(images, (64, 64), mode="bilinear", align_corners=False) * 2 - 1
            return torch.einsum("bchw,lc->blhw", rgb, torch.linalg.pinv(self.latent_rgb.T))
        return super().encode_images(images)

    def decode(self, latents: Tensor) -> Tensor:
        if self.config.latents == "direct":
            rgb = torch.einsum("blhw,lc->bchw", latents, self.latent_rgb)
            return (rgb * 0.5 + 0.5).clamp(0, 1)
        return super().decode(latents)

    # ---- noise -------------------------------------------------------------------------------
    def predict_noise(self, x_t: Tensor, t: Tensor, text_emb: Tensor, cameras: Cameras | None = None) -> Tensor:
        x = self._layout(x_t.to(self.dtype_))
        out = self.unet(x, t, encoder_hidden_states=text_emb.to(self.dtype_)).sample.float()
        return eps_from_output(self, out, x_t, t)
