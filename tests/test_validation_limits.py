"""Huge numbers at the public boundary: varprop errors, never OverflowError or MemoryError."""

from __future__ import annotations

import pytest

import varprop
from varprop.errors import InvalidArgument

HUGE = 10**400  # a 401-digit integer: float(HUGE) raises OverflowError


@pytest.mark.parametrize("kwargs", [
    dict(fan_in=HUGE), dict(fan_in=64, fan_out=HUGE), dict(widths=[16, HUGE]),
    dict(fan_in=2**53 + 1), dict(fan_in=64, input_variance=HUGE), dict(fan_in=64, bias_variance=-HUGE),
])
def test_predict_refuses_numbers_beyond_the_float_range(kwargs: dict) -> None:
    with pytest.raises(InvalidArgument) as info:
        varprop.predict_variance("relu", "he_normal", **kwargs)
    bad = [k for k, v in kwargs.items() if v != 64] if "widths" not in kwargs else ["widths[1]"]
    assert str(info.value).startswith(f"{bad[0]}=")  # names the argument


@pytest.mark.parametrize("kwargs", [dict(fan_in=HUGE), dict(fan_in=64, depth=10**10)])
def test_simulate_refuses_before_allocating(kwargs: dict) -> None:
    with pytest.raises(InvalidArgument):
        varprop.simulate("relu", "he_normal", replicates=4, **kwargs)


def test_the_largest_width_still_predicts() -> None:
    # relu/he_normal preserves q = 2 exactly whatever the width
    assert varprop.predict_variance("relu", "he_normal", fan_in=2**53, depth=3,
                                    quantity="preactivation") == 2.0
