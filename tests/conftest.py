"""Test-wide guards: no network, offline hubs, torch threads and seeds restored."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class NetworkBlocked(RuntimeError):
    """Raised when a test tries to open a network connection."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection to a non-local address fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if self.family == socket.AF_UNIX or host in ("127.0.0.1", "localhost", "::1"):
            return real_connect(self, address)
        raise NetworkBlocked(f"test tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _restore_torch_state() -> None:
    """Keep the global RNG and thread count from leaking between tests."""
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    yield
    torch.random.set_rng_state(state)
    torch.set_num_threads(threads)


@pytest.fixture
def recipes_dir() -> Path:
    """The repository's recipes folder."""
    return RECIPES
