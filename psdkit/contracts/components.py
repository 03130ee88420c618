"""What a run is made of: one built instance per component kind, plus the text conditioning."""

from __future__ import annotations

import dataclasses

from psdkit.contracts.background import Background
from psdkit.contracts.camera import CameraSampler
from psdkit.contracts.guidance import Conditioning, GuidanceStrategy
from psdkit.contracts.prior import DiffusionPrior
from psdkit.contracts.renderer import Renderer
from psdkit.contracts.representation import Representation
from psdkit.contracts.reward import RewardModel


@dataclasses.dataclass
class Components:
    """Everything a run is made of."""

    representation: Representation
    renderer: Renderer
    background: Background
    camera: CameraSampler
    prior: DiffusionPrior
    guidance: GuidanceStrategy
    reward: RewardModel | None
    eval_rewards: dict[str, RewardModel]
    cond: Conditioning
