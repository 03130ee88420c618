"""Random-weight checkpoints of the diffusers priors in their published folder layouts.

Each function builds the real architecture (seeded), saves it exactly like the hub's checkpoints
(``save_pretrained`` folders + ``model_index.json``) and returns the folder, so the prior loads it through the
same code that loads real weights. ``full`` is the published size, ``tiny`` a toy size for CPU tests. The
priors' ``random_weights`` hooks call these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from psdkit.contracts.weights import WeightSize
from psdkit_plugins.backbones.tokenizers import save_clip_tokenizer, save_t5_tokenizer, tiny_clip_text_config

SD21_UNET = {
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "sample_size": 64,
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
}
SD_VAE = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 512}
TINY_UNET = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "sample_size": 8,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "norm_num_groups": 32,
}
TINY_VAE = {"block_out_channels": (8, 16, 32, 32), "layers_per_block": 1, "norm_num_groups": 8, "sample_size": 64}


def _sd_text_config(size: WeightSize):
    """SD 2.1's OpenCLIP-H text encoder (23 layers of 1024) or the tiny one."""
    from transformers import CLIPTextConfig

    if size == "tiny":
        return tiny_clip_text_config()
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=23,
        num_attention_heads=16,
        max_position_embeddings=77,
        projection_dim=512,
        hidden_act="gelu",
    )


def save_stable_diffusion(
    path: Path,
    size: WeightSize = "tiny",
    prediction_type: str = "epsilon",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """A Stable-Diffusion-layout folder (model_index.json + unet, vae, text_encoder, tokenizer, scheduler) with
    random weights saved in ``dtype``: SD 2.1-base's architecture (``full``) or a 1.4M-parameter UNet (``tiny``),
    the tiny tokenizer (its ids fit any CLIP vocabulary) and a scaled-linear DDPM schedule."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    unet, vae = (TINY_UNET, TINY_VAE) if size == "tiny" else (SD21_UNET, SD_VAE)

    def save(model: Any, sub: str) -> None:
        (model if dtype == torch.float32 else model.to(dtype)).save_pretrained(path / sub)

    save(UNet2DConditionModel(in_channels=4, out_channels=4, **unet), "unet")
    save(
        AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            **vae,
        ),
        "vae",
    )
    save(CLIPTextModel(_sd_text_config(size)), "text_encoder")
    save_clip_tokenizer(path / "tokenizer")
    DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        clip_sample=False,
        steps_offset=1,
    ).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.30.0",
                "scheduler": ["diffusers", "DDPMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "safety_checker": [None, None],
                "feature_extractor": [None, None],
                "requires_safety_checker": False,
            }
        )
    )
    return path


def save_deepfloyd_if(path: Path, seed: int = 0) -> Path:
    """A tiny DeepFloyd-IF-stage-I-layout folder: pixel UNet (3 in, 6 out), T5 encoder, tokenizer, scheduler."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    tok = save_t5_tokenizer(path / "tokenizer")
    vocab = len(AutoTokenizer.from_pretrained(tok))
    T5EncoderModel(
        T5Config(
            vocab_size=vocab, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1
        )
    ).save_pretrained(path / "text_encoder")
    UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=3,
        out_channels=6,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        encoder_hid_dim=16,
        encoder_hid_dim_type="text_proj",
        attention_head_dim=(2, 4),
        norm_num_groups=32,
    ).save_pretrained(path / "unet")
    DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        variance_type="learned_range",
        clip_sample=False,
    ).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "IFPipeline",
                "_diffusers_version": "0.30.0",
                "scheduler": ["diffusers", "DDPMScheduler"],
                "text_encoder": ["transformers", "T5EncoderModel"],
                "tokenizer": ["transformers", "T5TokenizerFast"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "safety_checker": [None, None],
                "feature_extractor": [None, None],
                "watermarker": [None, None],
                "requires_safety_checker": False,
            }
        )
    )
    return path


def _mvdream_config(size: WeightSize) -> tuple[dict[str, Any], dict[str, int]]:
    """(original yaml config, open_clip text tower dims) of MVDream's published or a tiny architecture."""
    import copy

    from psdkit_plugins.priors.mvdream_checkpoint import PUBLISHED

    config = copy.deepcopy(PUBLISHED)
    if size == "full":
        return config, {"width": 1024, "blocks": 24, "mlp": 4096, "vocab": 49408}
    p = config["model"]["params"]
    p["unet_config"]["params"] |= {
        "image_size": 8,
        "model_channels": 32,
        "attention_resolutions": [2],
        "num_res_blocks": 1,
        "channel_mult": [1, 2],
        "num_head_channels": 16,
        "context_dim": 64,
    }
    p["first_stage_config"]["params"]["ddconfig"] |= {"resolution": 64, "ch": 32, "ch_mult": [1, 1, 1, 1]}
    p["first_stage_config"]["params"]["ddconfig"]["num_res_blocks"] = 1
    return config, {"width": 64, "blocks": 3, "mlp": 128, "vocab": 0}


def save_mvdream(path: Path, size: WeightSize = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """An MVDream checkpoint in the original release's layout with random weights: ``sd-v2.1-base-4view.pt``
    (one latent-diffusion state dict, saved in ``dtype``), its yaml config ``sd-v2-base.yaml`` and a tokenizer
    folder (``tokenizer/``, the tiny CLIP tokenizer). ``full`` is the published architecture, ``tiny`` a toy."""
    import yaml
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from psdkit_plugins.backbones.tokenizers import TINY_VOCAB
    from psdkit_plugins.priors.mvdream_checkpoint import schedule, unet_config, vae_config
    from psdkit_plugins.priors.mvdream_layout import text_to_original, unet_to_original, vae_to_original

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    config, text = _mvdream_config(size)
    ucfg, vcfg = unet_config(config), vae_config(config)
    vocab = text["vocab"] or len(TINY_VOCAB)
    clip = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=text["width"],
        intermediate_size=text["mlp"],
        num_hidden_layers=text["blocks"],
        num_attention_heads=text["width"] // 64,
        max_position_embeddings=77,
        hidden_act="gelu",
        **({} if size == "full" else {"bos_token_id": 21, "eos_token_id": 22, "pad_token_id": 22}),
    )
    state = unet_to_original(UNet2DConditionModel(**ucfg).state_dict(), ucfg)
    state |= vae_to_original(AutoencoderKL(**vcfg).state_dict(), len(vcfg["block_out_channels"]))
    proj = torch.randn(text["width"], text["width"]) * text["width"] ** -0.5
    state |= text_to_original(CLIPTextModel(clip).state_dict(), proj, torch.tensor(4.6052))
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items() if "position_ids" not in k}
    state["alphas_cumprod"] = schedule({}, config)
    torch.save(state, path / "sd-v2.1-base-4view.pt")
    (path / "sd-v2-base.yaml").write_text(yaml.safe_dump(config))
    save_clip_tokenizer(path / "tokenizer")
    return path
