"""psdkit: Preference Score Distillation, text-to-3D aligned with human preference, as pluggable components.

The public API a plugin author needs is importable from here: the contracts of each component kind, the
config helpers (``knob``, ``Schedule``) and the conformance test mixins. Names load on first use, so
``import psdkit`` (and ``psdkit --version``) does not import torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("psdkit")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "psdkit.contracts": [
        "Background",
        "CameraSampler",
        "Cameras",
        "Conditioning",
        "DiffusionPrior",
        "FieldOutput",
        "GuidanceContext",
        "GuidanceInput",
        "GuidanceOutput",
        "GuidanceStrategy",
        "ParamGroup",
        "Renderer",
        "RenderOutput",
        "Representation",
        "RewardModel",
    ],
    "psdkit.config.schema": ["Schedule", "knob"],
    "psdkit.testing.conformance": [
        "CameraConformance",
        "GuidanceConformance",
        "PriorConformance",
        "RendererConformance",
        "RepresentationConformance",
        "RewardConformance",
    ],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["__version__", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'psdkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
