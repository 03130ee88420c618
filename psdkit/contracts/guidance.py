"""The guidance-strategy contract: how a frozen prior (and a reward) turn a render into a loss."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from psdkit.contracts.camera import Cameras, CameraSampler
from psdkit.contracts.component import Component, ParamGroup
from psdkit.contracts.prior import DiffusionPrior
from psdkit.contracts.reward import RewardModel


@dataclasses.dataclass
class Conditioning:
    """Text conditioning computed once before training."""

    labels: list[str]
    """View labels (e.g. ``["front", "side", "back"]``, or ``[""]`` without view-dependent prompts)."""
    prompts: list[str]
    """Prompt text per label, as the prior sees it (with the view suffix)."""
    prompt_emb: Tensor
    """[V, L, D] prompt embedding per label."""
    uncond_emb: Tensor
    """[1, L, D] embedding of the empty prompt."""
    negative_emb: Tensor
    """[1, L, D] embedding of the recipe's negative prompt (equals ``uncond_emb`` if none)."""
    base_prompt: str
    """The prompt without view suffixes: what rewards score against."""

    def to(self, device: torch.device | str) -> Conditioning:
        """The same conditioning on ``device``."""
        return dataclasses.replace(
            self,
            prompt_emb=self.prompt_emb.to(device),
            uncond_emb=self.uncond_emb.to(device),
            negative_emb=self.negative_emb.to(device),
        )


@dataclasses.dataclass
class ViewSource:
    """Training views a strategy may draw on its own, outside the step (PSD's replay pool): the run's camera
    sampler and how a camera gets its prompt label."""

    camera: CameraSampler
    label_ids: Callable[[Cameras], list[int]]
    """Index into ``Conditioning.labels`` of each camera."""
    seed: int
    """The recipe's seed (the strategy derives its generators from it)."""

    def sample(self, generator: torch.Generator) -> tuple[Cameras, Tensor]:
        """(one group of training views, [group] long label of each), independent of the batch size."""
        cams = self.camera.sample_group(generator)
        return cams, torch.tensor(self.label_ids(cams), dtype=torch.long)


@dataclasses.dataclass(frozen=True)
class StateSize:
    """What sizes a strategy's own state, known before any weight loads."""

    sample_shape: tuple[int, ...] | None
    """[C, h, w] of one sample in the prior's space (None: the prior does not say)."""
    labels: int
    """Prompt labels (3 with view-dependent prompts, else 1)."""
    group: int
    """Views the prior denoises jointly."""


@dataclasses.dataclass
class GuidanceContext:
    """The frozen models a strategy uses. Not an ``nn.Module``: nothing in it is trained or saved."""

    prior: DiffusionPrior
    reward: RewardModel | None
    cond: Conditioning
    views: ViewSource | None = None
    """Where a strategy draws views of its own (None: it may not)."""

    def require_reward(self) -> RewardModel:
        """The training reward; a strategy that needs one calls this (recipes without one are refused at
        validation for strategies with ``needs_reward``)."""
        if self.reward is None:
            raise RuntimeError("this strategy needs a reward model (recipe key: reward)")
        return self.reward

    def require_views(self) -> ViewSource:
        """The run's view source; a strategy that draws its own views calls this."""
        if self.views is None:
            raise RuntimeError("this strategy draws views of its own: give GuidanceContext a ViewSource")
        return self.views


@dataclasses.dataclass
class GuidanceInput:
    """One training step's input to a strategy."""

    images: Tensor
    """[B, 3, H, W] renders in [0, 1], differentiable with respect to the representation."""
    cameras: Cameras
    view_index: Tensor
    """[B] long, index into ``Conditioning.labels`` for each render."""
    step: int
    max_steps: int
    generator: torch.Generator
    """Seeded per (seed, step), the same on every rank: draw randomness for the *global* batch from
    it and keep rows ``batch_offset : batch_offset + B`` (:func:`psdkit.ops.distill.draw_noise` does
    this), so a run's result does not depend on how the global batch is split across ranks."""
    batch_offset: int = 0
    """Index of this rank's first sample in the global batch."""
    global_batch: int | None = None
    """Samples in the global batch (all ranks); None: this batch is the whole batch."""

    def reward_prompts(self, cond: Conditioning, copies: int = 1) -> list[str]:
        """The text a reward scores each of the ``copies * B`` images against: the base prompt.

        View suffixes ("..., back view") steer the prior; reward models were trained on plain prompts, and
        evaluation scores the plain prompt too.
        """
        return [cond.base_prompt] * (len(self.view_index) * copies)


@dataclasses.dataclass
class GuidanceOutput:
    """A strategy's result for one step."""

    loss: Tensor
    """Scalar. Its gradient is the update of the representation (through ``images``) and of the
    strategy's own learnable parameters."""
    logs: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    """Scalar diagnostics (detached), logged under ``guidance/<key>``."""


class GuidanceStrategy(Component, abc.ABC):
    """A score-distillation strategy.

    Learnable state (e.g. PSD's negative text embedding) are ``nn.Parameter``s of the strategy:
    checkpointed, optimized and synchronized under DDP. The frozen prior and reward are reached
    through :class:`GuidanceContext` and are never submodules.
    """

    needs_reward: ClassVar[bool] = False
    """True if the strategy cannot run without a reward model."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._ctx: GuidanceContext | None = None

    @property
    def ctx(self) -> GuidanceContext:
        """The frozen models given to :meth:`setup`."""
        if self._ctx is None:
            raise RuntimeError(f"{type(self).__name__}.setup() was not called")
        return self._ctx

    def setup(self, ctx: GuidanceContext) -> None:
        """Receive the frozen models and create learnable state. Called once, before training."""
        self._ctx = ctx

    @abc.abstractmethod
    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        """Compute the step's loss."""

    def param_groups(self) -> list[ParamGroup]:
        """Learnable parameter groups, each with its optimizer settings and learning-rate schedule. Default:
        none."""
        return []

    def prepare(self, progress: bool = False) -> None:
        """Work done once before the first step, after a resumed checkpoint is loaded (PSD draws its replay pool
        here unless the checkpoint had it); ``progress`` shows a progress bar. Default: nothing."""

    @classmethod
    def memory_estimate(cls, config: Any, sample: StateSize) -> tuple[int, str, str]:
        """(bytes of the strategy's own state on the device, how they were counted, the config key that sizes
        them), from the config alone: checked with the step's memory before any weight loads. Default: none."""
        return 0, "", ""

    def updating(self, step: int, max_steps: int) -> bool:
        """Whether ``step`` updates the strategy's own learnable state online (PSD's e_n): the speed bench times
        steps with and without it. Default: never."""
        return False
