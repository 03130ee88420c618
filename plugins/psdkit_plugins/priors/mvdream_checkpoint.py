"""MVDream's released checkpoint (``sd-v2.1-base-4view.pt``) as diffusers modules.

The checkpoint is a latent-diffusion state dict: the multi-view UNet under ``model.diffusion_model.`` (the SD
2.1 UNet plus ``camera_embed``, a 2-layer MLP of the 16-number camera added to the timestep embedding), the
SD VAE under ``first_stage_model.`` and the OpenCLIP ViT-H text tower under ``cond_stage_model.model.``. Its
architecture is in a yaml (``mvdream/configs/sd-v2-base.yaml`` of the reference code; :data:`PUBLISHED` holds
its values). The UNet becomes a diffusers ``UNet2DConditionModel`` whose projection class embedding is the
camera MLP; diffusers' own single-file converters map the keys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from psdkit.errors import PluginError

#: the architecture of ``sd-v2.1-base-4view`` (``mvdream/configs/sd-v2-base.yaml``)
PUBLISHED: dict[str, Any] = {
    "model": {
        "params": {
            "linear_start": 0.00085,
            "linear_end": 0.0120,
            "timesteps": 1000,
            "scale_factor": 0.18215,
            "parameterization": "eps",
            "unet_config": {
                "params": {
                    "image_size": 32,
                    "in_channels": 4,
                    "out_channels": 4,
                    "model_channels": 320,
                    "attention_resolutions": [4, 2, 1],
                    "num_res_blocks": 2,
                    "channel_mult": [1, 2, 4, 4],
                    "num_head_channels": 64,
                    "use_linear_in_transformer": True,
                    "transformer_depth": 1,
                    "context_dim": 1024,
                    "camera_dim": 16,
                }
            },
            "first_stage_config": {
                "params": {
                    "embed_dim": 4,
                    "ddconfig": {
                        "z_channels": 4,
                        "resolution": 256,
                        "in_channels": 3,
                        "out_ch": 3,
                        "ch": 128,
                        "ch_mult": [1, 2, 4, 4],
                        "num_res_blocks": 2,
                    },
                }
            },
            "cond_stage_config": {"params": {"layer": "penultimate"}},
        }
    }
}

UNET, VAE, TEXT = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.model."
#: MVDream's camera MLP -> the key names diffusers' converter reads for a projection class embedding
CAMERA_KEYS = {"camera_embed.0.": "label_emb.0.0.", "camera_embed.2.": "label_emb.0.2."}


def read_config(path: str | None) -> dict[str, Any]:
    """The original yaml config at ``path`` as a dict; None: :data:`PUBLISHED`."""
    if path is None:
        return PUBLISHED
    import yaml

    return yaml.safe_load(Path(path).expanduser().read_text())


def _params(config: dict[str, Any], key: str) -> dict[str, Any]:
    return config["model"]["params"][key]["params"]


def unet_config(config: dict[str, Any]) -> dict[str, Any]:
    """``UNet2DConditionModel`` kwargs of the original UNet params (SD 2.x style: linear transformers, heads
    of ``num_head_channels`` or ``num_heads`` heads, GroupNorm of 32) plus the camera as class embedding."""
    p = _params(config, "unet_config")
    channels = [p["model_channels"] * m for m in p["channel_mult"]]
    attn = [2**i in p["attention_resolutions"] for i in range(len(channels))]
    heads = [c // p["num_head_channels"] if p.get("num_head_channels", -1) > 0 else p["num_heads"] for c in channels]
    return {
        "sample_size": p.get("image_size", 32),
        "in_channels": p["in_channels"],
        "out_channels": p["out_channels"],
        "block_out_channels": channels,
        "layers_per_block": p["num_res_blocks"],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "cross_attention_dim": p["context_dim"],
        "attention_head_dim": heads,
        "use_linear_projection": bool(p.get("use_linear_in_transformer", False)),
        "transformer_layers_per_block": p.get("transformer_depth", 1),
        "class_embed_type": "projection",
        "projection_class_embeddings_input_dim": p["camera_dim"],
    }


def vae_config(config: dict[str, Any]) -> dict[str, Any]:
    """``AutoencoderKL`` kwargs of the original first-stage params."""
    dd = _params(config, "first_stage_config")["ddconfig"]
    n = len(dd["ch_mult"])
    return {
        "sample_size": dd["resolution"],
        "in_channels": dd["in_channels"],
        "out_channels": dd["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": [dd["ch"] * m for m in dd["ch_mult"]],
        "latent_channels": dd["z_channels"],
        "layers_per_block": dd["num_res_blocks"],
        "scaling_factor": config["model"]["params"].get("scale_factor", 0.18215),
    }


def text_config(state: dict[str, Tensor], config: dict[str, Any]):
    """``CLIPTextConfig`` of the OpenCLIP text tower in ``state``, cut at the layer MVDream reads
    (``penultimate``: all but the last block, then the final layer norm, as Stable Diffusion 2 does)."""
    from transformers import CLIPTextConfig

    tok = state[TEXT + "token_embedding.weight"]
    blocks = len({k[len(TEXT) :].split(".")[2] for k in state if k.startswith(TEXT + "transformer.resblocks.")})
    layer = _params(config, "cond_stage_config").get("layer", "penultimate")
    width = tok.shape[1]
    return CLIPTextConfig(
        vocab_size=tok.shape[0],
        hidden_size=width,
        intermediate_size=state[TEXT + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=blocks - (1 if layer == "penultimate" else 0),
        num_attention_heads=max(1, width // 64),  # open_clip text towers use 64-wide heads
        max_position_embeddings=state[TEXT + "positional_embedding"].shape[0],
        hidden_act="gelu",
        bos_token_id=tok.shape[0] - 2,  # open_clip: start and end of text are the last two tokens
        eos_token_id=tok.shape[0] - 1,
        pad_token_id=tok.shape[0] - 1,
    )


def schedule(state: dict[str, Tensor], config: dict[str, Any]) -> Tensor:
    """[T] alphas_cumprod: the checkpoint's buffer, else latent diffusion's ``linear`` schedule (betas linear in
    sqrt, from ``linear_start`` to ``linear_end``)."""
    if "alphas_cumprod" in state:
        return state["alphas_cumprod"].float().clone()
    p = config["model"]["params"]
    betas = torch.linspace(p["linear_start"] ** 0.5, p["linear_end"] ** 0.5, p["timesteps"], dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def read_state(path: Path) -> dict[str, Tensor]:
    """The state dict of a ``.pt``/``.ckpt`` (``torch.save``, weights only) or ``.safetensors`` file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise PluginError(f"prior mvdream: cannot read checkpoint {path}: {err}") from err
    return state.get("state_dict", state)


