"""MVDream (https://arxiv.org/abs/2308.16512) as a frozen multi-view prior (``pip install 'psdkit[diffusers]'``).

Stable Diffusion 2.1-base fine-tuned to denoise the 4 views of one object jointly: every self-attention
attends across the views of a group (:mod:`psdkit_plugins.backbones.multiview_attention`) and each view's
camera (:mod:`psdkit_plugins.priors.mvdream_camera`) is embedded and added to the timestep embedding. Views
are rendered at 256x256 (32x32 latents). Loads the released ``sd-v2.1-base-4view.pt`` with its yaml (hub id
``MVDream/MVDream`` or a local file or folder) through diffusers' converters, or a diffusers-format folder or
repo (``model_index.json``; the UNet a ``UNet2DConditionModel`` with a projection class embedding of 16 inputs, or
the community MVDream-diffusers port's latent-diffusion-named ``MultiViewUNetModel``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch
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
    pick_dtype,
)
from psdkit_plugins.backbones.multiview_attention import enable_multiview
from psdkit_plugins.priors.mvdream_camera import CameraFrame, mvdream_camera

WHAT = "prior mvdream"


@dataclasses.dataclass(frozen=True)
class MVDreamConfig(LatentUNetConfig):
    """Config of the MVDream prior."""

    model: str = "MVDream/MVDream"
    """Hub repo or local folder holding ``checkpoint``, the checkpoint file itself (.pt, .ckpt, .safetensors), or
    a diffusers-format repo or folder (see ``layout``)."""
    layout: Literal["auto", "original", "diffusers"] = "auto"
    """original: the released checkpoint file plus its yaml; diffusers: a folder with model_index.json and unet/
    vae/ text_encoder/ tokenizer/ scheduler/ (the UNet a UNet2DConditionModel with a camera class embedding, or
    the latent-diffusion-named MultiViewUNetModel of the community MVDream-diffusers port); auto: diffusers for a
    local folder with model_index.json, else original."""
    checkpoint: str = "sd-v2.1-base-4view.pt"
    """File name of the original checkpoint inside ``model``."""
    original_config: str | None = None
    """The checkpoint's yaml (``sd-v2-base.yaml`` of the reference code); null: the published sd-v2.1-base-4view
    architecture, built in."""
    tokenizer: str = "stabilityai/stable-diffusion-2-1-base"
    """Hub id or local folder with a ``tokenizer/`` subfolder: the OpenCLIP BPE tokenizer (the original checkpoint
    carries no tokenizer; Stable Diffusion 2.1's is the same). Unused for a diffusers-format ``model``."""
    views: int = knob(4, ge=1, le=64)
    """Views denoised jointly (the checkpoint's: 4). Camera batches must come in groups of this many
    (camera.config.group_views)."""
    camera_frame: CameraFrame = "mvdream"
    """mvdream: psdkit azimuth a is MVDream's azimuth a (fronts agree); threestudio: matrices unrotated, as
    MVDream-threestudio passes them."""
    resolution: int = knob(256, ge=32, le=4096)
    """Side renders are resized to before VAE encoding (latents are resolution / 8; MVDream: 256)."""


def _diffusers_layout(config: MVDreamConfig) -> bool:
    if config.layout != "auto":
        return config.layout == "diffusers"
    return (Path(config.model).expanduser() / "model_index.json").is_file()


class MVDreamPrior(UNetAdapters, TrainableAdapter, ClipTextVAE, OffloadedTextEncoder, CumprodSchedule, DiffusionPrior):
    """MVDream's multi-view UNet as an eps-predicting prior over groups of ``views`` camera-conditioned views."""

    Config = MVDreamConfig
    packages = {"diffusers": "psdkit[diffusers]", "transformers": "psdkit[diffusers]"}

    @classmethod
    def required_weights(cls, config: MVDreamConfig) -> list[tuple[str, bool]]:
        """(checkpoint, present locally) and (tokenizer, present locally)."""
        if _diffusers_layout(config):
            return [(config.model, hub.status(config.model, "model_index.json"))]
        return [
            (f"{config.model}/{config.checkpoint}", hub.file_status(config.model, config.checkpoint)),
            (f"{config.tokenizer}/tokenizer/*", hub.status(config.tokenizer, "tokenizer/vocab.json")),
        ]

    @classmethod
    def random_weights(cls, config: MVDreamConfig, folder: Path, size: WeightSize) -> list[str]:
        """The published architecture (``full``, saved in fp16) or a tiny one, in the original release's layout."""
        from psdkit_plugins.priors.checkpoints import save_mvdream

        save_mvdream(folder, size, dtype=torch.float16 if size == "full" else torch.float32)
        return [
            f"model={folder}",
            f"original_config={folder / 'sd-v2-base.yaml'}",
            f"tokenizer={folder}",
            "text_cache=null",
            *(["resolution=64"] if size == "tiny" else []),
        ]

    def __init__(self, config: MVDreamConfig) -> None:
        super().__init__(config)
        try:
            from transformers import CLIPTokenizer
        except ImportError as err:
            raise ImportError("the mvdream prior needs: pip install 'psdkit[diffusers]'") from err
        dtype = pick_dtype(config.dtype)
        self.dtype_ = dtype
        if _diffusers_layout(config):
            tok_ref, tok_local = hub.resolve(config.model, WHAT, "model_index.json")
            nets = self._load_diffusers(tok_ref, {"revision": config.revision, "local_files_only": tok_local})
        else:  # the tokenizer first: a missing one fails before the checkpoint loads
            tok_ref, tok_local = hub.resolve(config.tokenizer, f"{WHAT} tokenizer", "tokenizer/vocab.json")
            nets = self._load_original(config)
        self.unet, self.vae, self.text_encoder = (
            (m if dtype == torch.float32 else m.to(dtype)).eval().requires_grad_(False) for m in nets[:3]
        )
        self.tokenizer = CLIPTokenizer.from_pretrained(tok_ref, subfolder="tokenizer", local_files_only=tok_local)
        self.register_buffer("alphas_cumprod", nets[3], persistent=False)
        enable_multiview(self.unet, config.attention)
        self.speed_options()

    def _load_original(self, config: MVDreamConfig) -> tuple[Any, Any, Any, Tensor]:
        from psdkit_plugins.priors.mvdream_checkpoint import convert, read_config, read_state

        path = hub.resolve_file(config.model, config.checkpoint, WHAT, config.revision)
        m = convert(read_state(path), read_config(config.original_config))
        return m.unet, m.vae, m.text_encoder, m.alphas_cumprod

    def _load_diffusers(self, ref: str, kw: dict[str, Any]) -> tuple[Any, Any, Any, Tensor]:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel

        from psdkit_plugins.priors.mvdream_checkpoint import load_ldm_unet_folder

        unet_cfg = UNet2DConditionModel.load_config(ref, subfolder="unet", **kw)
        if unet_cfg.get("_class_name") == "MultiViewUNetModel":  # latent-diffusion names (MVDream-diffusers)
            unet = load_ldm_unet_folder(ref, unet_cfg, kw)
        else:
            unet = UNet2DConditionModel.from_pretrained(ref, subfolder="unet", **kw)
            if unet.config.class_embed_type != "projection":
                raise ValueError(f"{WHAT}: {ref}/unet has no camera embedding (class_embed_type 'projection')")
        vae = AutoencoderKL.from_pretrained(ref, subfolder="vae", **kw)
        text = CLIPTextModel.from_pretrained(ref, subfolder="text_encoder", **kw)
        sched = DDPMScheduler.from_pretrained(ref, subfolder="scheduler", **kw)
        return unet, vae, text, sched.alphas_cumprod.float().clone()

    def views_per_group(self) -> int:
        """``views``: a group's views share a timestep and attend to each other."""
        return self.config.views

    # ---- noise -------------------------------------------------------------------------------
    def predict_noise(self, x_t: Tensor, t: Tensor, text_emb: Tensor, cameras: Cameras | None = None) -> Tensor:
        n = self.config.views
        if cameras is None:
            raise ValueError(f"{WHAT} conditions on cameras: predict_noise needs them")
        if x_t.shape[0] % n:
            raise ValueError(
                f"{WHAT}: a batch of {x_t.shape[0]} views is not whole groups of prior.config.views={n} "
                f"(set camera.config.group_views to {n} and batch sizes to multiples of it)"
            )
        cam = mvdream_camera(cameras.c2w.to(x_t.device), self.config.camera_frame).to(self.dtype_)
        out = self.unet(
            self._layout(x_t.to(self.dtype_)),
            t,
            encoder_hidden_states=text_emb.to(self.dtype_),
            class_labels=cam,
            cross_attention_kwargs={"num_views": n},
        ).sample
        return out.float()
