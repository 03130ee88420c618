"""One AdamW and one step-wise learning-rate schedule over the parameter groups components declare."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from psdkit.config.recipe_schema import OptimConfig
from psdkit.contracts import ParamGroup


def torch_groups(owned: dict[str, list[ParamGroup]], optim: OptimConfig) -> list[dict[str, Any]]:
    """torch optimizer groups, named ``<owner>.<group>``, with each group's settings (the recipe's ``optim``
    where a group leaves them None). Their ``lr`` is 1: the scheduler multiplies it by the group's schedule."""
    out = []
    for owner, groups in owned.items():
        for g in groups:
            out.append(
                {
                    "name": f"{owner}.{g.name}",
                    "params": g.params,
                    "lr": 1.0,
                    "betas": optim.betas if g.betas is None else g.betas,
                    "eps": optim.eps if g.eps is None else g.eps,
                    "weight_decay": optim.weight_decay if g.weight_decay is None else g.weight_decay,
                }
            )
    return out


def build_optimizer(owned: dict[str, list[ParamGroup]], optim: OptimConfig) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: AdamW over every group and a ``LambdaLR`` stepped after
    every optimizer step, whose factor for a group is its ``lr(step)`` (so group ``lr`` = ``lr(step)``: the
    schedule lives in the checkpoint and resumes with it)."""
    groups = torch_groups(owned, optim)
    fused = optim.fused and all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    opt = torch.optim.AdamW(groups, betas=optim.betas, eps=optim.eps, fused=fused or None)
    schedules: list[Callable[[int], float]] = [g.lr for gs in owned.values() for g in gs]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedules)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}


def reset_optimizer_state(
    optimizer: torch.optim.Optimizer, resets: list[tuple[torch.nn.Parameter, torch.Tensor]]
) -> None:
    """Restart Adam's moments of the entries ``idx`` (along dim 0) of each parameter in ``resets``: entries a
    representation has just created or moved (densified Gaussians) must not inherit another entry's momentum."""
    for param, idx in resets:
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][idx] = 0
