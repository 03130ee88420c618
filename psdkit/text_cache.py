"""A disk cache of text embeddings, keyed by everything that changes them (large text encoders run once)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor


class TextCache:
    """Embeddings [L, D] stored as ``<folder>/<sha256(key|prompt)>.pt``.

    Args:
        folder: cache folder (``~`` expanded); None disables caching.
        **key: everything besides the prompt that changes an embedding: the model id or path, its revision, the
            encoder's dtype, the token length, ... (``None`` values count too). Two encoders that differ in any
            of these never share an entry.
    """

    def __init__(self, folder: str | None, **key: object) -> None:
        if "model" not in key:
            raise TypeError("TextCache needs at least model=...")
        self.folder = Path(folder).expanduser() if folder else None
        self.key = "|".join(f"{k}={key[k]!s}" for k in sorted(key))

    def path(self, prompt: str) -> Path | None:
        """Where ``prompt``'s embedding is stored (None without a folder)."""
        if self.folder is None:
            return None
        digest = hashlib.sha256(f"{self.key}|prompt={prompt}".encode()).hexdigest()[:32]
        return self.folder / f"{digest}.pt"

    def encode(self, prompts: list[str], encode: Callable[[list[str]], Tensor]) -> Tensor:
        """[B, L, D] embeddings of ``prompts``; ``encode`` runs only for prompts not cached yet."""
        found: dict[str, Tensor] = {}
        for prompt in dict.fromkeys(prompts):
            path = self.path(prompt)
            if path is not None and path.is_file():
                found[prompt] = torch.load(path, map_location="cpu", weights_only=True)
        missing = [p for p in dict.fromkeys(prompts) if p not in found]
        if missing:
            for prompt, emb in zip(missing, encode(missing).float().cpu()):
                found[prompt] = emb
                path = self.path(prompt)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    torch.save(emb.clone(), tmp)
                    tmp.replace(path)
        return torch.stack([found[p] for p in prompts])
