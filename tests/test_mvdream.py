"""The MVDream prior: its original checkpoint layout, the invariants that pin the multi-view UNet port, and its
camera convention, on tiny random weights (no reference package, no network)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="pip install 'psdkit[diffusers]' to test the MVDream prior")

from diffusers import UNet2DConditionModel  # noqa: E402
from psdkit_plugins.backbones.multiview_attention import enable_multiview  # noqa: E402
from psdkit_plugins.cameras.orbit import OrbitCameraConfig, OrbitCameraSampler  # noqa: E402
from psdkit_plugins.priors.mvdream import MVDreamPrior  # noqa: E402
from psdkit_plugins.priors.mvdream_camera import mvdream_camera  # noqa: E402
from psdkit_plugins.priors.mvdream_checkpoint import (  # noqa: E402
    MVDreamModules,
    convert,
    read_config,
    read_state,
    save_diffusers,
    unet_config,
    vae_config,
)
from psdkit_plugins.priors.mvdream_layout import text_to_original, unet_to_original, vae_to_original  # noqa: E402

from psdkit.config.schema import build_config  # noqa: E402
from psdkit.contracts import look_at_c2w  # noqa: E402
from psdkit.testing import conformance, tiny  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY: dict[str, Path] = {}


@pytest.fixture(scope="session", autouse=True)
def _tiny(tiny_weights):
    TINY.update(tiny_weights)


def mv_config(**kw):
    w = TINY["mv"]
    data = {
        "model": str(w),
        "original_config": str(w / "sd-v2-base.yaml"),
        "tokenizer": str(w),
        "resolution": 64,
        "text_cache": str(TINY["cache"]),
        **kw,
    }
    return build_config(MVDreamPrior.Config, data, "prior.config")


class TestMVDream(conformance.PriorConformance):
    plugin_cls = MVDreamPrior

    def tiny_config(self):
        return mv_config()


@pytest.fixture(scope="module")
def modules() -> tuple[MVDreamModules, dict, dict]:
    """(converted modules, original state, original config) of the tiny checkpoint."""
    state = read_state(TINY["mv"] / "sd-v2.1-base-4view.pt")
    config = read_config(str(TINY["mv"] / "sd-v2-base.yaml"))
    return convert(state, config), state, config


def test_original_layout_converts_exactly(modules):
    """Every tensor of the original-layout file lands in its diffusers slot: mapping the converted modules back
    to the original names reproduces the file, tensor for tensor (diffusers' converters wrote the forward way)."""
    mods, state, config = modules
    ucfg, vcfg = unet_config(config), vae_config(config)
    assert "model.diffusion_model.camera_embed.2.weight" in state
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].dim() == 4, "latent diffusion's 1x1 conv"
    assert "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight" in state, "the unread last block"
    back = unet_to_original(mods.unet.state_dict(), ucfg)
    back |= vae_to_original(mods.vae.state_dict(), len(vcfg["block_out_channels"]))
    back |= text_to_original(mods.text_encoder.state_dict(), torch.zeros(1), torch.zeros(1))
    for key, value in back.items():
        if key.endswith(("text_projection", "logit_scale")) or "position_ids" in key:
            continue
        assert torch.equal(value, state[key]), key
    unread = {k for k in state if k not in back}
    assert all(
        ".resblocks.2." in k or k.endswith(("text_projection", "logit_scale", "alphas_cumprod")) for k in unread
    )
    assert mods.text_encoder.config.num_hidden_layers == 2, "penultimate layer: all blocks but the last"


def _unet(mods: MVDreamModules) -> UNet2DConditionModel:
    enable_multiview(mods.unet, "eager")
    return mods.unet


def _inputs(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 4, 8, 8, generator=g),
        torch.randint(0, 1000, (n,), generator=g),
        torch.randn(n, 7, 64, generator=g),
        torch.randn(n, 16, generator=g),
    )


def _run(unet, x, t, emb, cam, views: int) -> torch.Tensor:
    with torch.no_grad():
        return unet(
            x, t, encoder_hidden_states=emb, class_labels=cam, cross_attention_kwargs={"num_views": views}
        ).sample


