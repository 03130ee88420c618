"""One small contract per component kind. Plugins subclass these."""

from psdkit.contracts.background import Background
from psdkit.contracts.camera import Cameras, CameraSampler, look_at_c2w
from psdkit.contracts.component import ParamGroup
from psdkit.contracts.components import Components
from psdkit.contracts.guidance import (
    Conditioning,
    GuidanceContext,
    GuidanceInput,
    GuidanceOutput,
    GuidanceStrategy,
    ViewSource,
)
from psdkit.contracts.prior import DiffusionPrior
from psdkit.contracts.renderer import Renderer, RenderOutput
from psdkit.contracts.representation import FieldOutput, Representation
from psdkit.contracts.reward import RewardModel

__all__ = [
    "Background",
    "CameraSampler",
    "Cameras",
    "Components",
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
    "ViewSource",
    "look_at_c2w",
]
