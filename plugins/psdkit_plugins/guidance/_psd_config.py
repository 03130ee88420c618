"""PSD's config, in parts: the teacher (top level, as every CFG strategy's), the negative embedding and its
optimizer, the replay pool, the reward's one-step estimate (the variants), and reward-based scaling (form p2).

Keys of the flat config before the pool (commit e734b2b) are refused with the key that replaced them
(``RENAMED``) or why they went (``RETIRED``; their measured results stay in docs/benchmarks_history.md).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from psdkit.config.schema import RetiredKeys, Schedule, knob, retired_keys
from psdkit.ops.distill import RescaleIn
from psdkit_plugins.guidance._cfg import NoiseConfig


@dataclasses.dataclass(frozen=True)
class NegativeConfig:
    """The learnable negative embedding e_n = e_n(0) + rms(e_y) * u: its start, optimizer (AdamW on u) and anchor.

    u is in units of the RMS of the prompt's own embeddings, so learning rate and anchor mean the same for any text
    encoder (the analytic world's, CLIP's, T5's): e_n moves by at most about ``lr`` of that RMS per update and its
    offset settles near 1 / ``anchor_decay`` of it per coordinate (docs/method.md).
    """

    init: Literal["negative", "uncond"] = "negative"
    """e_n(0): the recipe's negative prompt or the empty prompt."""
    lr: Schedule = knob(Schedule(0.08), ge=0.0)
    """AdamW learning rate of u (units of the prompt embedding's RMS per update)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    eps: float = knob(1e-15, gt=0.0)
    """Adam epsilon."""
    anchor_decay: float = knob(3.75, ge=0.0)
    """Decoupled anchor: AdamW weight decay of u, pulling e_n back to e_n(0) outside Adam's normalization, so its
    reach (about 1 / anchor_decay per coordinate) depends neither on the reward's scale nor on the embedding's.
    lr x anchor_decay must stay below 2. 0: no anchor (e_n drifts off the prompt; docs/benchmarks.md)."""
    every: int = knob(1, ge=1)
    """Update e_n every this many steps."""
    start: float = knob(0.0, ge=0.0, le=1.0)
    """Fraction of training after which e_n starts updating."""
    stop: float = knob(0.9, ge=0.0, le=1.0)
    """Fraction of training after which e_n is frozen (a stationary target for the end)."""
    loss_scaling: Literal["dynamic", "off"] = "dynamic"
    """Dynamic loss scaling of the backward through the frozen prior to e_n (fp16 gradients underflow without it);
    a power of two, so exact in any precision."""

    def __post_init__(self) -> None:
        if self.stop < self.start:
            raise ValueError("stop must be >= start")
        if self.lr.bounds()[1] * self.anchor_decay >= 2:
            raise ValueError("anchor_decay: lr x anchor_decay must be < 2 (the decay would overshoot e_n(0))")


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """The replay pool (``neg_loss: pool``): the prior's own samples of the prompt, drawn before training, ranked by
    the training reward, compared in pairs by every e_n update (psdkit.ops.pool)."""

    size: int = knob(32, ge=1, le=100_000)
    """Entries per prompt label: camera groups (one view, or the views of one object for a multi-view prior)."""
    copies: int = knob(4, ge=2, le=64)
    """Samples of the prompt per entry, at its camera group; an update compares every pair of one entry's."""
    batch: int = knob(4, ge=1, le=4096)
    """Entries compared per e_n update, drawn uniformly over the whole pool. Every rank compares the same ones, so
    e_n's update is the same bit for bit on any number of ranks and costs each rank the same."""
    refresh_every: int = knob(0, ge=0)
    """Every this many steps (on e_n update steps), redraw ``refresh_share`` of the pool, oldest first; 0: never."""
    refresh_share: float = knob(0.25, gt=0.0, le=1.0)
    """Share of the pool one refresh redraws."""
    steps: int = knob(25, ge=1)
    """DDIM steps that draw each sample from pure noise (two prior calls per sample and step)."""
    guidance_scale: float = knob(7.5, ge=0.0)
    """CFG scale, against the empty prompt, the samples are drawn at."""
    beta: float = knob(3000.0, gt=0.0)
    """beta of the implicit rewards, on per-pixel mean squared errors (Diffusion-DPO's scale)."""
    t_range: tuple[float, float] = (0.02, 0.98)
    """Timesteps, as fractions of T, at which the compared samples are noised."""
    draw_batch: int = knob(16, ge=1)
    """Entries per batched prior call while drawing (x copies x views rows: memory)."""

    def __post_init__(self) -> None:
        if not 0 <= self.t_range[0] <= self.t_range[1] <= 1:
            raise ValueError("t_range: needs 0 <= low <= high <= 1")


@dataclasses.dataclass(frozen=True)
class RewardEstimateConfig:
    """How the reward scores the render's one-step estimate x0(x_t, eps_T) (``neg_loss`` reward and pairwise, and
    reward-based scaling)."""

    guidance_scale: Schedule | None = knob(None, ge=0.0)
    """CFG scale of the teacher whose estimate is scored; null: the teacher's guidance_scale. A large scale
    saturates the decoded x0, and clamped pixels pass no gradient."""
    guidance_rescale: float | None = knob(None, ge=0.0, le=1.0)
    """CFG rescale phi of that teacher; null: guidance_rescale."""
    t_max: float = knob(0.5, ge=0.0, le=1.0)
    """Only timesteps <= t_max * T train e_n (x0 is too blurry for the reward above)."""
    decode_size: int | None = knob(None, ge=1, le=4096)
    """Resize x0's latents to this side before decoding them for the reward (a cheaper VAE decode); null: full
    size."""


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    """Reward-based scaling (form p2): ``rho_v = clamp(1 + kappa * (mu_R - R_v) / std_R)`` per object."""

    kappa: float = knob(0.5, ge=0.0)
    """kappa."""
    range: tuple[float, float] = (0.0, 2.0)
    """Clamp of rho."""
    momentum: float = knob(0.99, ge=0.0, lt=1.0)
    """EMA momentum of the running reward mean and variance (exact pooled moments until 1 / (1 - momentum)
    samples)."""
    warmup: int = knob(16, ge=0)
    """Rewards to collect before rho departs from 1."""

    def __post_init__(self) -> None:
        if self.range[0] > self.range[1]:
            raise ValueError("range: low end above high end")


_UNITS = "now in units of the prompt embedding's RMS: docs/method.md"
_HISTORY = "measured in docs/benchmarks_history.md"


OLD_KEYS = RetiredKeys(
    renamed={
        "neg_init": "negative.init",
        "neg_lr": f"negative.lr; {_UNITS}",
        "neg_betas": "negative.betas",
        "neg_eps": "negative.eps",
        "neg_every": "negative.every",
        "update_start": "negative.start",
        "update_stop": "negative.stop",
        "anchor_decay": f"negative.anchor_decay; {_UNITS}",
        "neg_loss_scaling": "negative.loss_scaling",
        **{f"bank_{k}": f"pool.{k}" for k in ("copies", "steps", "guidance_scale", "beta", "t_range")},
        "reward_t_max": "reward_estimate.t_max",
        "reward_guidance_scale": "reward_estimate.guidance_scale",
        "reward_guidance_rescale": "reward_estimate.guidance_rescale",
        "reward_decode_size": "reward_estimate.decode_size",
        **{f"scaling_{k}": f"reward_scaling.{k}" for k in ("kappa", "range", "momentum", "warmup")},
    },
    retired={
        "anchor_weight": "the penalty anchor; {prefix}negative.anchor_decay (the decoupled anchor) keeps the prompt "
        f"under any reward's scale ({_HISTORY})",
        **{
            k: f"the prompt guard, which no recipe used ({_HISTORY}, commit be17ebf)"
            for k in ("prompt_guard", "prompt_guard_keep")
        },  # fmt: skip
        **{
            k: f"the teacher's trust region, which no recipe used ({_HISTORY}, commit be17ebf)"
            for k in ("teacher_trust", "teacher_trust_radius", "teacher_trust_momentum")
        },  # fmt: skip
        "reward_gate": "only the hard gate at {prefix}reward_estimate.t_max remains (no recipe used alpha_bar)",
        "reward_weight": "scale the 3D loss with {prefix}loss_scale, or e_n's steps with {prefix}negative.lr",
        **{
            k: "dynamic loss scaling keeps fixed settings (2^16 at start, x2 after 100 clean updates, at most 2^24); "
            "{prefix}negative.loss_scaling turns it off"
            for k in ("neg_loss_scale_init", "neg_loss_scale_interval", "neg_loss_scale_max")
        },  # fmt: skip
    },
    values={
        "neg_loss": {"bank": "pool (the replay pool: pool.* sets it)"},
        "reward_scaling": {True: "{} (the defaults; reward_scaling.* sets them)", False: "null"},
    },
)
"""The flat config's keys before the pool (e734b2b)."""


@retired_keys(OLD_KEYS)
@dataclasses.dataclass(frozen=True)
class PSDConfig(NoiseConfig):
    """Config of PSD."""

    guidance_scale: Schedule = knob(Schedule(7.5), ge=0.0)
    """s, CFG scale of the teacher."""
    guidance_rescale: float = knob(0.0, ge=0.0, le=1.0)
    """CFG rescale phi of the teacher (Lin et al. 2024), relative to eps_y's std; 0 = plain CFG."""
    guidance_rescale_in: RescaleIn = "native"
    """Where rescale matches standard deviations: native (the prior's raw prediction) or x0 (MVDream's
    recon_std_rescale); pooled over each group of views of a multi-view prior."""
    loss_scale: float = knob(1.0, gt=0.0)
    """Multiplier of the 3D loss."""
    form: Literal["p1", "p2"] = "p1"
    """p1: the learnable negative is the CFG baseline; p2: a separate preference term on top of CFG."""
    preference_scale: Schedule = knob(Schedule(1.0), ge=0.0)
    """lambda_P, weight of the preference term (p2 only)."""
    neg_loss: Literal["pool", "reward", "pairwise"] = "pool"
    """How e_n learns: ranked pairs of the prior's own samples from the replay pool (pool), reward
    back-propagation through the render's estimate (reward, Variant A), or implicit rewards of two noisings of the
    render ranked by the reward (pairwise, Variant B). The variants are kept for ablation (docs/benchmarks.md)."""
    negative: NegativeConfig = NegativeConfig()
    """e_n, its optimizer and its anchor."""
    pool: PoolConfig = PoolConfig()
    """The replay pool (neg_loss pool)."""
    reward_estimate: RewardEstimateConfig = RewardEstimateConfig()
    """The reward's one-step estimate (neg_loss reward and pairwise, reward_scaling)."""
    pairwise_beta: float = knob(1.0, gt=0.0)
    """beta of the implicit reward (neg_loss pairwise)."""
    reward_scaling: ScalingConfig | None = None
    """Reward-based scaling of the preference term (form p2); null: off, {} for the defaults."""

    def __post_init__(self) -> None:
        if self.reward_scaling is not None and self.form != "p2":
            raise ValueError("reward_scaling scales p2's preference term: set form: p2 or reward_scaling: null")
        if self.neg_loss == "pool" and self.pool.refresh_every % self.negative.every:
            raise ValueError("pool.refresh_every must be a multiple of negative.every (refreshes happen on updates)")