def test_one_view_with_a_zero_camera_embedding_is_the_plain_sd_unet(modules):
    mods, _, _ = modules
    unet = _unet(mods)
    cfg = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    plain = UNet2DConditionModel(**(cfg | {"class_embed_type": None, "projection_class_embeddings_input_dim": None}))
    missing = plain.load_state_dict({k: v for k, v in unet.state_dict().items() if "class_embedding" not in k})
    assert not missing.missing_keys and not missing.unexpected_keys
    x, t, emb, cam = _inputs(2)
    with torch.no_grad():
        ref = plain(x, t, encoder_hidden_states=emb).sample
    assert not torch.allclose(_run(unet, x, t, emb, cam, 1), ref, atol=1e-3), "the camera is conditioned on"
    lin = unet.class_embedding.linear_2
    saved = lin.weight.detach().clone(), lin.bias.detach().clone()
    try:
        with torch.no_grad():
            lin.weight.zero_(), lin.bias.zero_()
        torch.testing.assert_close(_run(unet, x, t, emb, cam, 1), ref, atol=1e-5, rtol=1e-4)
    finally:
        with torch.no_grad():
            lin.weight.copy_(saved[0]), lin.bias.copy_(saved[1])


def test_identical_views_attend_like_one_view(modules):
    unet = _unet(modules[0])
    x, t, emb, cam = _inputs(1)
    one = _run(unet, x, t, emb, cam, 1)
    four = _run(unet, x.repeat(4, 1, 1, 1), t.repeat(4), emb.repeat(4, 1, 1), cam.repeat(4, 1), 4)
    for i in range(4):
        torch.testing.assert_close(four[i : i + 1], one, atol=1e-5, rtol=1e-4)


def test_permuting_views_permutes_outputs_and_groups_stay_apart(modules):
    unet = _unet(modules[0])
    x, t, emb, cam = _inputs(8, seed=1)
    t = t[[0, 0, 0, 0, 4, 4, 4, 4]]  # a group shares its timestep
    out = _run(unet, x, t, emb, cam, 4)
    perm = torch.tensor([2, 0, 3, 1, 5, 7, 4, 6])
    torch.testing.assert_close(_run(unet, x[perm], t[perm], emb[perm], cam[perm], 4), out[perm], atol=1e-5, rtol=1e-4)
    moved = x.clone()
    moved[5] += 1.0
    again = _run(unet, moved, t, emb, cam, 4)
    torch.testing.assert_close(again[:4], out[:4], atol=1e-6, rtol=0)  # group 0 never sees group 1
    assert (again[4] - out[4]).abs().max() > 1e-4, "view 4 attends to view 5 of its group"
    alone = _run(unet, moved, t, emb, cam, 1)
    torch.testing.assert_close(alone[4], _run(unet, x, t, emb, cam, 1)[4], atol=1e-6, rtol=0)


def reference_camera(elevation: float, azimuth: float) -> np.ndarray:
    """MVDream's ``get_camera(blender_coord=True)`` for one view (``mvdream/camera_utils.py``), restated."""
    e, a = math.radians(elevation), math.radians(azimuth)
    pos = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    forward = -pos / np.linalg.norm(pos)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, up / np.linalg.norm(up), -forward]).T
    c2w[:3, 3] = pos
    flip_yz = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    return flip_yz @ c2w


def test_camera_matrices_match_mvdreams_convention_on_known_angles():
    for el, az, dist in ((0.0, 0.0, 1.0), (15.0, 90.0, 2.5), (30.0, 200.0, 3.0), (-10.0, 315.0, 1.7)):
        c2w = look_at_c2w(torch.tensor([el]), torch.tensor([az]), torch.tensor([dist]))
        ours = mvdream_camera(c2w).view(4, 4).double().numpy()
        np.testing.assert_allclose(ours, reference_camera(el, az), atol=1e-6)
        raw = mvdream_camera(c2w, "threestudio").view(4, 4)
        assert torch.allclose(raw[:3, :3], c2w[0, :3, :3], atol=1e-6) and torch.allclose(
            raw[:3, 3].norm(), torch.tensor(1.0)
        )
    sampler = OrbitCameraSampler(OrbitCameraConfig(batch_size=8, group_views=4, elevation_range=(0.0, 30.0)))
    cams = sampler.sample(0, torch.Generator().manual_seed(3))
    got = mvdream_camera(cams.c2w).view(-1, 4, 4).double().numpy()
    for i in range(8):
        np.testing.assert_allclose(
            got[i], reference_camera(float(cams.elevation[i]), float(cams.azimuth[i])), atol=1e-5
        )


