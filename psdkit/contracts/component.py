"""The base every nn.Module component kind shares: a typed config, and how trainable parameters are declared."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from psdkit.config.schema import Schedule


@dataclasses.dataclass
class ParamGroup:
    """Trainable parameters of a component with their own Adam settings and learning-rate schedule.

    Settings left at None take the recipe's ``optim`` section. The run builds one AdamW over every group and
    one step-wise ``LambdaLR`` whose factor for this group is ``lr(step)``.
    """

    name: str
    """Unique within the component; the optimizer names the group ``<component>.<name>``."""
    params: list[nn.Parameter]
    lr: Schedule
    """Learning rate per step."""
    betas: tuple[float, float] | None = None
    """Adam betas; None: ``optim.betas``."""
    eps: float | None = None
    """Adam epsilon; None: ``optim.eps``."""
    weight_decay: float | None = None
    """Decoupled weight decay; None: ``optim.weight_decay``."""


class Component(nn.Module):
    """A plugin instance built from its frozen dataclass ``Config``.

    Args:
        config: an instance of the plugin's ``Config``.
    """

    Config: ClassVar[type | None] = None
    """The plugin's frozen dataclass of settings (every plugin must set it; the registry checks)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
