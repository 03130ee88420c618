"""Plugin discovery with fake entry points: lazy, validated, clear errors."""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest

from psdkit.contracts import RewardModel
from psdkit.errors import PluginError
from psdkit.registry import Registry


class FakeDist:
    def __init__(self, name: str, version: str = "1.0") -> None:
        self.name, self.version = name, version


class FakeEntryPoint:
    """Mimics importlib.metadata.EntryPoint; records whether it was loaded."""

    loaded: list[str] = []

    def __init__(self, name: str, value: str, group: str, dist: str = "thirdparty") -> None:
        self.name, self.value, self.group, self.dist = name, value, group, FakeDist(dist)

    def load(self):
        FakeEntryPoint.loaded.append(self.name)
        module, _, attr = self.value.partition(":")
        return getattr(sys.modules[module] if module in sys.modules else __import__(module), attr)


@dataclasses.dataclass(frozen=True)
class GoodConfig:
    """Config."""

    weight: float = 1.0
    """A weight."""


class GoodReward(RewardModel):
    """A reward."""

    Config = GoodConfig

    def forward(self, images, prompts):
        return images.mean((1, 2, 3))


class NoConfigReward(RewardModel):
    def forward(self, images, prompts):
        return images.mean((1, 2, 3))


class NotAReward:
    Config = GoodConfig


@pytest.fixture
def fake_module(monkeypatch):
    mod = types.ModuleType("fake_plugins")
    mod.GoodReward, mod.NoConfigReward, mod.NotAReward = GoodReward, NoConfigReward, NotAReward
    monkeypatch.setitem(sys.modules, "fake_plugins", mod)
    FakeEntryPoint.loaded = []
    return mod


def registry_of(*eps: FakeEntryPoint) -> Registry:
    return Registry(lambda group: [e for e in eps if e.group == group])


def test_listing_imports_nothing(fake_module):
    reg = registry_of(
        FakeEntryPoint("good", "fake_plugins:GoodReward", "psdkit.rewards"),
        FakeEntryPoint("broken", "no_such_module_xyz:Thing", "psdkit.rewards"),
    )
    assert reg.names("reward") == ["broken", "good"]
    assert FakeEntryPoint.loaded == []
    info = reg.get_info("reward", "good")
    assert (info.dist, info.version) == ("thirdparty", "1.0")


def test_load_validates(fake_module):
    reg = registry_of(FakeEntryPoint("good", "fake_plugins:GoodReward", "psdkit.rewards"))
    assert reg.load("reward", "good") is GoodReward


def test_broken_plugin_does_not_break_others(fake_module):
    reg = registry_of(
        FakeEntryPoint("good", "fake_plugins:GoodReward", "psdkit.rewards"),
        FakeEntryPoint("broken", "no_such_module_xyz:Thing", "psdkit.rewards", dist="badpkg"),
    )
    assert reg.load("reward", "good") is GoodReward
    with pytest.raises(
        PluginError,
        match=r"reward plugin broken \(badpkg 1\.0, no_such_module_xyz:Thing\) "
        r"failed to import: ModuleNotFoundError",
    ):
        reg.load("reward", "broken")


def test_wrong_base_class(fake_module):
    reg = registry_of(FakeEntryPoint("bad", "fake_plugins:NotAReward", "psdkit.rewards"))
    with pytest.raises(PluginError, match=r"not a subclass of psdkit\.contracts\.reward\.RewardModel"):
        reg.load("reward", "bad")


def test_missing_config(fake_module):
    reg = registry_of(FakeEntryPoint("noconf", "fake_plugins:NoConfigReward", "psdkit.rewards"))
    with pytest.raises(PluginError, match=r"has no dataclass `Config` attribute"):
        reg.load("reward", "noconf")


def test_duplicate_names_name_both_distributions(fake_module):
    reg = registry_of(
        FakeEntryPoint("dup", "fake_plugins:GoodReward", "psdkit.rewards", dist="pkg-a"),
        FakeEntryPoint("dup", "fake_plugins:NotAReward", "psdkit.rewards", dist="pkg-b"),
    )
    with pytest.raises(PluginError, match=r"two reward plugins are named 'dup': .*pkg-a.*pkg-b"):
        reg.names("reward")


def test_unknown_name_lists_installed(fake_module):
    reg = registry_of(FakeEntryPoint("good", "fake_plugins:GoodReward", "psdkit.rewards"))
    with pytest.raises(PluginError, match=r"no reward plugin named 'nope'; installed: good"):
        reg.load("reward", "nope")


def test_builtins_use_entry_points():
    reg = Registry()
    for kind, name in [
        ("prior", "analytic"),
        ("guidance", "psd"),
        ("guidance", "sds"),
        ("representation", "hashgrid-nerf"),
        ("renderer", "volume"),
        ("reward", "analytic"),
    ]:
        assert reg.get_info(kind, name).dist == "psdkit"
        reg.load(kind, name)
