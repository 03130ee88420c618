"""Every fast path against the straightforward path it replaces (issue 5).

The Triton hash grid is in tests/test_triton_hashgrid.py, the level-vectorized hash grid and empty-space
skipping in tests/test_components.py. Speed is measured by ``psdkit bench speed``, not here.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers", reason="pip install 'psdkit[diffusers]' for the real-model fast paths")

from psdkit_plugins.guidance.psd import PSD  # noqa: E402
from psdkit_plugins.priors.stable_diffusion import StableDiffusionPrior  # noqa: E402
from psdkit_plugins.rewards.clip_score import ClipScore  # noqa: E402
from psdkit_plugins.rewards.imagereward import ImageReward  # noqa: E402

from psdkit.config.schema import build_config  # noqa: E402
from psdkit.contracts import GuidanceContext, GuidanceInput  # noqa: E402
from psdkit.ops.speed import PatchMatmul, patch_convs_as_matmul  # noqa: E402
from psdkit.run.build import make_conditioning  # noqa: E402
from psdkit.testing import tiny  # noqa: E402
from psdkit.testing.sync import forbid_host_sync  # noqa: E402

W: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _weights(tiny_weights):
    W.update(tiny_weights)


def sd(**kw) -> StableDiffusionPrior:
    cfg = {"model": str(W["sd"]), "resolution": 64, "text_cache": None, **kw}
    return StableDiffusionPrior(build_config(StableDiffusionPrior.Config, cfg, "prior.config")).eval()


def image_reward(**kw) -> ImageReward:
    cfg = {
        "checkpoint": str(W["ir"]),
        "tokenizer": str(W["ir"] / "tokenizer"),
        "vision_heads": 4,
        "text_heads": 4,
        **kw,
    }
    return ImageReward(build_config(ImageReward.Config, cfg, "reward.config"))


def clip_score(**kw) -> ClipScore:
    return ClipScore(build_config(ClipScore.Config, {"model": str(W["clip"]), **kw}, "reward.config"))


def score_and_grad(reward, images: torch.Tensor, weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, d (weight x scores).sum() / d images)."""
    x = images.clone().requires_grad_()
    s = reward(x, ["a red sphere", "a blue cube"])
    (g,) = torch.autograd.grad((weight * s).sum(), x)
    return s.detach(), g


IMAGES = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))


# ---- reward towers -----------------------------------------------------------------------------------
def test_patch_matmul_equals_the_convolution():
    conv = torch.nn.Conv2d(3, 8, kernel_size=7, stride=7)
    x = torch.randn(2, 3, 30, 29, requires_grad=True)  # sides not multiples of 7: the remainder is dropped
    ref = conv(x)
    out = PatchMatmul(conv)(x)
    assert out.shape == ref.shape == (2, 8, 4, 4)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(ref)
    assert torch.allclose(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0], atol=1e-5)
    net = torch.nn.Sequential(conv, torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 2, stride=2))
    assert patch_convs_as_matmul(net) == 2  # the 3x3 padded convolution is not a patch embedding
    assert isinstance(net[0], PatchMatmul) and isinstance(net[1], torch.nn.Conv2d)


@pytest.mark.parametrize("make", [clip_score, image_reward], ids=["clip", "imagereward"])
def test_reward_patch_matmul_same_score_and_gradient(make):
    ref_s, ref_g = score_and_grad(make(), IMAGES)
    fast = make(patch_embed="matmul")
    assert any(isinstance(m, PatchMatmul) for m in fast.modules())
    s, g = score_and_grad(fast, IMAGES)
    assert torch.allclose(s, ref_s, atol=1e-5)
    assert torch.allclose(g, ref_g, atol=1e-6 + 1e-4 * ref_g.abs().max())


