"""The top-level recipe schema. Component configs are validated against each plugin's ``Config``."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from psdkit.config.schema import knob
from psdkit.mesh.config import MeshExportConfig


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
    """A plugin chosen by its entry-point name, with its config."""

    name: str
    """Entry-point name (``psdkit plugins`` lists them)."""
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The plugin's config (``psdkit show KIND NAME`` documents it)."""


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """What to generate."""

    text: str
    """The prompt."""
    negative: str = ""
    """Negative prompt (the CFG baseline of SDS; the initial negative embedding of PSD)."""
    view_dependent: bool = True
    """Append a view suffix to the prompt by camera azimuth."""
    front_suffix: str = ", front view"
    """Suffix for cameras within ``front_angle`` of the front (+x)."""
    side_suffix: str = ", side view"
    """Suffix for cameras between the front and back sectors."""
    back_suffix: str = ", back view"
    """Suffix for cameras beyond ``back_angle`` from the front."""
    front_angle: float = knob(45.0, ge=0.0, le=180.0)
    """Half-width of the front sector, degrees."""
    back_angle: float = knob(135.0, ge=0.0, le=180.0)
    """Start of the back sector, degrees from the front."""


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam settings of the representation and the strategy's learnable state."""

    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    eps: float = knob(1e-15, gt=0.0)
    """Adam epsilon."""
    weight_decay: float = knob(0.0, ge=0.0)
    """Decoupled weight decay (AdamW) of the representation."""
    grad_clip: float | None = knob(None, gt=0.0)
    """Clip each parameter group's gradient norm to this value on its own (null: no clipping)."""
    fused: bool = True
    """Use the fused Adam kernel when the device supports it."""


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """How long and where to train."""

    max_steps: int = knob(400, ge=1, le=100_000_000)
    """Training steps."""
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    """Device kind."""
    devices: int = knob(1, ge=1, le=4096)
    """Devices (processes) to use."""
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    """Distribution strategy; ``ddp`` for several devices."""
    num_nodes: int = knob(1, ge=1, le=100_000)
    """Machines (multi-node through torchrun or SLURM)."""
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true"
    """Numeric precision of the trainable parts."""
    val_every: int = knob(100, ge=1)
    """Save a validation grid every this many steps."""
    val_views: int = knob(4, ge=1, le=256)
    """Views in a validation grid."""
    log_every: int = knob(10, ge=1)
    """Log scalars (and update the progress bar's loss) every this many steps: each is a device-to-host read."""
    ckpt_every: int = knob(0, ge=0)
    """Also keep a step-numbered checkpoint every this many steps (0: only ``last.ckpt``)."""
    keep_checkpoints: int = knob(3, ge=1)
    """How many step-numbered checkpoints to keep."""
    threads: int = knob(0, ge=0, le=4096)
    """CPU threads for torch (0: the CPUs this process may use, by affinity and cgroup quota, shared by CPU DDP
    processes)."""
    memory_check: float = knob(0.9, ge=0.0, le=1.0)
    """Refuse to start when a step's memory estimate exceeds this fraction of the memory available (0: no check)."""
    progress: bool = True
    """Show a progress bar with it/s and ETA."""
    skip_nonfinite: bool = True
    """Skip optimizer steps whose gradients contain NaN or Inf (costs one host sync per step)."""
    max_nonfinite_steps: int = knob(10, ge=1)
    """Stop with a checkpoint after this many non-finite steps in a row."""


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """What a run writes and where."""

    root: str = "runs"
    """Parent folder of run directories; a run goes to ``<root>/<name>``."""
    video_views: int = knob(60, ge=0, le=100_000)
    """Frames of the turntable video (0: no video)."""
    video_fps: int = knob(30, ge=1, le=1000)
    """Frame rate of the video."""
    video_resolution: int = knob(128, ge=16, le=4096)
    """Side of the video frames, pixels."""
    eval_views: int = knob(8, ge=1, le=1024)
    """Views scored for metrics.json."""
    eval_resolution: int = knob(64, ge=8, le=4096)
    """Side of the evaluation renders, pixels."""
    mesh: bool = True
    """Export a mesh at the end of training, as ``export`` says (also ``psdkit export RUN_DIR`` later)."""
    export: MeshExportConfig = MeshExportConfig()
    """Mesh export: marching cubes, cleanup, face budget, UV atlas and baked texture, files (docs/export.md)."""


@dataclasses.dataclass(frozen=True)
class LoggerConfig:
    """Experiment logging."""

    name: Literal["csv", "wandb", "none"] = "csv"
    """Logger: csv (in the run directory), wandb, or none."""
    project: str = "psdkit"
    """W&B project."""
    entity: str | None = None
    """W&B entity (team or user); null: your default."""
    tags: tuple[str, ...] = ()
    """W&B tags."""
    mode: Literal["online", "offline", "disabled"] | None = None
    """W&B mode; null: from WANDB_MODE."""


@dataclasses.dataclass(frozen=True)
class RecipeSchema:
    """A whole recipe."""

    name: str
    """Run name: the run directory's name inside ``output.root`` (one name: no path separators, not ``..``)."""
    prompt: PromptConfig
    """What to generate."""
    representation: ComponentSpec
    """3D representation plugin."""
    renderer: ComponentSpec
    """Renderer plugin."""
    background: ComponentSpec
    """Background plugin."""
    camera: ComponentSpec
    """Camera-sampler plugin."""
    prior: ComponentSpec
    """Diffusion-prior plugin."""
    guidance: ComponentSpec
    """Guidance-strategy plugin."""
    reward: ComponentSpec | None = None
    """Training reward plugin (needed by preference strategies)."""
    eval_rewards: tuple[ComponentSpec, ...] = ()
    """Held-out rewards scored at the end (never trained on)."""
    seed: int = knob(0, ge=0, lt=2**63)
    """Seed of everything random."""
    optim: OptimConfig = OptimConfig()
    """Optimizer settings."""
    """Regularizers."""
    trainer: TrainerConfig = TrainerConfig()
    """Training length and devices."""
    output: OutputConfig = OutputConfig()
    """Outputs."""
    logger: LoggerConfig = LoggerConfig()
    """Logging."""
