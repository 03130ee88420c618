"""The Triton hash-grid kernel (forward and backward) against the torch reference, under Triton's interpreter.

The interpreter runs the kernel on CPU tensors (``TRITON_INTERPRET=1``, set before triton is imported: the
test runs in a subprocess). On a GPU the same kernel is compiled; ``psdkit bench speed`` times it there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton", reason="triton is part of the dev extra: pip install -e '.[dev]'")

SCRIPT = textwrap.dedent("""
    import torch
    from psdkit.ops.hashgrid import hash_encode_reference, level_resolutions
    from psdkit.ops.hashgrid_triton import hash_encode_triton
    from psdkit_plugins.representations.hashgrid_nerf import HashGridNeRF

    gen = torch.Generator().manual_seed(0)
    for levels, log2_t, feat, n in ((4, 10, 2, 300), (3, 8, 4, 70), (2, 12, 1, 129)):
        res = level_resolutions(levels, 4, 96)
        table = torch.randn(levels, 2**log2_t, feat, generator=gen).requires_grad_()
        x = torch.rand(n, 3, generator=gen) * (1 - 1e-6)
        g = torch.randn(n, levels * feat, generator=gen)
        ref = hash_encode_reference(x, table, res)
        out = hash_encode_triton(x, table, res, block=64)
        (g_ref,) = torch.autograd.grad(ref, table, g)
        (g_out,) = torch.autograd.grad(out, table, g)
        dense = [(r + 1) ** 3 <= 2**log2_t for r in res]
        assert any(dense) and not all(dense), dense  # both index paths are exercised
        assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
        assert torch.allclose(g_out, g_ref, atol=1e-5), (g_out - g_ref).abs().max()
        assert g_out.abs().sum() > 0
    field = HashGridNeRF(HashGridNeRF.Config(backend="triton", levels=3, log2_table_size=8, hidden=8))
    pts = torch.rand(40, 3, generator=gen) * 2 - 1
    assert torch.allclose(field.encode(pts), hash_encode_reference((pts + 1) * 0.5, field.table,
                                                                   field.resolutions), atol=1e-5)
    print("TRITON-OK")
""")


def test_triton_kernel_matches_reference_in_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TRITON-OK" in proc.stdout


def test_triton_backend_fails_clearly_on_cpu_without_interpreter(monkeypatch):
    import torch
    from psdkit_plugins.representations.hashgrid_nerf import HashGridNeRF

    from psdkit.errors import PluginError

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    field = HashGridNeRF(HashGridNeRF.Config(backend="triton", levels=2, log2_table_size=8, hidden=8))
    with pytest.raises(PluginError, match=r"backend: 'triton': .*needs a CUDA device.*use backend: torch"):
        field.encode(torch.zeros(4, 3))


def test_triton_backend_needs_power_of_two_features():
    from pathlib import Path

    from psdkit.config.recipe import load_recipe
    from psdkit.errors import RecipeError

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    with pytest.raises(RecipeError, match=r"representation\.config.*power-of-two features_per_level"):
        load_recipe(recipe, ["representation.config.backend=triton", "representation.config.features_per_level=3"])
