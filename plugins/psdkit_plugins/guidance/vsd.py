"""Variational Score Distillation (ProlificDreamer, https://arxiv.org/abs/2305.16213).

``grad_z = w(t) (eps_cfg - sg(eps_phi(x_t, t, c)))`` where ``eps_phi`` estimates the score of the current
renders, trained alongside with the diffusion loss on detached renders:
``|eps_phi(alpha' sg(z) + sigma' eps', t', c) - eps'|^2``. Two score models (``score_model``):

- ``lora`` (ProlificDreamer's): a LoRA of the prior's own denoiser, enabled only while computing
  eps_phi, camera-conditioned through one extra text token. Needs a prior that declares
  ``TrainableAdapter`` (Stable Diffusion).
- ``adapter`` (any prior, the analytic one included): ``eps_prior(x_t; e_y) + delta_phi(x_t, t, c)``
  with a small camera-conditioned conv net whose last layer starts at zero.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from psdkit.config.schema import Schedule, knob
from psdkit.contracts import Cameras, GuidanceContext, GuidanceInput, GuidanceOutput, GuidanceStrategy, ParamGroup
from psdkit.contracts.capabilities import TrainableAdapter
from psdkit.errors import PluginError
from psdkit.ops.distill import (
    broadcast,
    draw_noise,
    forward_noise,
    predict_many,
    residual_loss,
    timestep_weight,
)
from psdkit_plugins.guidance._cfg import CFGConfig, cfg_embeddings, cfg_guided


@dataclasses.dataclass(frozen=True)
class VSDConfig(CFGConfig):
    """Config of VSD."""

    score_model: Literal["adapter", "lora"] = "adapter"
    """eps_phi: a conv adapter on top of the prior (any prior) or a LoRA of the prior's UNet (diffusers)."""
    lora_rank: int = knob(4, ge=1, le=256)
    """Rank of the LoRA (score_model: lora)."""
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    """UNet modules that get LoRA layers (score_model: lora)."""
    adapter_channels: int = knob(32, ge=4, le=512)
    """Hidden channels of the adapter delta_phi."""
    adapter_lr: Schedule = knob(Schedule(1e-3), ge=0.0)
    """Learning rate of the score model (ProlificDreamer: 1e-4 for the LoRA)."""
    adapter_betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas of the score model (the values docs/benchmarks.md measured with)."""
    adapter_eps: float = knob(1e-15, gt=0.0)
    """Adam epsilon of the score model (the measured value; ProlificDreamer's LoRA uses 1e-8)."""
    camera_condition: bool = True
    """Condition the score model on the camera pose."""
    adapter_weight: float = knob(1.0, gt=0.0)
    """Weight of the score model's diffusion loss."""
    score_t_range: tuple[float, float] = (0.02, 0.98)
    """Timesteps (fractions of T) at which the score model's diffusion loss is sampled."""

    def __post_init__(self) -> None:
        lo, hi = self.score_t_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"score_t_range must satisfy 0 <= low <= high <= 1, got {self.score_t_range}")


class Adapter(nn.Module):
    """delta_phi(x_t, t, camera): [B, C, h, w] -> [B, C, h, w], zero at initialization."""

    def __init__(self, channels: int, hidden: int, camera: bool) -> None:
        super().__init__()
        self.camera = camera
        extra = 2 + (12 if camera else 0)  # sin/cos of t, flattened 3x4 pose
        first, middle = nn.Conv2d(channels + extra, hidden, 3, padding=1), nn.Conv2d(hidden, hidden, 3, padding=1)
        last = nn.Conv2d(hidden, channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]  # Conv2d(bias=True) has one
        self.net = nn.Sequential(first, nn.SiLU(), middle, nn.SiLU(), last)

    def forward(self, x_t: Tensor, t_frac: Tensor, cameras: Cameras) -> Tensor:
        b, _, h, w = x_t.shape
        feats = [torch.sin(math.pi * t_frac), torch.cos(math.pi * t_frac)]
        cond = torch.stack(feats, -1)
        if self.camera:
            cond = torch.cat([cond, cameras.c2w[:, :3, :].reshape(b, 12).to(x_t)], -1)
        return self.net(torch.cat([x_t, cond.to(x_t)[:, :, None, None].expand(-1, -1, h, w)], 1))


