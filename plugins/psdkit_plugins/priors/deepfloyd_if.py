"""DeepFloyd IF stage I as a frozen prior: pixel-space diffusion at 64x64 with a T5 text encoder.

Loads ``DeepFloyd/IF-I-XL-v1.0`` (gated: accept the licence on its hub page and log in first) or a local
folder with the same layout. The UNet predicts eps and a learned variance; eps is its first 3 channels.
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
from psdkit.contracts.prior import CumprodSchedule
from psdkit.contracts.weights import WeightSize
from psdkit_plugins.backbones.diffusers import OffloadedTextEncoder, eps_from_output, pick_dtype, pick_prediction_type

GATED = "DeepFloyd IF is released under a licence you must accept once"


@dataclasses.dataclass(frozen=True)
class DeepFloydIFConfig:
    """Config of the DeepFloyd IF stage-I prior."""

    model: str = "DeepFloyd/IF-I-XL-v1.0"
    """Hub id or local folder (unet/ text_encoder/ tokenizer/ scheduler/)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit); null: the default branch."""
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """Weights dtype; auto: fp16 on CUDA, fp32 on CPU."""
    resolution: int = knob(64, ge=16, le=4096)
    """Pixel resolution of the prior (64 for stage I)."""
    max_length: int = knob(77, ge=8, le=4096)
    """Prompt length in T5 tokens."""
    offload_text_encoder: bool = True
    """Move the (large) T5 encoder to the CPU after the prompts are encoded."""
    text_cache: str | None = "~/.cache/psdkit/text-embeddings"
    """Folder of cached text embeddings (keyed by model, dtype, max_length and prompt); null: no cache."""
    prediction_type: Literal["auto", "epsilon", "v_prediction", "sample"] = "auto"
    """What the UNet predicts (its first channels); auto: the checkpoint's scheduler config says."""


class DeepFloydIFPrior(OffloadedTextEncoder, CumprodSchedule, DiffusionPrior):
    """DeepFloyd IF stage I: eps-prediction in 64x64 pixel space."""

    Config = DeepFloydIFConfig
    packages = {"diffusers": "psdkit[diffusers]", "transformers": "psdkit[diffusers]"}

    @classmethod
    def required_weights(cls, config: DeepFloydIFConfig) -> list[tuple[str, bool]]:
        """(model, present locally)."""
        return [(config.model, hub.status(config.model, "model_index.json"))]

    @classmethod
    def random_weights(cls, config: DeepFloydIFConfig, folder: Path, size: WeightSize) -> list[str]:
        """A tiny IF-layout checkpoint (``full``, 4.3B parameters, is not offered)."""
        if size != "tiny":
            raise NotImplementedError("deepfloyd-if offers tiny random weights only")
        from psdkit_plugins.priors.checkpoints import save_deepfloyd_if

        save_deepfloyd_if(folder)
        return [f"model={folder}", "text_cache=null", "resolution=16"]

    def __init__(self, config: DeepFloydIFConfig) -> None:
        super().__init__(config)
        try:
            from diffusers import DDPMScheduler, UNet2DConditionModel
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError as err:
            raise ImportError("the deepfloyd-if prior needs: pip install 'psdkit[diffusers]'") from err
        ref, local_only = hub.resolve(config.model, "prior deepfloyd-if", "model_index.json", gated=GATED)
        dtype = pick_dtype(config.dtype)
        self.dtype_ = dtype
        kw = {"revision": config.revision, "local_files_only": local_only}
        self.unet = UNet2DConditionModel.from_pretrained(ref, subfolder="unet", torch_dtype=dtype, **kw)
        self.text_encoder = T5EncoderModel.from_pretrained(ref, subfolder="text_encoder", torch_dtype=dtype, **kw)
        self.tokenizer = AutoTokenizer.from_pretrained(ref, subfolder="tokenizer", **kw)
        sched = DDPMScheduler.from_pretrained(ref, subfolder="scheduler", **kw)
        self.register_buffer("alphas_cumprod", sched.alphas_cumprod.float().clone(), persistent=False)
        self.prediction_type = pick_prediction_type(
            config.prediction_type, sched.config.prediction_type, "prior.config.prediction_type"
        )

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> Tensor:
        tok = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.config.max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        dev = next(self.text_encoder.parameters()).device
        return self.text_encoder(tok.input_ids.to(dev), attention_mask=tok.attention_mask.to(dev))[0]

    @classmethod
    def sample_shape(cls, config: DeepFloydIFConfig) -> tuple[int, ...]:
        """[3, r, r]: stage I's pixels at ``resolution``."""
        return (3, config.resolution, config.resolution)

    def encode_text(self, prompts: list[str]) -> Tensor:
        return self.encode_cached(prompts, self.config.max_length)

    def encode_images(self, images: Tensor) -> Tensor:
        r = self.config.resolution
        if images.shape[-2:] != (r, r):
            images = F.interpolate(images, (r, r), mode="bilinear", align_corners=False, antialias=True)
        return images * 2 - 1

    def decode(self, latents: Tensor) -> Tensor:
        return (latents * 0.5 + 0.5).clamp(0, 1)

    def predict_noise(self, x_t: Tensor, t: Tensor, text_emb: Tensor, cameras: Cameras | None = None) -> Tensor:
        out = self.unet(x_t.to(self.dtype_), t, encoder_hidden_states=text_emb.to(self.dtype_)).sample
        out = out[:, : x_t.shape[1]].float()  # the learned variance follows the prediction
        return eps_from_output(self, out, x_t, t)
