"""A guard that turns device-to-host reads into errors, to check a training step never waits on the device.

On a GPU, ``.item()``, ``bool(tensor)``, ``.tolist()``, ``.cpu()`` and friends block the host until the
device catches up, which stalls the launch queue. CPU tests cannot see a stall, so this guard makes every such
read raise instead; a step that runs under it would run on a GPU without synchronising (CUDA's own
``torch.cuda.set_sync_debug_mode("error")`` is the on-device equivalent).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

READS = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def forbid_host_sync() -> Iterator[None]:
    """Within the block, reading a tensor's value back to Python raises ``RuntimeError``."""
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def refuse(name: str):
        def method(self, *args, **kwargs):
            raise RuntimeError(f"host synchronisation: Tensor.{name} inside a step that must not wait on the device")

        return method

    try:
        for name in READS:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)
