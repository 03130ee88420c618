"""``psdkit doctor``: versions, devices, fast paths and (for a recipe) weights."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import importlib.util
import platform


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def fast_paths() -> list[tuple[str, bool, str]]:
    """(name, active, why) for each optional fast path."""
    import torch

    out = []
    cuda = torch.cuda.is_available()
    out.append(("cuda", cuda, f"{torch.cuda.device_count()} device(s)" if cuda else "no CUDA device visible"))
    try:
        importlib.import_module("tinycudann")
        out.append(("tinycudann", cuda, "installed" if cuda else "installed, but needs a CUDA device"))
    except ImportError as err:
        out.append(("tinycudann", False, f"not importable ({err.__class__.__name__}); the torch hash grid is used"))
    from psdkit.ops.hashgrid_triton import triton_status

    why = triton_status("cuda" if cuda else "cpu")
    out.append(("triton", why is None, f"hash-grid kernel: {why or 'available (representation backend triton/auto)'}"))
    if importlib.util.find_spec("gsplat") is None:
        out.append(
            ("gsplat", False, "not installed; renderer splat uses its torch rasterizer (pip install 'psdkit[gsplat]')")
        )
    else:
        out.append(
            ("gsplat", cuda, "installed (renderer splat, backend auto)" if cuda else "installed, but needs CUDA")
        )
    bf16 = cuda and torch.cuda.is_bf16_supported()
    out.append(("bf16", bf16, "supported" if bf16 else "no bf16-capable GPU"))
    return out


def doctor(args: argparse.Namespace) -> int:
    """Print the environment report; with a recipe, also what it needs."""
    import torch

    print(f"python {platform.python_version()} on {platform.platform()}")
    for dist in ("psdkit", "torch", "lightning", "diffusers", "transformers", "wandb", "tinycudann", "gsplat"):
        print(f"  {dist:<14} {_version(dist)}")
    print(f"torch threads: {torch.get_num_threads()}")
    print("fast paths:")
    for name, active, why in fast_paths():
        print(f"  {name:<12} {'on ' if active else 'off'}  {why}")
    from psdkit.cli.plugins_cmd import broken_plugins

    broken = broken_plugins()
    print(f"plugins: {'all import' if not broken else f'{len(broken)} BROKEN'}")
    for (kind, name), why in broken.items():
        print(f"  BROKEN {kind} {name}: {why}")
    if args.recipe:
        from psdkit.cli.weights import report_weights

        return max(report_weights(args.recipe), 1 if broken else 0)
    return 1 if broken else 0
