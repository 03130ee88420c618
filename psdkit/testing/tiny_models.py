"""Tiny random-weight models saved in the real checkpoint layouts, for tests without downloads.

Each function builds the real architecture class at a toy size (seeded), saves it exactly like the
published checkpoint (``save_pretrained`` folders or the original ``.pt``/``.pth`` files) and returns
the path, so plugins load it through the same code that loads the real weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_VOCAB = ["l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "lo", "l</w>", "w</w>", "r</w>", "t</w>",
              "low</w>", "er</w>", "lowest</w>", "newer</w>", "wider", "<unk>", "<|startoftext|>", "<|endoftext|>"]
TINY_MERGES = "#version: 0.2\nl o\nlo w</w>\ne r</w>\n"


def save_tiny_clip_tokenizer(path: Path) -> Path:
    """A CLIP tokenizer with a 23-token vocabulary (bos 21, eos/pad 22), saved with save_pretrained."""
    from transformers import CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps({w: i for i, w in enumerate(TINY_VOCAB)}))
    (path / "merges.txt").write_text(TINY_MERGES)
    tok = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), unk_token="<unk>",
                        pad_token="<|endoftext|>", model_max_length=77)
    tok.save_pretrained(path)
    return path


def tiny_clip_text_config(hidden: int = 32):
    """A 2-layer CLIP text config over the tiny vocabulary."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(TINY_VOCAB), hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, projection_dim=hidden,
                          bos_token_id=21, eos_token_id=22, pad_token_id=22, hidden_act="gelu")


