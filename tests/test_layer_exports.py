"""The layer types and modules of ``varprop.network.layers``, exported at first access."""

import importlib
import subprocess
import sys

import pytest

import varprop.layers
import varprop.network.layers as layers


def test_every_exported_layer_type_is_the_class_of_its_module():
    for name in layers.__all__:
        cls = getattr(layers, name)
        assert cls is getattr(importlib.import_module(cls.__module__), name)
        assert getattr(varprop.layers, name) is cls


def test_the_package_modules_are_attributes_before_any_import_of_them():
    code = ("import varprop.network.layers as L, sys; "
            "assert 'varprop.network.layers.spatial' not in sys.modules; "
            "print(L.spatial.__name__, L.conv.Conv.__name__, 'spatial' in dir(L), 'importlib' in dir(L))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["varprop.network.layers.spatial", "Conv", "True", "False"]


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="Dens"):
        layers.Dens  # noqa: B018


def test_star_import_gives_the_public_layer_types():
    namespace: dict[str, object] = {}
    exec("from varprop.network.layers import *", namespace)  # noqa: S102 (a fixed import statement)
    assert {k for k in namespace if not k.startswith("__")} == set(layers.__all__)
