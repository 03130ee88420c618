"""A tiny deterministic text encoder for the analytic world."""

from __future__ import annotations

import re
import zlib

import torch
from torch import Tensor


class TinyTextEncoder:
    """Maps a prompt to an embedding [L, D] with no weights.

    Each word of ``vocabulary`` gets its own basis vector; any other word gets a fixed pseudo-random
    unit vector (seeded by its CRC32) orthogonal to all vocabulary vectors, so unknown words never
    change which object a prompt selects. Padding tokens are zero, so the empty prompt is all zeros.

    Args:
        vocabulary: words with a meaning in the world.
        max_tokens: L, the sequence length (longer prompts are truncated).
        dim: D, must be > len(vocabulary).
    """

    def __init__(self, vocabulary: list[str], max_tokens: int = 8, dim: int = 16) -> None:
        if dim <= len(vocabulary):
            raise ValueError(f"dim={dim} must exceed the vocabulary size {len(vocabulary)}")
        self.vocabulary = {w: i for i, w in enumerate(vocabulary)}
        self.max_tokens, self.dim = max_tokens, dim

    def word_vector(self, word: str) -> Tensor:
        """[D] embedding of one word."""
        vec = torch.zeros(self.dim)
        if word in self.vocabulary:
            vec[self.vocabulary[word]] = 1.0
            return vec
        gen = torch.Generator().manual_seed(zlib.crc32(word.encode()))
        free = self.dim - len(self.vocabulary)
        tail = torch.randn(free, generator=gen)
        vec[len(self.vocabulary) :] = tail / tail.norm()
        return vec

    def __call__(self, prompts: list[str]) -> Tensor:
        """[B, L, D] embeddings of ``prompts``."""
        out = torch.zeros(len(prompts), self.max_tokens, self.dim)
        for b, prompt in enumerate(prompts):
            words = re.findall(r"[a-z0-9]+", prompt.lower())[: self.max_tokens]
            for i, word in enumerate(words):
                out[b, i] = self.word_vector(word)
        return out

    def keys(self, word_sets: list[tuple[str, ...]]) -> Tensor:
        """[K, D] key of each object: the sum of its word vectors."""
        return torch.stack([sum((self.word_vector(w) for w in ws), torch.zeros(self.dim)) for ws in word_sets])
