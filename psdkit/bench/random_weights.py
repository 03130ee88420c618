"""Random-weight checkpoints of a recipe's real architectures, for ``psdkit bench speed --random-weights``.

Each supported plugin gets a checkpoint in its published layout (saved by psdkit.testing.tiny_models' savers)
and the recipe overrides that point the plugin at it, so the bench loads them through the plugin's own
loading code. ``full`` is the published size (Stable Diffusion 2.1-base: 866M-parameter UNet, 84M VAE,
OpenCLIP-H text encoder; ImageReward: BLIP ViT-L/16 + BERT-base); ``tiny`` is the test size, for a CPU.
Checkpoints are cached under ``~/.cache/psdkit/random-weights`` and reused.

A third-party plugin joins by defining ``random_weights(cls, config, folder: Path, size: str) -> list[str]``
(a classmethod that saves a checkpoint into ``folder`` and returns the overrides, keys relative to its
``config``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from psdkit.config.recipe import Recipe
from psdkit.errors import RecipeError

Size = Literal["full", "tiny"]
CACHE = Path("~/.cache/psdkit/random-weights").expanduser()

SD21_UNET = dict(
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, sample_size=64, cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512)
BLIP_VIT_L = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=224, patch_size=16)
BERT_BASE = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 max_position_embeddings=512)


def _stable_diffusion(folder: Path, size: Size) -> list[str]:
    from transformers import CLIPTextConfig

    from psdkit.testing import tiny_models

    if size == "tiny":
        tiny_models.save_tiny_stable_diffusion(folder)
        return [f"model={folder}", "text_cache=null", "resolution=64"]
    text = CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                          num_attention_heads=16, max_position_embeddings=77, projection_dim=512, hidden_act="gelu")
    tiny_models.save_stable_diffusion(folder, SD21_UNET, SD_VAE, text, dtype=torch.float16)
    return [f"model={folder}", "text_cache=null"]


def _imagereward(folder: Path, size: Size) -> list[str]:
    from psdkit.testing import tiny_models

    common = [f"checkpoint={folder}", f"tokenizer={folder / 'tokenizer'}"]
    if size == "tiny":
        tiny_models.save_tiny_imagereward(folder)
        return [*common, "vision_heads=4", "text_heads=4"]
    tiny_models.save_imagereward(folder, BLIP_VIT_L, BERT_BASE, (1024, 128, 64, 16), vocab_size=30524,
                                 dtype=torch.float16)
    return common


BUILT_IN: dict[tuple[str, str], Callable[[Path, Size], list[str]]] = {
    ("prior", "stable-diffusion"): _stable_diffusion,
    ("reward", "imagereward"): _imagereward,
}
NO_WEIGHTS = {("prior", "analytic"), ("reward", "analytic"), ("reward", "analytic-heldout")}


def random_weight_overrides(recipe: Recipe, size: Size, cache: Path = CACHE) -> list[str]:
    """Save (or reuse) random checkpoints for the recipe's prior and reward; returns the overrides to apply.

    Evaluation rewards are not part of a training step and are dropped (``eval_rewards=[]``).
    """
    builders = []
    for key in ("prior", "reward"):
        comp = recipe.components.get(key)
        if comp is None or (key, comp.info.name) in NO_WEIGHTS:
            continue
        custom = getattr(comp.cls, "random_weights", None)
        if custom is None and (key, comp.info.name) not in BUILT_IN:
            raise RecipeError(f"{key}.name", "cannot build random weights for the speed bench (run without "
                              "--random-weights to use real weights, or define random_weights on the plugin)",
                              comp.info.name, sorted(f"{k} {n}" for k, n in BUILT_IN))
        build = (lambda f, s, c=custom, cfg=comp.config: c(cfg, f, s)) if custom else BUILT_IN[(key, comp.info.name)]
        builders.append((key, cache / f"{key}-{comp.info.name}-{size}", build))
    overrides = ["eval_rewards=[]"]
    for key, folder, build in builders:
        done = folder / ".psdkit-complete"
        if done.exists():
            found = done.read_text().splitlines()
        else:
            found = build(folder, size)
            done.write_text("\n".join(found))
        overrides += [f"{key}.config.{o}" for o in found]
    return overrides
