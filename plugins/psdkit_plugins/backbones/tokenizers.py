"""Tiny tokenizers for random-weight checkpoints (tests, the speed bench): real classes, toy vocabularies."""

from __future__ import annotations

import json
from pathlib import Path

TINY_VOCAB = [
    "l",
    "o",
    "w",
    "e",
    "r",
    "s",
    "t",
    "i",
    "d",
    "n",
    "lo",
    "l</w>",
    "w</w>",
    "r</w>",
    "t</w>",
    "low</w>",
    "er</w>",
    "lowest</w>",
    "newer</w>",
    "wider",
    "<unk>",
    "<|startoftext|>",
    "<|endoftext|>",
]
TINY_MERGES = "#version: 0.2\nl o\nlo w</w>\ne r</w>\n"
BERT_WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "a",
    "red",
    "blue",
    "sphere",
    "cube",
    "photo",
    "of",
    "the",
    "green",
    "purple",
    "ball",
    "box",
    ",",
    "front",
    "side",
    "back",
    "view",
    "dslr",
    "leather",
    "recliner",
    "worn",
    "##s",
    "##ed",
    "##ing",
    "and",
    "in",
    "on",
    "with",
    "big",
    "small",
    "low",
    "new",
    "wide",
    "old",
    "very",
]


def save_clip_tokenizer(path: Path) -> Path:
    """A CLIP BPE tokenizer with a 23-token vocabulary (bos 21, eos/pad 22), saved with save_pretrained; its
    ids fit any CLIP vocabulary."""
    from transformers import CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps({w: i for i, w in enumerate(TINY_VOCAB)}))
    (path / "merges.txt").write_text(TINY_MERGES)
    tok = CLIPTokenizer(
        str(path / "vocab.json"),
        str(path / "merges.txt"),
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )
    tok.save_pretrained(path)
    return path


def save_bert_tokenizer(path: Path) -> Path:
    """A BERT WordPiece tokenizer with a 40-token vocabulary, saved with save_pretrained."""
    from transformers import BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    return path


def save_t5_tokenizer(path: Path) -> Path:
    """A T5 (Unigram) tokenizer with a handful of pieces, built with ``tokenizers`` and saved."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581{w}", -2.0) for w in ("a", "red", "blue", "sphere", "cube", "photo", "of", "the")]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"] + [("\u2581", -3.0)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    fast = T5TokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0, model_max_length=77
    )
    fast.save_pretrained(path)
    return path


def tiny_clip_text_config(hidden: int = 32):
    """A 2-layer CLIP text config over the tiny vocabulary."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=hidden,
        bos_token_id=21,
        eos_token_id=22,
        pad_token_id=22,
        hidden_act="gelu",
    )
