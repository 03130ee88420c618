"""A CLIP scorer shared by the CLIP-based rewards: torch preprocessing, cached text features.

Preprocessing is done in torch (differentiable, on the device) with the geometry of each reward's reference
code, which differs for non-square images (``Fit``):

- ``torchvision``: OpenAI CLIP's transform (ImageReward, the LAION aesthetic predictor): the shorter side to
  ``size``, the longer to ``int(size * long / short)`` (rounded down), centre crop at offset
  ``int(round((side - size) / 2))`` (Python's round: half to even).
- ``transformers``: CLIPImageProcessor (PickScore, torchmetrics' CLIPScore): the same resize, crop offset
  ``(side - size) // 2``.
- ``pad``: open_clip's ``ResizeMaxSize`` (HPSv2's ``light_augmentation``): the *longer* side to ``size``, the
  shorter to ``round(side * scale)``, then zero (black) padding to a square, split ``pad // 2`` before and the
  rest after, before normalization.

Resizing is bicubic with antialiasing; pixel values match CLIPImageProcessor within the tolerance stated in
tests/test_real_models.py (PIL's bicubic differs slightly from torch's).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from psdkit import hub

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_clip(ref: str, what: str, revision: str | None = None) -> nn.Module:
    """A transformers CLIPModel from a hub id or folder (fails fast when missing)."""
    from transformers import CLIPModel

    path, local_only = hub.resolve(ref, what, "config.json")
    return CLIPModel.from_pretrained(path, revision=revision, local_files_only=local_only)


def load_tokenizer(ref: str, what: str) -> object:
    """A CLIP tokenizer from a hub id or folder."""
    from transformers import CLIPTokenizer

    path, local_only = hub.resolve(ref, what, "tokenizer_config.json")
    return CLIPTokenizer.from_pretrained(path, local_files_only=local_only)


Fit = Literal["torchvision", "transformers", "pad"]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How an H x W image becomes a ``size`` x ``size`` model input."""

    resize: tuple[int, int]
    """(height, width) after resizing."""
    crop: tuple[int, int]
    """(top, left) of the ``size`` x ``size`` window in the resized image (0, 0 when padding)."""
    pad: tuple[int, int, int, int]
    """(left, top, right, bottom) zero padding after resizing."""


def geometry(h: int, w: int, size: int, fit: Fit) -> Geometry:
    """The reference geometry of ``fit`` (module docstring) for an ``h`` x ``w`` image."""
    if fit == "pad":
        scale = size / max(h, w)
        nh, nw = (h, w) if scale == 1.0 else (round(h * scale), round(w * scale))
        ph, pw = size - nh, size - nw
        return Geometry((nh, nw), (0, 0), (pw // 2, ph // 2, pw - pw // 2, ph - ph // 2))
    short, long = min(h, w), max(h, w)
    new_long = int(size * long / short)
    nh, nw = (size, new_long) if h <= w else (new_long, size)
    if fit == "torchvision":
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    else:
        top, left = (nh - size) // 2, (nw - size) // 2
    return Geometry((nh, nw), (top, left), (0, 0, 0, 0))


def preprocess(images: Tensor, size: int, fit: Fit) -> Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 3, size, size] normalized CLIP input (differentiable)."""
    g = geometry(images.shape[-2], images.shape[-1], size, fit)
    x = images
    if g.resize != tuple(images.shape[-2:]):
        x = F.interpolate(x, g.resize, mode="bicubic", align_corners=False, antialias=True)
    if any(g.pad):
        left, top, right, bottom = g.pad
        x = F.pad(x, (left, right, top, bottom), value=0.0)
    top, left = g.crop
    x = x[..., top : top + size, left : left + size]
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _features(out: Any) -> Tensor:
    """Projected features from get_*_features (a tensor in transformers 4, an output object in 5)."""
    return out if isinstance(out, Tensor) else out.pooler_output


class ClipScorer(nn.Module):
    """Normalized image and text embeddings of a CLIP model; ``fit``: the reference preprocessing geometry."""

    model: Any
    """A transformers ``CLIPModel``."""
    tokenizer: Any
    """Its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, fit: Fit = "transformers") -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.fit = fit
        self.size = int(model.config.vision_config.image_size)
        self._text: dict[str, Tensor] = {}

    def image_embeds(self, images: Tensor) -> Tensor:
        """[B, D] unit-norm image embeddings, differentiable in ``images``."""
        pixels = preprocess(images, self.size, self.fit).to(self.model.dtype)
        feats = _features(self.model.get_image_features(pixel_values=pixels))
        return F.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def text_embeds(self, prompts: list[str]) -> Tensor:
        """[B, D] unit-norm text embeddings (cached per prompt)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text]
        if missing:
            tok = self.tokenizer(
                missing,
                padding="max_length",
                truncation=True,
                max_length=self.tokenizer.model_max_length,
                return_tensors="pt",
            )
            dev = next(self.model.parameters()).device
            feats = _features(
                self.model.get_text_features(
                    input_ids=tok.input_ids.to(dev), attention_mask=tok.attention_mask.to(dev)
                )
            )
            for p, f in zip(missing, F.normalize(feats.float(), dim=-1)):
                self._text[p] = f
        return torch.stack([self._text[p] for p in prompts])

    def cosine(self, images: Tensor, prompts: list[str]) -> Tensor:
        """[B] cosine similarity of each image with its prompt."""
        img = self.image_embeds(images)
        return (img * self.text_embeds(prompts).to(img)).sum(-1)

    def _apply(self, fn, recurse: bool = True):
        self._text = {}  # cached text features follow the model's device on next use
        return super()._apply(fn, recurse)
