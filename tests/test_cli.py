"""psdkit plugins / show / doctor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from psdkit.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_plugins_lists_by_kind_without_importing(capsys, monkeypatch):
    for mod in [m for m in sys.modules if m.startswith("psdkit_plugins.")]:
        monkeypatch.delitem(sys.modules, mod)
    assert main(["plugins"]) == 0
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
    assert "neg_lr: Schedule = 0.001  [ge 0.0]" in out
    assert "Learning rate of e_n (Adam)." in out
    assert "form: 'p1' | 'p2' = 'p1'" in out
    assert main(["show", "guidance", "nope"]) == 2
    assert "no guidance plugin named 'nope'; installed:" in capsys.readouterr().err


def test_doctor(capsys):
    assert main(["doctor", str(ROOT / "recipes" / "quickstart.yaml")]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "fast paths:" in out and "tinycudann" in out
    assert "no weights needed" in out


@pytest.mark.parametrize("argv", [["fit"], ["bogus"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
