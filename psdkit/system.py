"""The LightningModule: wires built components; owns the step order, losses, logging and optimizers.

Trainable state (representation, renderer buffers, the strategy's learnable parameters) are
submodules: checkpointed, optimized and synchronized under DDP. The frozen prior and rewards live in
a plain :class:`~psdkit.contracts.GuidanceContext` and are never parameters of this module.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from psdkit.config.recipe_schema import RecipeSchema
from psdkit.contracts import Cameras, Components, GuidanceInput, RenderOutput
from psdkit.ops.seeding import step_generator
from psdkit.optim import build_optimizer, reset_optimizer_state
from psdkit.run.build import view_label_ids


class StepDataset(Dataset):
    """Step indices 0..n-1. Batches carry no data: each step draws from its own generator."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class PSDSystem(L.LightningModule):
    """Score distillation of a 3D representation from a frozen 2D prior.

    Args:
        components: built components (see :func:`psdkit.run.build.build_components`).
        schema: the validated recipe.
    """

    def __init__(self, components: Components, schema: RecipeSchema) -> None:
        super().__init__()
        self.representation = components.representation
        self.renderer = components.renderer
        self.background = components.background
        self.guidance = components.guidance
        self.components = components  # plain attribute: frozen models are reached through it
        self.schema = schema
        self.bad_steps = 0
        """Consecutive steps skipped for non-finite gradients."""
        self.skipped_steps = 0
        """All steps skipped for non-finite gradients."""
        self.diverged = False

    # ---- wiring -------------------------------------------------------------------------------
    def move_frozen(self, device: torch.device) -> None:
        """Put prior, rewards and text embeddings on ``device``."""
        comp = self.components
        for model in (comp.prior, comp.reward, *comp.eval_rewards.values()):
            if model is not None:
                model.to(device)
        comp.cond = comp.cond.to(device)
        self.guidance.ctx.cond = comp.cond

    def on_fit_start(self) -> None:
        """Once Lightning has placed this module on its device, put the frozen models there too."""
        self.move_frozen(self.device)

    def on_train_start(self) -> None:
        """The strategy's one-time work (PSD's replay pool), after a resumed checkpoint has been loaded."""
        self.guidance.prepare(progress=self.schema.trainer.progress)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(StepDataset(self.schema.trainer.max_steps), batch_size=None, shuffle=False)

    def configure_optimizers(self) -> Any:  # Lightning's dict form: optimizer + step-wise scheduler
        owned = {"representation": self.representation.param_groups(), "guidance": self.guidance.param_groups()}
        return build_optimizer(owned, self.schema.optim)

    # ---- the step -------------------------------------------------------------------------------
    def view_ids(self, cameras: Cameras) -> list[int]:
        """Index into the conditioning's view labels of each camera (host-side cameras: no device read)."""
        return view_label_ids(cameras, self.components.cond.labels, self.schema.prompt)

    def render(self, cameras: Cameras, generator: torch.Generator | None = None) -> RenderOutput:
        """Render ``cameras`` (moved to this device) with the current representation."""
        return self.renderer(self.representation, cameras.to(self.device), self.background, generator)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        step, max_steps = self.global_step, self.schema.trainer.max_steps
        seed, rank, world = self.schema.seed, self.global_rank, self.trainer.world_size
        self.representation.set_progress(step, max_steps)
        resets = self.representation.restructure(step, step_generator(seed, 0, step, "structure"))
        if resets:
            opt = self.optimizers()
            assert not isinstance(opt, list), "psdkit builds one optimizer"
            reset_optimizer_state(opt.optimizer, resets)
        self.renderer.refresh(self.representation, step)
        # Cameras and guidance noise are drawn for the global batch (same on every rank) and sliced,
        # so results do not depend on how the batch is split; render jitter is per rank.
        all_cams = self.components.camera.sample(step, step_generator(seed, 0, step, "camera"), world)
        per_rank = len(all_cams) // world
        host_cams = all_cams.split(per_rank)[rank]
        ids = self.view_ids(host_cams)
        cams = host_cams.to(self.device)
        out = self.render(cams, step_generator(seed, rank, step, "render"))
        inp = GuidanceInput(
            out.rgb,
            cams,
            torch.tensor(ids, device=self.device),
            step,
            max_steps,
            step_generator(seed, 0, step, "guidance"),
            rank * per_rank,
            len(all_cams),
        )
        g = self.guidance(inp)
        terms = self.renderer.regularizers(out)
        loss = g.loss + sum(terms.values())
        # Keep every learnable parameter in the graph so DDP's reducer sees each one every step,
        # even on steps where the strategy leaves its own parameters untouched.
        loss = loss + sum(0.0 * p.sum() for p in self.guidance.parameters())
        self.log_step(loss, g.logs, terms, out)
        return loss

    def log_step(self, loss: Tensor, logs: dict[str, Tensor], terms: dict[str, Tensor], out: RenderOutput) -> None:
        """Log scalars at the trainer's global step (Lightning keeps every ``trainer.log_every``-th)."""
        scalars = {"train/loss": loss.detach(), **{f"guidance/{k}": v for k, v in logs.items()}}
        scalars.update({f"loss/{k}": v.detach() for k, v in terms.items()})
        scalars.update({f"render/{k}": torch.tensor(float(v)) for k, v in out.stats.items()})
        self.log_dict(
            {k: v.float() for k, v in scalars.items()},
            on_step=True,
            on_epoch=False,
            prog_bar=False,
            sync_dist=False,
            batch_size=1,
        )
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=1, logger=False)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.representation.after_backward()
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.schema.trainer.skip_nonfinite and not self.grads_finite(params):
            self.skip_step(params)
            return
        self.bad_steps = 0
        clip = self.schema.optim.grad_clip
        if clip is not None:
            clip_per_group(optimizer, clip)

    @staticmethod
    def grads_finite(params: list[torch.nn.Parameter]) -> bool:
        """Whether every gradient is finite (one host sync). Gradients are all-reduced first under
        DDP, so every rank reaches the same answer."""
        if not params:
            return True
        norms = torch._foreach_norm([p.grad for p in params if p.grad is not None])
        return bool(torch.isfinite(torch.stack(norms)).all())

    def skip_step(self, params: list[torch.nn.Parameter]) -> None:
        """Drop this step's gradients (the optimizer then leaves every parameter alone)."""
        for p in params:
            p.grad = None
        self.bad_steps += 1
        self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, batch_size=1)
        if self.bad_steps >= self.schema.trainer.max_nonfinite_steps:
            self.diverged = True
            self.trainer.should_stop = True

    # ---- evaluation helpers ----------------------------------------------------------------------
    @torch.no_grad()
    def render_views(self, n: int, size: int) -> Tensor:
        """[n, 3, size, size] evaluation renders on the camera sampler's orbit."""
        cams = self.components.camera.orbit(n, size, size)
        chunks = [self.render(cams_i).rgb for cams_i in cams.split(8)]
        return torch.cat(chunks).clamp(0, 1)


def clip_per_group(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Clip each parameter group's gradients to norm ``max_norm`` on its own (the 3D field's gradient must not
    shrink the negative embedding's, nor the other way round)."""
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, max_norm)


def grid_image(images: Tensor, ncol: int | None = None) -> Tensor:
    """[3, H * rows, W * cols] tile of ``images`` [N, 3, H, W]."""
    n, c, h, w = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    rows = math.ceil(n / ncol)
    canvas = torch.ones(c, rows * h, ncol * w, dtype=images.dtype)
    for i, img in enumerate(images.cpu()):
        r, col = divmod(i, ncol)
        canvas[:, r * h : (r + 1) * h, col * w : (col + 1) * w] = img
    return canvas
