"""Per-step random generators: all randomness of a step derives from (seed, rank, step)."""

from __future__ import annotations

import hashlib

import torch


def step_seed(seed: int, rank: int, step: int, stream: str = "") -> int:
    """A 63-bit seed mixing the recipe seed, the rank, the step and a stream name."""
    digest = hashlib.blake2b(f"{seed}:{rank}:{step}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def step_generator(seed: int, rank: int, step: int, stream: str = "") -> torch.Generator:
    """A CPU generator seeded for this (seed, rank, step, stream)."""
    return torch.Generator().manual_seed(step_seed(seed, rank, step, stream))
