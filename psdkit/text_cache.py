"""A disk cache of text embeddings, keyed by model, revision and prompt (large text encoders run once)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor


class TextCache:
    """Embeddings [L, D] stored as ``<folder>/<sha256(model|revision|prompt)>.pt``.

    Args:
        folder: cache folder (``~`` expanded); None disables caching.
        model: model id or path (part of the key).
        revision: model revision (part of the key).
    """

    def __init__(self, folder: str | None, model: str, revision: str | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder else None
        self.model, self.revision = model, revision

    def path(self, prompt: str) -> Path | None:
        """Where ``prompt``'s embedding is stored (None without a folder)."""
        if self.folder is None:
            return None
        key = hashlib.sha256(f"{self.model}|{self.revision}|{prompt}".encode()).hexdigest()[:32]
        return self.folder / f"{key}.pt"

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
