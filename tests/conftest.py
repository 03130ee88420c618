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
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest -n N: the workers share the cores (and so do their children)
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
    torch.set_num_threads(_threads)


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


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight checkpoints of every real model, in their published layouts (~6 s, once)."""
    pytest.importorskip("diffusers", reason="pip install 'psdkit[diffusers]' for the real-model tests")
    from psdkit_plugins.priors import checkpoints as priors
    from psdkit_plugins.rewards import checkpoints as rewards

    d = tmp_path_factory.mktemp("weights")
    return {
        "sd": priors.save_stable_diffusion(d / "sd"),
        "sd_v": priors.save_stable_diffusion(d / "sd_v", prediction_type="v_prediction"),
        "clip": rewards.save_clip(d / "clip"),
        "head": rewards.save_aesthetic_head(d / "head" / "aesthetic.pth"),
        "hps": rewards.save_hpsv2(d / "hps"),
        "ir": rewards.save_imagereward(d / "ir"),
        "if": priors.save_deepfloyd_if(d / "if"),
        "mv": priors.save_mvdream(d / "mv"),
        "cache": d / "text-cache",
    }


def mvdream_overrides(w: dict[str, Path]) -> list[str]:
    """Overrides that point an MVDream recipe's prior at the tiny original-layout checkpoint, with one group of
    4 views per step."""
    return [
        f"prior.config.model={w['mv']}",
        f"prior.config.original_config={w['mv'] / 'sd-v2-base.yaml'}",
        f"prior.config.tokenizer={w['mv']}",
        "camera.config.batch_size=4",
        "camera.config.milestones=[]",
    ]


def tiny_model_overrides(
    w: dict[str, Path], representation: str = "hashgrid-nerf", prior: str = "stable-diffusion"
) -> list[str]:
    """Overrides that point a Stable Diffusion (or MVDream) recipe's models at the tiny checkpoints (and shrink
    its ``representation``)."""
    hps = f"{{checkpoint: '{w['hps']}', tokenizer: '{w['hps'] / 'clip'}', vision_heads: 4, text_heads: 4}}"
    evals = (
        f"[{{name: hpsv2, config: {hps}}}, "
        f"{{name: pickscore, config: {{model: '{w['clip']}', tokenizer: '{w['clip']}'}}}}, "
        f"{{name: aesthetic, config: {{clip: '{w['clip']}', head: '{w['head']}'}}}}, "
        f"{{name: clip-score, config: {{model: '{w['clip']}'}}}}]"
    )
    return [
        *(mvdream_overrides(w) if prior == "mvdream" else [f"prior.config.model={w['sd']}"]),
        "prior.config.resolution=64",
        "prior.config.text_cache=null",
        f"reward.config.checkpoint={w['ir']}",
        f"reward.config.tokenizer={w['ir'] / 'tokenizer'}",
        "reward.config.vision_heads=4",
        "reward.config.text_heads=4",
        f"eval_rewards={evals}",
        *(
            ["representation.config.levels=4", "representation.config.log2_table_size=12"]
            if representation == "hashgrid-nerf"
            else ["representation.config.init_count=200", "representation.config.capacity=400"]
        ),
        "prior.config.compile_backend=aot_eager",
        "reward.config.compile_backend=aot_eager",  # trace, no codegen
    ]
