"""PSD's default e_n learner (``neg_loss: pool``): ranked pairs of the prior's own answers to the prompt, drawn once
into a replay pool before training (``psdkit.ops.pool``), compared with fresh timesteps and noise on every update."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

from psdkit.contracts import GuidanceContext
from psdkit.ops.pool import PoolSpec, ReplayPool, pool_loss, prior_device
from psdkit_plugins.guidance._psd_config import PSDConfig
from psdkit_plugins.guidance._psd_step import NegLearner, Step


def _say(text: str) -> None:
    """One line on stderr, from rank 0 only."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        print(f"psdkit: {text}", file=sys.stderr, flush=True)


class PoolLearner(NegLearner):
    """The replay pool and its Bradley-Terry loss; the pool is this module's extra state (checkpointed)."""

    needs_step_grad = False

    def __init__(self, config: PSDConfig, ctx: GuidanceContext) -> None:
        super().__init__(config, ctx)
        p = config.pool
        spec = PoolSpec(p.size, p.copies, p.steps, p.guidance_scale, p.draw_batch)
        self.pool = ReplayPool(spec, len(ctx.cond.labels), ctx.prior.views_per_group())
        self.draw_seconds: float | None = None
        """Seconds the first draw took (None when the pool came from a checkpoint)."""
        self._ranked = False

    def prepare(self, progress: bool) -> None:
        """Draw the pool unless a checkpoint brought it (then move that to the prior's device)."""
        if self.pool.ready:
            self.pool.to(prior_device(self.ctx.prior))
            return
        c, ctx, start = self.config.pool, self.ctx, time.perf_counter()
        with tqdm(total=self.pool.entries, desc="replay pool", unit="camera", disable=not progress,
                  file=sys.stderr, leave=False) as bar:  # fmt: skip
            self.pool.draw(list(range(self.pool.entries)), ctx.prior, ctx.require_reward(), ctx.cond,
                           ctx.require_views(), bar.update)  # fmt: skip
        self.draw_seconds = time.perf_counter() - start
        views = f" x {self.pool.group} views" if self.pool.group > 1 else ""
        shape = f"{self.pool.labels} labels x {c.size} cameras x {c.copies}"
        _say(f"replay pool: {self.pool.entries * c.copies} samples{views} of {ctx.cond.base_prompt!r} ({shape}, "
             f"{c.steps} DDIM steps at CFG {c.guidance_scale:g}) drawn in {self.draw_seconds:.1f} s")  # fmt: skip
        self._check_ranked()

    def _check_ranked(self) -> None:
        """Whether any pair of the pool is ranked; says so once when none is (then no update trains e_n)."""
        was, self._ranked = self._ranked, self.pool.ranked()
        if not self._ranked and (was or self.draw_seconds is not None):
            _say("replay pool: every reward ties (or is not finite): no pair ranks two answers, e_n is not updated")

    def active(self) -> bool:
        """Whether some pair of the pool ranks two answers (drawing the pool first if nothing did)."""
        if not self.pool.ready:
            self.prepare(progress=False)
        return self._ranked

    def maintain(self, step: int, updating_window: bool) -> None:
        """Redraw ``refresh_share`` of the pool at every ``refresh_every``-th step inside e_n's update window."""
        c, ctx = self.config.pool, self.ctx
        if c.refresh_every == 0 or step == 0 or step % c.refresh_every or not updating_window:
            return
        if not self.pool.ready:
            self.prepare(progress=False)
        slots = self.pool.refresh_slots(c.refresh_share)
        self.pool.draw(slots, ctx.prior, ctx.require_reward(), ctx.cond, ctx.require_views())
        self._check_ranked()

    def loss(self, step: Step, e_n: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The Bradley-Terry loss of ``pool.batch`` entries, averaged over their ranked pairs.

        Every rank draws and compares the same entries from the step's generator, so its loss and e_n's gradient are
        the single-process ones, bit for bit, and DDP's average of identical gradients changes nothing."""
        c, gen = self.config.pool, step.inp.generator
        slots = self.pool.pick(gen, c.batch)
        loss, weight, logs = pool_loss(self.ctx.prior, self.pool, slots, self.ctx.cond, e_n, c.beta, c.t_range, gen,
                                       self.config.batch_conditionings)  # fmt: skip
        return (loss * weight).sum() / weight.sum().clamp_min(1.0), logs

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        """The pool's tensors under ``<prefix>pool.`` (a resume continues with the same pool). They are not buffers:
        DDP would broadcast them on every step, and every rank draws the same pool anyway."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination.update({f"{prefix}pool.{k}": v for k, v in self.pool.state().items()})

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Restore the pool from a checkpoint that has it."""
        mine = [k for k in state_dict if k.startswith(f"{prefix}pool.")]
        state = {k[len(prefix) + 5 :]: state_dict.pop(k) for k in mine}
        if state:
            self.pool.load(state)
            self._ranked = self.pool.ranked()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
