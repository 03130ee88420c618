"""The base every nn.Module component kind shares: a typed config."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn


class Component(nn.Module):
    """A plugin instance built from its frozen dataclass ``Config``.

    Args:
        config: an instance of the plugin's ``Config``.
    """

    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
