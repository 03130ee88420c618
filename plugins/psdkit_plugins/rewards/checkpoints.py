"""Random-weight checkpoints of the reward models in their published layouts (transformers folders, the
original ``.pt``/``.pth`` files with their full key sets), for tests and the speed bench. The rewards'
``random_weights`` hooks call these; each returns the folder or file it wrote.
"""

from __future__ import annotations

from pathlib import Path

import torch

from psdkit.contracts.weights import WeightSize
from psdkit_plugins.backbones.tokenizers import save_bert_tokenizer, save_clip_tokenizer, tiny_clip_text_config

BLIP_VIT_L = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 16,
}
BERT_BASE = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 512,
}
TINY_VIT = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
TINY_BERT = {
    "hidden_size": 24,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
}


def save_clip(path: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny transformers CLIPModel + tokenizer folder (the layout of openai/clip-* and PickScore). Heads: 4."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = tiny_clip_text_config().to_dict()
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": image_size,
        "patch_size": 8,
        "projection_dim": 32,
        "hidden_act": "gelu",
    }
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(path)
    save_clip_tokenizer(path)
    return path


def aesthetic_head_state(dims: list[int]) -> dict[str, torch.Tensor]:
    """Random weights of a LAION-aesthetic-layout MLP head (``layers.{0,2,4,6,7}``) with widths ``dims``
    (input, four hidden, 1), drawn from the global RNG."""
    state = {}
    for (i, j), idx in zip(zip(dims[:-1], dims[1:]), (0, 2, 4, 6, 7)):
        layer = torch.nn.Linear(i, j)
        state[f"layers.{idx}.weight"], state[f"layers.{idx}.bias"] = layer.weight.data, layer.bias.data
    return state


def save_aesthetic_head(path: Path, in_dim: int = 32, seed: int = 0) -> Path:
    """A LAION-aesthetic-layout head (``layers.{0,2,4,6,7}``, the full key set of the released ``.pth``)."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(aesthetic_head_state([in_dim, 16, 8, 8, 4, 1]), path)
    return path


def save_hpsv2(folder: Path, seed: int = 0) -> Path:
    """An open_clip-format checkpoint (``{"state_dict": {"module.…": …}}``, like HPSv2's, every key open_clip
    saves) of a tiny CLIP, plus its tokenizer in ``clip/``. Returns the folder (the checkpoint is
    ``HPS_v2.1_compressed.pt``). Heads: 4 and 4."""
    from transformers import CLIPModel

    from psdkit_plugins.backbones.open_clip import hf_to_open_clip

    clip_dir = save_clip(folder / "clip", image_size=32, seed=seed)
    state = hf_to_open_clip(CLIPModel.from_pretrained(clip_dir).state_dict())
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "HPS_v2.1_compressed.pt")
    return folder


def save_imagereward(
    folder: Path, size: WeightSize = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32
) -> Path:
    """An ``ImageReward.pt`` with random weights and the original's full key set (BLIP ViT + BERT with
    cross-attention, the text encoder's position ids, BLIP's two contrastive projections, the MLP head), plus
    the tiny BERT tokenizer in ``tokenizer/``. ``full``: BLIP ViT-L/16 + BERT-base (heads 16 and 12);
    ``tiny``: heads 4 and 4."""
    from transformers import BertTokenizer, BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

    from psdkit_plugins.backbones.blip import hf_to_vit

    vision, text = (TINY_VIT, TINY_BERT) if size == "tiny" else (BLIP_VIT_L, BERT_BASE)
    head, embed_dim = ((16, 8, 8, 4), 16) if size == "tiny" else ((1024, 128, 64, 16), 256)
    torch.manual_seed(seed)
    tok = save_bert_tokenizer(folder / "tokenizer")
    vocab = len(BertTokenizer.from_pretrained(tok)) + 2 if size == "tiny" else 30524  # + [DEC], [ENC]
    # BlipVisionConfig's initializer_range defaults to 1e-10, which transformers 5 applies: every weight ~1e-10 and
    # the reward constant in the image (its gradient 6e-8 in all). BERT's 0.02 gives a model that reacts to its input.
    vis = BlipVisionModel(BlipVisionConfig(layer_norm_eps=1e-6, initializer_range=0.02, **vision))
    txt = BlipTextModel(
        BlipTextConfig(vocab_size=vocab, encoder_hidden_size=vision["hidden_size"], **text), add_pooling_layer=False
    )
    state = {f"blip.visual_encoder.{k}": v for k, v in hf_to_vit(vis.state_dict()).items()}
    state.update({f"blip.text_encoder.{k}": v for k, v in txt.state_dict().items()})
    # saved by the original BLIP_Pretrain besides: the text encoder's position-id buffer and the two
    # contrastive projections (ImageReward does not use them)
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(text["max_position_embeddings"]).expand((1, -1))
    for name, width in (("vision_proj", vision["hidden_size"]), ("text_proj", text["hidden_size"])):
        proj = torch.nn.Linear(width, embed_dim)
        state[f"blip.{name}.weight"], state[f"blip.{name}.bias"] = proj.weight.data, proj.bias.data
    state.update({f"mlp.{k}": v for k, v in aesthetic_head_state([text["hidden_size"], *head, 1]).items()})
    torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, folder / "ImageReward.pt")
    return folder
