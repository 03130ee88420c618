"""Real priors and rewards, loaded from tiny random-weight checkpoints in the published layouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="pip install 'psdkit[diffusers]' to test the Stable Diffusion prior")
pytest.importorskip("transformers", reason="pip install 'psdkit[rewards]' to test the CLIP-based rewards")

from psdkit_plugins.backbones.clip import CLIP_MEAN, CLIP_STD, preprocess  # noqa: E402
from psdkit_plugins.priors.deepfloyd_if import DeepFloydIFPrior  # noqa: E402
from psdkit_plugins.priors.stable_diffusion import StableDiffusionPrior  # noqa: E402
from psdkit_plugins.rewards.aesthetic import AestheticReward  # noqa: E402
from psdkit_plugins.rewards.clip_score import ClipScore  # noqa: E402
from psdkit_plugins.rewards.hpsv2 import HPSv2  # noqa: E402
from psdkit_plugins.rewards.imagereward import ImageReward  # noqa: E402
from psdkit_plugins.rewards.pickscore import PickScore  # noqa: E402

from psdkit.config.schema import build_config  # noqa: E402
from psdkit.errors import MissingWeightsError  # noqa: E402
from psdkit.testing import conformance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY: dict[str, Path] = {}


@pytest.fixture(scope="session", autouse=True)
def _tiny(tiny_weights):
    TINY.update(tiny_weights)


def sd_config(**kw):
    return build_config(
        StableDiffusionPrior.Config,
        {"model": str(TINY["sd"]), "resolution": 64, "text_cache": str(TINY["cache"]), **kw},
        "prior.config",
    )


class TestStableDiffusion(conformance.PriorConformance):
    plugin_cls = StableDiffusionPrior

    def tiny_config(self):
        return sd_config()


class TestDeepFloydIF(conformance.PriorConformance):
    plugin_cls = DeepFloydIFPrior

    def tiny_config(self):
        return DeepFloydIFPrior.Config(model=str(TINY["if"]), resolution=16, text_cache=str(TINY["cache"]))


def test_deepfloyd_missing_weights_mention_the_licence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match=r"(?s)DeepFloyd/IF-I-XL-v1.0 is gated: accept its licence"):
        DeepFloydIFPrior(DeepFloydIFPrior.Config())


class TestClipScore(conformance.RewardConformance):
    plugin_cls = ClipScore

    def tiny_config(self):
        # the random tiny CLIP's cosines are negative: unfloored, so the contract's gradient check sees them
        # (the default floor is tested in tests/test_real_path.py)
        return ClipScore.Config(model=str(TINY["clip"]), floor=None)


class TestPickScore(conformance.RewardConformance):
    plugin_cls = PickScore

    def tiny_config(self):
        return PickScore.Config(model=str(TINY["clip"]), tokenizer=str(TINY["clip"]))


class TestAesthetic(conformance.RewardConformance):
    plugin_cls = AestheticReward

    def tiny_config(self):
        return AestheticReward.Config(clip=str(TINY["clip"]), head=str(TINY["head"]))


class TestHPSv2(conformance.RewardConformance):
    plugin_cls = HPSv2

    def tiny_config(self):
        return HPSv2.Config(
            checkpoint=str(TINY["hps"]), tokenizer=str(TINY["hps"] / "clip"), vision_heads=4, text_heads=4
        )


class TestImageReward(conformance.RewardConformance):
    plugin_cls = ImageReward

    def tiny_config(self):
        return ImageReward.Config(
            checkpoint=str(TINY["ir"]), tokenizer=str(TINY["ir"] / "tokenizer"), vision_heads=4, text_heads=4
        )


def test_imagereward_matches_its_reference_computation():
    """The converted checkpoint scores exactly as BLIP + MLP computed from the original-layout tensors."""
    from psdkit_plugins.backbones.blip import split, vit_to_hf
    from psdkit_plugins.rewards.aesthetic import head_from_state_dict
    from psdkit_plugins.rewards.imagereward import MEAN, STD
    from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

    model = ImageReward(TestImageReward().tiny_config())
    state = torch.load(TINY["ir"] / "ImageReward.pt", weights_only=True)
    vision = BlipVisionModel(
        BlipVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            layer_norm_eps=1e-6,
        )
    )
    vision.load_state_dict(vit_to_hf(split(state, "blip.visual_encoder.")), strict=False)
    text_state = split(state, "blip.text_encoder.")
    text = BlipTextModel(
        BlipTextConfig(
            vocab_size=text_state["embeddings.word_embeddings.weight"].shape[0],
            hidden_size=24,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            encoder_hidden_size=32,
            max_position_embeddings=64,
        ),
        add_pooling_layer=False,
    )
    text.load_state_dict(text_state, strict=False)
    mlp = head_from_state_dict(split(state, "mlp."))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prompts = ["a red sphere", "a photo of a blue cube"]
    tok = model.tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    assert tok.input_ids.shape == (2, 35)
    with torch.no_grad():
        emb = vision(pixel_values=preprocess(images, 32, "torchvision")).last_hidden_state
        out = text(
            input_ids=tok.input_ids,
            attention_mask=tok.attention_mask,
            encoder_hidden_states=emb,
            encoder_attention_mask=torch.ones(emb.shape[:-1], dtype=torch.long),
        )
        expected = (mlp(out.last_hidden_state[:, 0]).squeeze(-1) - MEAN) / STD
        assert torch.allclose(model(images, prompts), expected, atol=1e-5)


def test_sd_prior_shapes_and_text_cache():
    prior = StableDiffusionPrior(sd_config())
    emb = prior.encode_text(["lower", ""])
    assert emb.shape == (2, 77, 32)
    cached = sorted(TINY["cache"].glob("*.pt"))
    assert len(cached) >= 2
    again = StableDiffusionPrior(sd_config()).encode_text(["lower", ""])
    assert torch.equal(emb, again)
    z = prior.encode_images(torch.rand(2, 3, 16, 16))
    assert z.shape == (2, 4, 8, 8)
    assert prior.decode(z).shape == (2, 3, 64, 64)
    direct = StableDiffusionPrior(sd_config(latents="direct"))
    zd = direct.encode_images(torch.rand(1, 3, 32, 32))
    assert zd.shape == (1, 4, 64, 64) and direct.decode(zd).shape == (1, 3, 64, 64)


def test_sd_v_prediction_is_converted_to_eps():
    prior = StableDiffusionPrior(
        build_config(
            StableDiffusionPrior.Config, {"model": str(TINY["sd_v"]), "resolution": 64, "text_cache": None}, ""
        )
    )
    assert prior.prediction_type == "v_prediction"
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([100, 800])
    emb = prior.encode_text(["low", "er"])
    v = prior.unet(x_t, t, encoder_hidden_states=emb).sample
    alpha, sigma = prior.alpha_sigma(t)
    expected = alpha.view(-1, 1, 1, 1) * v + sigma.view(-1, 1, 1, 1) * x_t
    assert torch.allclose(prior.predict_noise(x_t, t, emb), expected, atol=1e-5)


def test_hpsv2_conversion_is_exact():
    """The converted open_clip checkpoint scores exactly like the transformers model it came from."""
    from psdkit_plugins.backbones.clip import ClipScorer, load_tokenizer
    from transformers import CLIPModel

    hps = HPSv2(
        HPSv2.Config(checkpoint=str(TINY["hps"]), tokenizer=str(TINY["hps"] / "clip"), vision_heads=4, text_heads=4)
    )
    ref = ClipScorer(
        CLIPModel.from_pretrained(TINY["hps"] / "clip"), load_tokenizer(str(TINY["hps"] / "clip"), "x"), fit="pad"
    )
    images = torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    prompts = ["low", "lower newer", ""]
    assert torch.allclose(hps(images, prompts), ref.cosine(images, prompts), atol=1e-6)


def test_torch_preprocessing_matches_clip_image_processor():
    """Stated tolerance: mean |diff| < 0.02 and max |diff| < 0.5 in normalized units (PIL vs torch bicubic)."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    proc = CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    rng = np.random.default_rng(0)
    for h, w in [(64, 64), (96, 64), (50, 80)]:
        smooth = rng.random((h // 8 + 1, w // 8 + 1, 3))
        img = np.asarray(Image.fromarray((smooth * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
        ref = torch.from_numpy(np.asarray(proc(images=Image.fromarray(img), return_tensors="np")["pixel_values"]))
        ours = preprocess(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, 32, "transformers")
        diff = (ours - ref).abs()
        assert diff.mean() < 0.02 and diff.max() < 0.5, (h, w, float(diff.mean()), float(diff.max()))


def test_missing_weights_fail_fast_offline(monkeypatch):
    """Offline, a missing model is a clear error at once: no download is tried (the test blocks sockets)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match=r"(?s)cannot load 'nobody/no-such-model'.*huggingface-cli download"):
        StableDiffusionPrior(build_config(StableDiffusionPrior.Config, {"model": "nobody/no-such-model"}, ""))
    with pytest.raises(MissingWeightsError, match=r"(?s)reward aesthetic: .*no-such/repo"):
        AestheticReward(AestheticReward.Config(clip=str(TINY["clip"]), head="no-such/repo"))


def test_psd_nerf_without_weights_exits_before_loading_and_writes_nothing(tmp_path):
    """Missing weights are reported by the pre-flight check: no model module is imported, nothing is fetched
    or written. (How fast that is belongs to the benchmarks, not to a test.)"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    probe = (
        "import sys, runpy; sys.argv = ['psdkit', 'fit', sys.argv[1]]\n"
        "try:\n    runpy.run_module('psdkit.cli.main', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'open_clip'))\n"
        "    print('LOADED', loaded, file=sys.stderr); raise\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "recipes" / "psd_nerf.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert "stabilityai/stable-diffusion-2-1-base" in proc.stderr and "huggingface-cli download" in proc.stderr
    assert "LOADED []" in proc.stderr, "no model library is imported before the weights are known to be there"
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["hf"])
    assert not [p for p in (tmp_path / "hf").rglob("*") if p.is_file()], "nothing is downloaded or cached"


def test_vsd_lora_on_the_stable_diffusion_unet():
    """VSD's LoRA lives in the prior's UNet but belongs to the strategy; the prior's own eps is unchanged."""
    from psdkit_plugins.guidance.vsd import VSD

    from psdkit.config.recipe_schema import PromptConfig
    from psdkit.contracts import GuidanceContext, GuidanceInput
    from psdkit.run.build import make_conditioning
    from psdkit.testing import tiny

    prior = StableDiffusionPrior(sd_config()).requires_grad_(False)
    cond = make_conditioning(prior, PromptConfig(text="lower", view_dependent=False))
    cams = tiny.tiny_cameras(2, 16)
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([100, 700])
    before = prior.predict_noise(x_t, t, cond.prompt_emb[[0, 0]])
    vsd = VSD(build_config(VSD.Config, {"score_model": "lora", "lora_rank": 2}, ""))
    vsd.setup(GuidanceContext(prior=prior, reward=None, cond=cond))
    assert torch.allclose(prior.predict_noise(x_t, t, cond.prompt_emb[[0, 0]]), before, atol=1e-6)
    names = [k for k in vsd.state_dict() if "lora" in k]
    assert names and all(k.startswith("score.") for k in vsd.state_dict())
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    out = vsd(GuidanceInput(images, cams, torch.zeros(2, dtype=torch.long), 0, 10, torch.Generator().manual_seed(1)))
    out.loss.backward()
    assert images.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vsd.score.lora)
    assert vsd.score.camera.weight.grad is not None
