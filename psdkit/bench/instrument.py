"""Per-component timing of a training step, for ``psdkit bench speed``.

Forward: the components' entry points (render, encode, prior, decode, reward) are wrapped on their
instances and timed with a device synchronisation on both sides. Backward: each wrapped output passes
through an identity autograd node that records the time its gradient arrives; autograd runs nodes in
reverse creation order, so the time between two such arrivals is the backward of the component whose
output arrived first (the render's, the last to arrive, runs until the backward ends). Synchronising
makes these steps slower than plain ones, so the bench reports plain ms/step separately.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from psdkit.contracts import RenderOutput


def synchronize(device: torch.device) -> None:
    """Wait for ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Arrival(torch.autograd.Function):
    """Identity; records when the gradient of its output arrives."""

    @staticmethod
    def forward(ctx, x: Tensor, timer: ComponentTimer, name: str) -> Tensor:
        ctx.timer, ctx.name = timer, name
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        """Record the arrival, pass the gradient through."""
        ctx.timer.arrival(ctx.name)
        return grad, None, None


class ComponentTimer:
    """Accumulates forward and backward milliseconds per component over the steps it is ``active``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.active = False
        self.ms: dict[str, float] = defaultdict(float)
        self._arrivals: list[tuple[float, str]] = []
        self._restore: list[tuple[Any, str]] = []

    def now(self) -> float:
        """Seconds, after the device has finished its queued work."""
        synchronize(self.device)
        return time.perf_counter()

    def wrap(self, obj: Any, method: str, name: str | Callable[[], str]) -> None:
        """Time ``obj.method`` under ``name`` (a string, or a function giving it at call time)."""
        inner = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return inner(*args, **kwargs)
            label = name() if callable(name) else name
            t0 = self.now()
            out = inner(*args, **kwargs)
            self.ms[f"{label} (forward)"] += (self.now() - t0) * 1000
            return self._mark(out, label)

        setattr(obj, method, timed)
        self._restore.append((obj, method))

    def _mark(self, out: Any, label: str) -> Any:
        if isinstance(out, Tensor) and out.requires_grad:
            return _Arrival.apply(out, self, label)
        if isinstance(out, RenderOutput) and out.rgb.requires_grad:
            out.rgb = _Arrival.apply(out.rgb, self, label)
        return out

    def arrival(self, name: str) -> None:
        """Called from the backward: the gradient of ``name``'s output is ready."""
        self._arrivals.append((self.now(), name))

    def begin_backward(self) -> None:
        """The backward pass starts now."""
        self._arrivals = []
        self._backward_start = self.now()

    def end_backward(self) -> None:
        """The backward pass has ended: split its time at the recorded arrivals."""
        if not self.active:
            return
        end = self.now()
        label, t_prev = "loss and strategy arithmetic", self._backward_start
        for t, name in sorted(self._arrivals):
            self.ms[f"{label} (backward)"] += (t - t_prev) * 1000
            label, t_prev = name, t
        self.ms[f"{label} (backward)"] += (end - t_prev) * 1000

    def add(self, key: str, ms: float) -> None:
        """Add ``ms`` to ``key`` when active."""
        if self.active:
            self.ms[key] += ms

    def unwrap(self) -> None:
        """Remove every wrapper."""
        for obj, method in reversed(self._restore):
            delattr(obj, method)
        self._restore = []
