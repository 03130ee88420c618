"""Helpers shared by the diffusers-based priors."""

from __future__ import annotations

import torch

from psdkit.contracts.prior import PREDICTION_TYPES
from psdkit.errors import PluginError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_dtype(name: str) -> torch.dtype:
    """The weights dtype for a config value; ``auto`` is fp16 on CUDA and fp32 on the CPU."""
    return DTYPES.get(name, torch.float16 if torch.cuda.is_available() else torch.float32)


class OffloadedTextEncoder:
    """Mixin: keeps ``self.text_encoder`` on the CPU when ``config.offload_text_encoder`` is set, even when
    the prior is moved to a device (prompts are encoded once, before training)."""

    def _apply(self, fn, recurse: bool = True):
        result = super()._apply(fn, recurse)
        if self.config.offload_text_encoder:
            self.text_encoder.to("cpu")
        return result


def pick_prediction_type(configured: str, scheduler: str, where: str) -> str:
    """The network's prediction type: ``configured`` unless ``auto``, else the scheduler's; refuses what psdkit
    cannot convert to eps, naming ``where`` (the dotted path of the config key)."""
    kind = scheduler if configured == "auto" else configured
    if kind not in PREDICTION_TYPES:
        raise PluginError(f"{where}: the model predicts {kind!r}, which psdkit cannot convert to eps; "
                          f"set {where} to one of {', '.join(PREDICTION_TYPES)} if its scheduler config is wrong")
    return kind