TINY_UNET = dict(
    block_out_channels=(32, 64), layers_per_block=1, sample_size=8,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=(2, 4),
    use_linear_projection=True, norm_num_groups=32,
)
TINY_VAE = dict(block_out_channels=(8, 16, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=64)


def save_tiny_stable_diffusion(path: Path, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """A tiny Stable-Diffusion-layout folder (model_index.json + unet, vae, text_encoder, tokenizer, scheduler)."""
    return save_stable_diffusion(path, TINY_UNET, TINY_VAE, tiny_clip_text_config(), prediction_type, seed)


def save_stable_diffusion(path: Path, unet: dict, vae: dict, text_config, prediction_type: str = "epsilon",
                          seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A Stable-Diffusion-layout folder with random weights: UNet and VAE kwargs, a CLIPTextConfig, the tiny
    tokenizer (token ids fit any CLIP vocabulary), a scaled-linear DDPM schedule; weights saved in ``dtype``."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    def save(model: torch.nn.Module, sub: str) -> None:
        (model if dtype == torch.float32 else model.to(dtype)).save_pretrained(path / sub)

    save(UNet2DConditionModel(in_channels=4, out_channels=4, **unet), "unet")
    save(AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                       up_block_types=("UpDecoderBlock2D",) * 4, **vae), "vae")
    save(CLIPTextModel(text_config), "text_encoder")
    save_tiny_clip_tokenizer(path / "tokenizer")
    DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  prediction_type=prediction_type, clip_sample=False, steps_offset=1,
                  ).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [None, None], "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }))
    return path


def save_tiny_clip(path: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A transformers CLIPModel + tokenizer folder (the layout of openai/clip-* and PickScore)."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = tiny_clip_text_config().to_dict()
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": image_size, "patch_size": 8, "projection_dim": 32, "hidden_act": "gelu"}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(path)
    save_tiny_clip_tokenizer(path)
    return path


def aesthetic_head_state(dims: list[int]) -> dict[str, torch.Tensor]:
    """Random weights of a LAION-aesthetic-layout MLP head (``layers.{0,2,4,6,7}``) with widths ``dims``
    (input, four hidden, 1), drawn from the global RNG."""
    state = {}
    for (i, j), idx in zip(zip(dims[:-1], dims[1:]), (0, 2, 4, 6, 7)):
        layer = torch.nn.Linear(i, j)
        state[f"layers.{idx}.weight"], state[f"layers.{idx}.bias"] = layer.weight.data, layer.bias.data
    return state


def save_tiny_aesthetic_head(path: Path, in_dim: int = 32, seed: int = 0) -> Path:
    """A LAION-aesthetic-layout head (``layers.{0,2,4,6,7}``) as a ``.pth`` state dict."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(aesthetic_head_state([in_dim, 16, 8, 8, 4, 1]), path)
    return path


def save_tiny_hpsv2(folder: Path, seed: int = 0) -> Path:
    """An open_clip-format checkpoint (``{"state_dict": ...}``, like HPSv2's) of a tiny CLIP, plus a tokenizer.

    Returns the folder; the checkpoint is ``HPS_v2.1_compressed.pt`` inside it. Heads: 4 and 4.
    """
    from psdkit_plugins.rewards._open_clip import hf_to_open_clip
    from transformers import CLIPModel

    clip_dir = save_tiny_clip(folder / "clip", image_size=32, seed=seed)
    state = hf_to_open_clip(CLIPModel.from_pretrained(clip_dir).state_dict())
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "HPS_v2.1_compressed.pt")
    return folder


def save_tiny_bert_tokenizer(path: Path) -> Path:
    """A BERT WordPiece tokenizer with a 40-token vocabulary, saved with save_pretrained."""
    from transformers import BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "sphere", "cube", "photo", "of",
             "the", "green", "purple", "ball", "box", ",", "front", "side", "back", "view", "dslr", "leather",
             "recliner", "worn", "##s", "##ed", "##ing", "and", "in", "on", "with", "big", "small", "low", "new",
             "wide", "old", "very"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    return path


def save_tiny_imagereward(folder: Path, seed: int = 0) -> Path:
    """An ImageReward.pt in the original BLIP layout (tiny ViT + BERT with cross-attention + MLP), and a
    BERT tokenizer folder ``tokenizer/``. Heads: 4 and 4."""
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)
    text = dict(hidden_size=24, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64)
    return save_imagereward(folder, vision, text, (16, 8, 8, 4), seed=seed, embed_dim=16)


def save_imagereward(folder: Path, vision: dict, text: dict, head: tuple[int, ...], vocab_size: int | None = None,
                     seed: int = 0, dtype: torch.dtype = torch.float32, embed_dim: int = 256) -> Path:
    """An ImageReward.pt with random weights and the original's full key set: BlipVisionConfig and
    BlipTextConfig kwargs, the MLP head's hidden widths, BLIP's contrastive ``embed_dim``, and the tiny BERT
    tokenizer (``vocab_size`` defaults to its size)."""
    from psdkit_plugins.rewards._blip import hf_to_vit
    from transformers import BertTokenizer, BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

    torch.manual_seed(seed)
    tok = save_tiny_bert_tokenizer(folder / "tokenizer")
    vocab = vocab_size or len(BertTokenizer.from_pretrained(tok)) + 2  # [DEC] and [ENC] are added at load
    vis = BlipVisionModel(BlipVisionConfig(layer_norm_eps=1e-6, **vision))
    txt = BlipTextModel(BlipTextConfig(vocab_size=vocab, encoder_hidden_size=vision["hidden_size"], **text),
                        add_pooling_layer=False)
    state = {f"blip.visual_encoder.{k}": v for k, v in hf_to_vit(vis.state_dict()).items()}
    state.update({f"blip.text_encoder.{k}": v for k, v in txt.state_dict().items()})
    # what the original BLIP_Pretrain saves besides: the text encoder's position-id buffer and the two
    # contrastive projections (embed_dim 256 in BLIP; ImageReward does not use them)
    positions = txt.config.max_position_embeddings
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(positions).expand((1, -1))
    for name, width in (("vision_proj", vision["hidden_size"]), ("text_proj", text["hidden_size"])):
        proj = torch.nn.Linear(width, embed_dim)
        state[f"blip.{name}.weight"], state[f"blip.{name}.bias"] = proj.weight.data, proj.bias.data
    state.update({f"mlp.{k}": v for k, v in aesthetic_head_state([text["hidden_size"], *head, 1]).items()})
    torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, folder / "ImageReward.pt")
    return folder


def save_tiny_t5_tokenizer(path: Path) -> Path:
    """A T5 (Unigram) tokenizer with a handful of pieces, built with ``tokenizers`` and saved."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581{w}", -2.0) for w in ("a", "red", "blue", "sphere", "cube", "photo", "of", "the")]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"] + [("\u2581", -3.0)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    fast = T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=77)
    fast.save_pretrained(path)
    return path


def save_tiny_deepfloyd_if(path: Path, seed: int = 0) -> Path:
    """A DeepFloyd-IF-stage-I-layout folder: pixel UNet (3 in, 6 out), T5 encoder, tokenizer, scheduler."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    tok = save_tiny_t5_tokenizer(path / "tokenizer")
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(tok))
    T5EncoderModel(T5Config(vocab_size=vocab, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
                            pad_token_id=0, eos_token_id=1)).save_pretrained(path / "text_encoder")
    UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=3, out_channels=6,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, encoder_hid_dim=16,
        encoder_hid_dim_type="text_proj", attention_head_dim=(2, 4), norm_num_groups=32,
    ).save_pretrained(path / "unet")
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                  variance_type="learned_range", clip_sample=False).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "IFPipeline", "_diffusers_version": "0.30.0", "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
        "unet": ["diffusers", "UNet2DConditionModel"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "watermarker": [None, None], "requires_safety_checker": False,
    }))
    return path