def test_prior_groups_views_and_refuses_split_groups():
    prior = MVDreamPrior(mv_config())
    assert prior.views_per_group() == 4
    cams = tiny.tiny_cameras(6, 16)
    x = torch.randn(6, 4, 8, 8)
    emb = prior.encode_text(["a red sphere"]).expand(6, -1, -1)
    with pytest.raises(ValueError, match=r"not whole groups of prior.config.views=4.*group_views"):
        prior.predict_noise(x, torch.full((6,), 500), emb, cams)
    with pytest.raises(ValueError, match="needs them"):
        prior.predict_noise(x[:4], torch.full((4,), 500), emb[:4], None)


def test_diffusers_format_folder_predicts_what_the_original_does(tmp_path, modules):
    original = MVDreamPrior(mv_config())
    folder = save_diffusers(modules[0], original.tokenizer, tmp_path / "mvdream-diffusers")
    converted = MVDreamPrior(mv_config(model=str(folder), original_config=None, tokenizer="unused"))
    torch.testing.assert_close(converted.alphas_cumprod, original.alphas_cumprod)
    cams = tiny.tiny_cameras(4, 16)
    x, t = torch.randn(4, 4, 8, 8), torch.full((4,), 300)
    emb = original.encode_text(["a red sphere"]).expand(4, -1, -1)
    torch.testing.assert_close(converted.encode_text(["a red sphere"]).expand(4, -1, -1), emb)
    with torch.no_grad():
        torch.testing.assert_close(converted.predict_noise(x, t, emb, cams), original.predict_noise(x, t, emb, cams))


def test_psd_mvdream_without_weights_fails_fast_naming_the_checkpoint(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "psdkit.cli.main", "fit", str(ROOT / "recipes" / "psd_mvdream.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert "MVDream/MVDream" in proc.stderr and "sd-v2.1-base-4view.pt" in proc.stderr
    assert "stabilityai/stable-diffusion-2-1-base/tokenizer/*" in proc.stderr, "the tokenizer is listed too"
    from psdkit.cli.weights import how_to_get

    cmd = how_to_get("stabilityai/stable-diffusion-2-1-base/tokenizer/*")
    assert cmd == "huggingface-cli download stabilityai/stable-diffusion-2-1-base --include 'tokenizer/*'"
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "nothing is downloaded or written"


def test_community_diffusers_port_with_latent_diffusion_names_loads(tmp_path, modules):
    """MVDream-diffusers (the community port on the hub) keeps the original UNet as a ``MultiViewUNetModel``:
    latent-diffusion tensor names, the yaml's params as its config. Its folder predicts what the original does."""
    import json

    from safetensors.torch import save_file

    mods, state, config = modules
    original = MVDreamPrior(mv_config())
    folder = save_diffusers(mods, original.tokenizer, tmp_path / "mvdream-community")
    unet_dir = folder / "unet"
    for f in unet_dir.iterdir():
        f.unlink()
    params = dict(config["model"]["params"]["unet_config"]["params"])
    params.pop("use_linear_in_transformer")  # the port drops it (its transformers are always linear)
    (unet_dir / "config.json").write_text(json.dumps({"_class_name": "MultiViewUNetModel", **params}))
    unet = {k.removeprefix("model.diffusion_model."): v for k, v in state.items() if k.startswith("model.diff")}
    save_file({k: v.contiguous() for k, v in unet.items()}, str(unet_dir / "diffusion_pytorch_model.safetensors"))
    community = MVDreamPrior(mv_config(model=str(folder), original_config=None, tokenizer="unused"))
    cams, x, t = tiny.tiny_cameras(4, 16), torch.randn(4, 4, 8, 8), torch.full((4,), 700)
    emb = original.encode_text(["a red sphere"]).expand(4, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(community.predict_noise(x, t, emb, cams), original.predict_noise(x, t, emb, cams))
    assert MVDreamPrior.required_weights(mv_config(model="someone/mvdream-diffusers", layout="diffusers")) == [
        ("someone/mvdream-diffusers", False)
    ]
