"""psdkit plugins / show / doctor."""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from psdkit.cli.main import main
from psdkit.config.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_plugins_lists_by_kind_without_importing(capsys, monkeypatch):
    for mod in [m for m in sys.modules if m.startswith("psdkit_plugins.")]:
        monkeypatch.delitem(sys.modules, mod)
    assert main(["plugins", "--fast"]) == 0
    out = capsys.readouterr().out
    assert "guidance (psdkit.guidance):" in out
    assert "psd" in out and "psdkit 0.1.0" in out and "psdkit_plugins.guidance.psd:PSD" in out
    assert not [m for m in sys.modules if m.startswith("psdkit_plugins.")], "listing must not import plugins"


def test_plugins_unknown_kind(capsys):
    assert main(["plugins", "shaders"]) == 2
    assert "unknown kind 'shaders'; kinds: representation" in capsys.readouterr().err


def test_show_documents_every_field(capsys):
    assert main(["show", "guidance", "psd"]) == 0
    out = capsys.readouterr().out
    assert "  negative.lr: Schedule = 0.08  [ge 0.0]" in out  # a section's fields, dotted
    assert "AdamW learning rate of u (units of the prompt embedding's RMS per update)." in out
    assert "form: 'p1' | 'p2' = 'p1'" in out
    assert main(["show", "guidance", "nope"]) == 2
    assert "no guidance plugin named 'nope'; installed:" in capsys.readouterr().err


def test_doctor(capsys):
    assert main(["doctor", str(ROOT / "recipes" / "quickstart.yaml")]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "fast paths:" in out and "tinycudann" in out and "gsplat" in out
    assert "no weights needed" in out


@pytest.mark.parametrize("argv", [["fit"], ["bogus"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_plugins_and_doctor_mark_a_plugin_that_fails_to_import(capsys, monkeypatch):
    import importlib.metadata as md

    import psdkit.registry as registry

    class Broken:
        name, value, group = "half-written", "no_such_module_xyz:Reward", "psdkit.rewards"
        dist = md.distribution("psdkit")

        def load(self):
            return __import__("no_such_module_xyz")

    real = md.entry_points
    monkeypatch.setattr(
        registry,
        "_default",
        registry.Registry(lambda group: [*real(group=group), *([Broken()] if group == Broken.group else [])]),
    )
    assert main(["plugins", "rewards"]) == 1
    out = capsys.readouterr().out
    assert "half-written" in out and "BROKEN: ModuleNotFoundError: No module named 'no_such_module_xyz'" in out
    assert (
        "analytic " in out
        and "analytic             psdkit 0.1.0  [psdkit_plugins.rewards.analytic:AnalyticReward]\n" in out
    )
    assert main(["doctor"]) == 1
    assert "BROKEN reward half-written: ModuleNotFoundError" in capsys.readouterr().out


def test_missing_optional_package_is_named_with_its_extra(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    recipe = str(ROOT / "recipes" / "psd_nerf.yaml")
    assert main(["doctor", recipe]) == 1
    out = capsys.readouterr().out
    assert (
        "MISSING package: prior (stable-diffusion) needs the Python package diffusers: pip install 'psdkit[diffusers]'"
        in out
    )
    assert "(get it: huggingface-cli download THUDM/ImageReward ImageReward.pt)" in out
    assert main(["fit", recipe, "--validate-only"]) == 2
    assert "needs the Python package diffusers: pip install 'psdkit[diffusers]'" in capsys.readouterr().err


def test_renaming_a_component_says_what_it_drops(capsys):
    with warnings.catch_warnings():  # shown as a user sees it, not recorded by pytest
        warnings.simplefilter("default")
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(m, c, f, n, line)
        )
        assert main(["fit", str(ROOT / "recipes" / "quickstart.yaml"), "guidance.name=sds", "--validate-only"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("psdkit: warning: guidance.name=sds replaces psd")
    dropped = "dropped (batch_conditionings, guidance_rescale, guidance_scale, neg_loss, t_max)"
    assert dropped in captured.err
    resolved = yaml.safe_load(captured.out)  # --validate-only prints the resolved recipe
    assert resolved["guidance"]["name"] == "sds" and resolved["guidance"]["config"]["guidance_scale"]["start"] == 7.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit"], "the following arguments are required: recipe\n"),
        (["eval", "runs/x", "--views", "0"], "argument --views: must be at least 1, found 0"),
        (["plugins", "shaders"], None),
        (  # a list option must not swallow an override silently (it became a prompt)
            ["bench", "alignment", "--prompts", "a bead", "prior.config.objects=[orange-bead]"],
            "argument --prompts: 'prior.config.objects=[orange-bead]' is an override, not a list item: put overrides "
            "before the list option or end the list with --",
        ),
    ],
)
def test_usage_messages(capsys, argv, message):
    with pytest.raises(SystemExit) if argv[0] != "plugins" else contextlib.nullcontext():
        assert main(argv) == 2
    if message:
        assert capsys.readouterr().err.endswith(message + ("" if message.endswith("\n") else "\n"))


def test_bad_recipe_files_are_one_line(tmp_path, capsys):
    binary = tmp_path / "bad.yaml"
    binary.write_bytes(b"\xff")
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\ntrainer:\n  max_steps: 3\nseed: 1\ntrainer:\n  max_steps: 5\n")
    for path, message in [
        (binary, "not a UTF-8 text file"),
        (tmp_path, "is a directory, not a recipe file"),
        (dup, "dup.yaml:5: YAML error: duplicate key 'trainer' (lines 2 and 5)"),
    ]:
        assert main(["fit", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["fit", str(ROOT / "recipes" / "quickstart.yaml"), "guidance.config.guidance_scale=.inf"]) == 2
    assert "guidance.config.guidance_scale: expected a finite number (found inf)" in capsys.readouterr().err
    assert main(["fit", str(ROOT / "recipes" / "quickstart.yaml"), "camera.config.width=100000"]) == 2
    assert "camera.config.width: out of range, must be <= 8192" in capsys.readouterr().err


def test_too_large_a_step_is_refused_with_its_estimate(tmp_path, capsys, monkeypatch):
    import psdkit.run.resources as resources

    monkeypatch.setattr(resources, "available_memory", lambda use_gpu: 2 * 2**30)
    argv = ["fit", str(ROOT / "recipes" / "quickstart.yaml"), f"output.root={tmp_path}", "camera.config.width=4096"]
    assert main([*argv, "camera.config.height=512"]) == 2
    err = capsys.readouterr().err
    assert "one training step needs about" in err and "GiB (4 views x 512x4096 px x 32 points" in err
    assert "has 2.0 GiB available" in err and list(tmp_path.iterdir()) == []
    need, _ = resources.estimate_step_bytes(load_recipe(ROOT / "recipes" / "quickstart.yaml"))
    assert need < 2**30, "the quickstart's own step is far below the limit"
