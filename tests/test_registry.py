"""One registry for everything that plugs in (sources, training data, nets)."""

from __future__ import annotations

import sys

import pytest

from filterdb.registry import Registry
from filterdb.sources import SOURCES, ModelLoadError, get_source, list_sources
from filterdb.train.data import DATASETS
from filterdb.train.nets import ARCHS


def test_unknown_names_raise_the_registry_error_listing_the_known_ones():
    reg: Registry[int] = Registry("widget", error=LookupError)
    reg.register("b", 2)
    reg.register("a", 1)
    with pytest.raises(LookupError, match=r"unknown widget 'c'; known: a, b"):
        reg.get("c")
    assert reg.names() == ["a", "b"] and "a" in reg and "c" not in reg


def test_builtins_are_listed_before_and_imported_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "plugin_for_registry_test.py").write_text(
        "from tests.test_registry import LAZY\nLAZY.register('late', 42)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugin_for_registry_test" not in sys.modules
    assert LAZY.names() == ["late"]  # known before its module is imported
    assert LAZY.get("late") == 42
    assert "plugin_for_registry_test" in sys.modules


LAZY: Registry[int] = Registry("plug-in", builtin={"late": "plugin_for_registry_test"})


def test_a_later_registration_replaces_an_earlier_one():
    reg: Registry[str] = Registry("thing")
    reg.register("x", "first")

    @reg.register("x")
    def second() -> None: ...

    assert reg.get("x") is second


def test_the_package_registries_are_registry_instances():
    assert all(isinstance(r, Registry) for r in (SOURCES, DATASETS, ARCHS))
    assert {"onnx", "tfjs", "keras", "timm", "trained"} <= set(list_sources())
    with pytest.raises(ModelLoadError, match="unknown model source 'nope'; known: checkpoint"):
        get_source("nope")
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        DATASETS.get("nope")
    assert ARCHS.get("resnet9").family == "resnet"
