"""``psdkit bench hashgrid``: forward + backward of the hash encoding, every implementation in one run.

Implementations: ``loop`` (:func:`~psdkit.ops.hashgrid.hash_encode_reference`, the straightforward per-level
and per-corner loop), ``loop-fast`` (the fast path's arithmetic, called once per level: what vectorizing
over levels alone buys), ``torch`` (:func:`~psdkit.ops.hashgrid.hash_encode`), and on CUDA ``triton`` and
``tcnn`` when available. Each is checked against ``torch`` before it is timed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from psdkit.bench.instrument import synchronize
from psdkit.ops.hashgrid import hash_encode, hash_encode_reference, level_resolutions

Encode = Callable[[Tensor, Tensor, list[int]], Tensor]


def _loop_fast(x: Tensor, table: Tensor, res: list[int]) -> Tensor:
    return torch.cat([hash_encode(x, table[i : i + 1], [r]) for i, r in enumerate(res)], -1)


def implementations(device: torch.device) -> dict[str, Encode]:
    """The encodings that can run on ``device``."""
    impls: dict[str, Encode] = {"loop": hash_encode_reference, "loop-fast": _loop_fast, "torch": hash_encode}
    from psdkit.ops.hashgrid_triton import hash_encode_triton, triton_status

    if device.type == "cuda" and triton_status(device) is None:
        impls["triton"] = hash_encode_triton
    return impls


def _time(fn: Encode, x: Tensor, table: Tensor, res: list[int], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats + 1):
        synchronize(x.device)
        t0 = time.perf_counter()
        fn(x, table, res).square().sum().backward()
        synchronize(x.device)
        out.append((time.perf_counter() - t0) * 1000)
        table.grad = None
    return out[1:]  # the first call warms up (and compiles the Triton kernel)


def bench_hashgrid(
    points: int,
    levels: int,
    log2_table: int,
    features: int,
    repeats: int,
    device: str = "cpu",
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Median ms of forward + backward per implementation, and speed-ups against ``loop``."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    res = level_resolutions(levels, 16, 2048 if levels >= 16 else 512)
    x = torch.rand(points, 3, generator=gen).to(dev) * (1 - 1e-6)
    table = (torch.randn(levels, 2**log2_table, features, generator=gen) * 1e-2).to(dev).requires_grad_()
    ref = hash_encode(x, table, res).detach()
    rows: dict[str, Any] = {}
    for name, fn in implementations(dev).items():
        if only and name not in only:
            continue
        err = (fn(x, table, res).detach() - ref).abs().max().item()
        times = _time(fn, x, table, res, repeats)
        rows[name] = {"ms": statistics.median(times), "max_abs_diff_vs_torch": err}
    for row in rows.values():
        if "loop" in rows:
            row["speedup_vs_loop"] = rows["loop"]["ms"] / row["ms"]
    return {
        "points": points,
        "levels": levels,
        "log2_table": log2_table,
        "features": features,
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "resolutions": res,
        "results": rows,
    }


def format_hashgrid(r: dict[str, Any]) -> str:
    """Markdown table of :func:`bench_hashgrid`'s result."""
    lines = [
        f"{r['points']} points x {r['levels']} levels x 2^{r['log2_table']} x {r['features']} features, "
        f"forward + backward, {r['device']}, torch {r['torch']}",
        "",
        "| implementation | ms | speed-up vs loop | max abs diff vs torch |",
        "|---|---|---|---|",
    ]
    for name, row in r["results"].items():
        speed = f"{row['speedup_vs_loop']:.1f}x" if "speedup_vs_loop" in row else "-"
        lines.append(f"| {name} | {row['ms']:.1f} | {speed} | {row['max_abs_diff_vs_torch']:.1e} |")
    return "\n".join(lines)