@dataclasses.dataclass
class MVDreamModules:
    """The networks of an MVDream checkpoint, as diffusers / transformers modules (fp32, CPU)."""

    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    alphas_cumprod: Tensor
    """[T]."""


def _load(module: nn.Module, state: dict[str, Tensor], what: str, may_skip: tuple[str, ...] = ()) -> nn.Module:
    """Load ``state`` into ``module``; every parameter must be present and every unused key in ``may_skip``."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(may_skip)]
    if missing or unexpected:
        raise PluginError(
            f"prior mvdream: the checkpoint's {what} does not match its config "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]}); is prior.config.original_config its yaml?"
        )
    return module


def _match_prefix(state: dict[str, Tensor], module: nn.Module, prefix: str) -> dict[str, Tensor]:
    """``state`` with ``prefix`` removed from its keys when ``module``'s own keys lack it (transformers 5's
    ``CLIPTextModel`` names its tensors without ``text_model.``)."""
    if any(k.startswith(prefix) for k in module.state_dict()):
        return state
    return {k.removeprefix(prefix): v for k, v in state.items()}


def convert_unet(state: dict[str, Tensor], config: dict[str, Any]) -> nn.Module:
    """The diffusers UNet (camera MLP as projection class embedding) of the ``model.diffusion_model.`` keys."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    renamed = dict(state)
    for old, new in CAMERA_KEYS.items():
        for key in [k for k in state if k.startswith(UNET + old)]:
            renamed[key.replace(UNET + old, UNET + new)] = renamed.pop(key)
    ucfg = unet_config(config)
    return _load(UNet2DConditionModel(**ucfg), convert_ldm_unet_checkpoint(renamed, ucfg), "UNet")


def load_ldm_unet_folder(ref: str, unet_cfg: dict[str, Any], kw: dict[str, Any]) -> nn.Module:
    """The UNet of a diffusers-format folder whose ``unet/`` is a ``MultiViewUNetModel`` with latent-diffusion
    tensor names (the community MVDream-diffusers port): its config is the original UNet params, its weights
    the original keys without the ``model.diffusion_model.`` prefix; the transformers are linear (SD 2.x)."""
    from diffusers.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME
    from huggingface_hub import hf_hub_download

    params = {k: v for k, v in unet_cfg.items() if not k.startswith("_")} | {"use_linear_in_transformer": True}
    local = Path(ref).expanduser() / "unet"
    names = [SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME]
    found = [local / n for n in names if (local / n).is_file()] if local.is_dir() else []
    if not found:
        opts = {"revision": kw.get("revision"), "local_files_only": kw.get("local_files_only", False)}
        found = [Path(hf_hub_download(ref, SAFETENSORS_WEIGHTS_NAME, subfolder="unet", **opts))]
    state = {UNET + k: v for k, v in read_state(found[0]).items()}
    return convert_unet(state, {"model": {"params": {"unet_config": {"params": params}}}})


def convert(state: dict[str, Tensor], config: dict[str, Any]) -> MVDreamModules:
    """Build the diffusers modules of an original-layout state dict and its config."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, convert_open_clip_checkpoint
    from transformers import CLIPTextModel

    vcfg = vae_config(config)
    unet = convert_unet(state, config)
    vae = _load(AutoencoderKL(**vcfg), convert_ldm_vae_checkpoint(state, vcfg), "VAE")
    tcfg = text_config(state, config)
    text = CLIPTextModel(tcfg)
    dropped = tuple(f"{p}encoder.layers.{i}." for p in ("", "text_model.") for i in range(tcfg.num_hidden_layers, 64))
    text_state = _match_prefix(convert_open_clip_checkpoint(text, state, prefix=TEXT), text, "text_model.")
    _load(text, text_state, "text encoder", (*dropped, "text_projection", "logit_scale"))
    return MVDreamModules(unet, vae, text, schedule(state, config))


def save_diffusers(modules: MVDreamModules, tokenizer: Any, folder: Path) -> Path:
    """Write ``modules`` and ``tokenizer`` as a diffusers-format folder the prior loads without converting
    (``model_index.json`` + unet/ vae/ text_encoder/ tokenizer/ scheduler/; the schedule as trained betas)."""
    import json

    from diffusers import DDPMScheduler

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("unet", "vae", "text_encoder"):
        getattr(modules, name).save_pretrained(folder / name)
    tokenizer.save_pretrained(folder / "tokenizer")
    abar = modules.alphas_cumprod.double()
    betas = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
    DDPMScheduler(num_train_timesteps=len(abar), trained_betas=betas.tolist(), clip_sample=False).save_pretrained(
        folder / "scheduler"
    )
    index = {
        "_class_name": "MVDreamPipeline",
        "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return folder