class LoraScore(nn.Module):
    """eps_phi from a LoRA of the prior's denoiser, enabled only inside :meth:`forward`.

    The prior must declare :class:`~psdkit.contracts.capabilities.TrainableAdapter` (Stable Diffusion does).
    The LoRA parameters are registered here, so they belong to the strategy: checkpointed, optimized and
    synchronized under DDP, while the prior's own weights stay frozen and unsaved.
    """

    ADAPTER = "psdkit_vsd"

    def __init__(self, prior: nn.Module, text_dim: int, rank: int, targets: tuple[str, ...], camera: bool) -> None:
        super().__init__()
        if not isinstance(prior, TrainableAdapter):
            raise PluginError(
                f"guidance.config.score_model: lora needs a prior that can carry a trainable adapter "
                f"(TrainableAdapter), not {type(prior).__name__}; use score_model: adapter"
            )
        self.lora = nn.ParameterList(prior.add_adapter(self.ADAPTER, rank, targets))
        self._prior: list[Any] = [prior]  # a list, so the frozen prior does not become a submodule
        self.camera = nn.Linear(12, text_dim) if camera else None
        if self.camera is not None:
            nn.init.zeros_(self.camera.weight)
            nn.init.zeros_(self.camera.bias)

    def forward(self, x_t: Tensor, t: Tensor, e_y: Tensor, cameras: Cameras) -> Tensor:
        """eps_phi [B, C, h, w] with the LoRA on (and the camera as one extra text token)."""
        prior = self._prior[0]
        emb = e_y
        if self.camera is not None:
            pose = cameras.c2w[:, :3, :].reshape(len(cameras), 12).to(e_y)
            emb = torch.cat([e_y, self.camera(pose)[:, None]], 1)
        with prior.adapter_enabled(self.ADAPTER):
            return prior.predict_noise(x_t, t, emb, cameras)


class AdapterScore(nn.Module):
    """eps_phi = eps_prior + delta_phi (works with any prior)."""

    def __init__(self, channels: int, hidden: int, camera: bool) -> None:
        super().__init__()
        self.adapter = Adapter(channels, hidden, camera)

    def forward(self, x_t: Tensor, t_frac: Tensor, cameras: Cameras, eps_prior: Tensor) -> Tensor:
        return eps_prior + self.adapter(x_t, t_frac, cameras)


class VSD(GuidanceStrategy):
    """Variational score distillation with a trainable score adapter."""

    Config = VSDConfig

    def setup(self, ctx: GuidanceContext) -> None:
        super().setup(ctx)
        c = self.config
        self.score: LoraScore | AdapterScore
        if c.score_model == "lora":
            self.score = LoraScore(
                ctx.prior, ctx.cond.prompt_emb.shape[-1], c.lora_rank, c.lora_targets, c.camera_condition
            )
        else:
            channels = ctx.prior.encode_images(torch.zeros(1, 3, 8, 8)).shape[1]
            self.score = AdapterScore(channels, c.adapter_channels, c.camera_condition)

    def param_groups(self) -> list[ParamGroup]:
        """The score model (LoRA or adapter), with its own Adam settings and learning-rate schedule."""
        c = self.config
        return [
            ParamGroup(
                "score_model",
                list(self.score.parameters()),
                c.adapter_lr,
                c.adapter_betas,
                c.adapter_eps,
                weight_decay=0.0,
            )
        ]

    def eps_phi(
        self, x_t: Tensor, t: Tensor, e_y: Tensor, cameras: Cameras, eps_prior: Tensor | None = None
    ) -> Tensor:
        """The particle score estimate; ``eps_prior`` reuses a prediction already made."""
        prior = self.ctx.prior
        if isinstance(self.score, LoraScore):
            return self.score(x_t, t, e_y, cameras)
        if eps_prior is None:
            with torch.no_grad():
                eps_prior = prior.predict_noise(x_t, t, e_y, cameras)
        return self.score(x_t, t.float() / (prior.num_train_timesteps - 1), cameras, eps_prior)

    def forward(self, inp: GuidanceInput) -> GuidanceOutput:
        c, prior, cond = self.config, self.ctx.prior, self.ctx.cond
        n = forward_noise(prior, inp, c.t_min(inp.step), c.t_max(inp.step))
        e_y, e_b = cfg_embeddings(cond, inp.view_index, c.use_negative_prompt)
        with torch.no_grad():
            eps_y, eps_b = predict_many(prior, n.x_t, n.t, [e_y, e_b], inp.cameras, c.batch_conditionings)
            eps_cfg = cfg_guided(c, n, eps_b, eps_y, inp.step)
            phi = self.eps_phi(n.x_t, n.t, e_y, inp.cameras, eps_y)
            grad = broadcast(timestep_weight(c.weighting, n.alpha, n.sigma), n.z) * (eps_cfg - phi)
        loss = residual_loss(n.z, grad)
        # the adapter's own diffusion loss on the detached renders, at fresh (t', eps')
        lo, hi = c.score_t_range
        t2, eps2 = draw_noise(
            inp.generator, tuple(n.z.shape), lo, hi, prior.num_train_timesteps, inp.batch_offset, inp.global_batch
        )
        t2, eps2 = t2.to(n.z.device), eps2.to(n.z)
        a2, s2 = prior.alpha_sigma(t2)
        x2 = broadcast(a2, n.z) * n.z.detach() + broadcast(s2, n.z) * eps2
        adapter_loss = ((self.eps_phi(x2, t2, e_y, inp.cameras) - eps2) ** 2).mean()
        logs = {"grad_norm": grad.flatten(1).norm(dim=1).mean(), "adapter_loss": adapter_loss.detach()}
        return GuidanceOutput(loss=loss + c.adapter_weight * adapter_loss, logs=logs)