@pytest.mark.parametrize("make", [clip_score, image_reward], ids=["clip", "imagereward"])
def test_reward_bf16_close_to_fp32(make):
    ref_s, ref_g = score_and_grad(make(), IMAGES)
    s, g = score_and_grad(make(dtype="bf16"), IMAGES)
    assert s.dtype == torch.float32
    assert (s - ref_s).abs().max() < 0.03 * (1 + ref_s.abs().max())
    assert abs(g.norm() / ref_g.norm() - 1) < 0.2
    if make is clip_score:  # the tiny ImageReward's image gradient (~1e-9) is below bf16's resolution
        cos = torch.nn.functional.cosine_similarity(g.flatten(), ref_g.flatten(), dim=0)
        assert cos > 0.95, cos


def test_reward_fp16_underflow_is_why_bf16_is_offered():
    """fp16's narrow range flushes a small image gradient to zero; bf16 keeps it. The tiny ImageReward's score is
    scaled by 1e-3 for an image gradient of norm ~1e-6 (what the tiny model had at transformers 5's BLIP init; at
    init 0.02 its own is 8e-4 and fp16 keeps it). Measured: fp16 all zeros, bf16 at cosine 0.99997 to fp32."""
    _, ref_g = score_and_grad(image_reward(), IMAGES, weight=1e-3)
    _, g16 = score_and_grad(image_reward(dtype="fp16"), IMAGES, weight=1e-3)
    _, gbf = score_and_grad(image_reward(dtype="bf16"), IMAGES, weight=1e-3)
    assert ref_g.norm() > 0 and gbf.norm() > 0.5 * ref_g.norm() and g16.norm() < 0.5 * ref_g.norm()
    assert torch.nn.functional.cosine_similarity(gbf.flatten(), ref_g.flatten(), dim=0) > 0.99


def test_reward_compile_traces_and_matches():
    ref_s, ref_g = score_and_grad(image_reward(), IMAGES)
    fast = image_reward(compile="default", compile_backend="aot_eager")
    assert fast.vision._compiled_call_impl is not None  # nn.Module.compile was applied
    s, g = score_and_grad(fast, IMAGES)
    assert torch.allclose(s, ref_s, atol=1e-5) and torch.allclose(g, ref_g, atol=1e-5)


# ---- the Stable Diffusion prior ---------------------------------------------------------------------
def prior_outputs(prior: StableDiffusionPrior) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 16, 16, generator=gen)
    x_t = torch.randn(2, 4, 8, 8, generator=gen)
    emb = torch.randn(2, 77, 32, generator=gen, requires_grad=True)
    eps = prior.predict_noise(x_t, torch.tensor([50, 700]), emb)
    (g_emb,) = torch.autograd.grad(eps.square().sum(), emb)
    return [prior.encode_images(images), eps.detach(), g_emb, prior.decode(x_t)]


@pytest.mark.parametrize(
    "switch",
    [{"channels_last": True}, {"attention": "eager"}, {"compile": "default", "compile_backend": "aot_eager"}],
    ids=["channels_last", "eager_attention", "compile"],
)
def test_prior_switch_matches_reference(switch):
    ref = prior_outputs(sd())
    fast = sd(**switch)
    if "compile" in switch:
        assert fast.unet._compiled_call_impl is not None and fast.vae.decoder._compiled_call_impl is not None
    for a, b in zip(prior_outputs(fast), ref):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


def test_prior_bf16_close_to_fp32():
    for a, b in zip(prior_outputs(sd(dtype="bf16")), prior_outputs(sd())):
        assert a.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert cos > 0.98, cos


# ---- PSD --------------------------------------------------------------------------------------------
def psd_step(ctx: GuidanceContext, step: int = 3, seed: int = 0, **cfg):
    """(loss, grad of the render, grad of e_n, strategy) of one PSD step on a fixed render."""
    strategy = PSD(build_config(PSD.Config, {"neg_loss": "reward", "reward_estimate": {"t_max": 1.0}, **cfg}, ""))
    strategy.setup(ctx)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed)).requires_grad_()
    inp = GuidanceInput(
        images,
        tiny.tiny_cameras(2, 16),
        torch.zeros(2, dtype=torch.long),
        step,
        10,
        torch.Generator().manual_seed(seed),
    )
    out = strategy(inp)
    g_img, g_neg = torch.autograd.grad(out.loss, [images, strategy.neg_offset], allow_unused=True)
    return out.loss.detach(), g_img, g_neg, strategy


