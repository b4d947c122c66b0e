"""``varprop._util.lazy.lazy_module``: a stand-in that imports its module at first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from varprop._util.lazy import lazy_module


def test_already_imported_module_is_returned_itself():
    assert lazy_module("json") is sys.modules["json"]


def test_stand_in_imports_at_first_attribute_access():
    # in a fresh interpreter: binding does not import, the first attribute access does
    code = ("import sys\nfrom varprop._util.lazy import lazy_module\n"
            "m = lazy_module('fractions')\nassert 'fractions' not in sys.modules, 'eager'\n"
            "assert m.Fraction(1, 2) + m.Fraction(1, 2) == 1\n"
            "assert 'fractions' in sys.modules\nprint(repr(m))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "lazy module 'fractions'" in proc.stdout


def test_missing_module_fails_at_first_use():
    missing = lazy_module("varprop_no_such_module_xyz")
    with pytest.raises(ImportError):
        missing.anything