@pytest.mark.parametrize("form", ["p1", "p2"])
def test_psd_batched_conditionings_match_separate_calls(form):
    ctx = tiny.tiny_context()
    scaling = {"reward_scaling": {}} if form == "p2" else {}
    ref = psd_step(ctx, form=form, batch_conditionings=False, **scaling)
    fast = psd_step(ctx, form=form, batch_conditionings=True, **scaling)
    for a, b in zip(fast[:3], ref[:3]):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    assert ref[2].abs().sum() > 0  # e_n is trained on this step


def test_psd_update_every_k_steps():
    ctx = tiny.tiny_context()
    _, g_img_ref, _, _ = psd_step(ctx, step=3, negative={"every": 1})
    _, g_img, g_neg, strategy = psd_step(ctx, step=3, negative={"every": 2})
    assert not strategy.updating(3, 10) and strategy.updating(4, 10)
    assert g_neg is None or g_neg.abs().sum() == 0  # no e_n update on this step...
    assert torch.allclose(g_img, g_img_ref, atol=1e-7)  # ...and the same 3D update as the reference


def test_psd_reward_decode_size():
    ctx = tiny.tiny_context(resolution=32)  # the quickstart's prior resolution
    ref = psd_step(ctx)
    same = psd_step(ctx, reward_estimate={"t_max": 1.0, "decode_size": 32})  # the native size: nothing changes
    for a, b in zip(same[:3], ref[:3]):
        assert torch.equal(a, b)
    half = psd_step(ctx, reward_estimate={"t_max": 1.0, "decode_size": 16})
    assert torch.equal(half[1], ref[1])  # the 3D update does not depend on the reward's decode
    cos = torch.nn.functional.cosine_similarity(half[2].flatten(), ref[2].flatten(), dim=0)
    assert cos > 0.9, cos  # the e_n update keeps its direction (measured: 0.95 at half size)


# ---- no host synchronisation in the step ----------------------------------------------------------
@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"neg_loss": "reward"},
        {"form": "p2", "reward_scaling": {}, "neg_loss": "reward"},
        {"neg_loss": "pairwise"},
    ],
    ids=["pool", "reward", "p2_scaling", "pairwise"],
)
def test_psd_step_reads_nothing_back_from_the_device(cfg):
    prior, reward = sd(), image_reward()
    from psdkit.config.recipe_schema import PromptConfig

    prompt = PromptConfig(text="a red sphere", view_dependent=True)
    cond = make_conditioning(prior, prompt)
    ctx = GuidanceContext(prior=prior, reward=reward, cond=cond, views=tiny.tiny_views(cond, prompt, 8))
    field = tiny.make("representation", "hashgrid-nerf", levels=2, log2_table_size=8, hidden=8)
    renderer = tiny.make("renderer", "volume", num_samples=8, occupancy=False)
    estimate = {"reward_estimate": {"t_max": 1.0}, "pool": {"size": 2, "copies": 2, "steps": 2}}
    strategy = PSD(build_config(PSD.Config, {**estimate, **cfg}, ""))
    strategy.setup(ctx)
    strategy.prepare()  # the pool is drawn before training (it reads its rewards back once, there)
    cams = tiny.tiny_cameras(2, 8)
    ids = [cond.labels.index(n) for n in cams.view_labels()]
    with forbid_host_sync():
        out = renderer(field, cams, tiny.tiny_background())
        inp = GuidanceInput(out.rgb, cams, torch.tensor(ids), 0, 10, torch.Generator().manual_seed(0))
        loss = strategy(inp).loss
        loss.backward()
    assert field.table.grad.abs().sum() > 0 and strategy.neg_offset.grad.abs().sum() > 0


def test_forbid_host_sync_catches_reads():
    x = torch.ones(3)
    with forbid_host_sync():
        with pytest.raises(RuntimeError, match="host synchronisation: Tensor.item"):
            x.sum().item()
        with pytest.raises(RuntimeError, match="host synchronisation: Tensor.__bool__"):
            bool(x.sum() > 0)
    assert x.sum().item() == 3.0  # restored on exit
