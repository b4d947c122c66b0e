"""Record the float bits of the mean-field predictions on a grid, as a JSON fixture.

Run from a checkout (``PYTHONPATH=src python tests/gen_meanfield_fixture.py``) to regenerate
``tests/data/meanfield_bits.json``.  The fixture was recorded from the code *before* the
recursion was rewritten as one walk over layer rules (issue 10); ``tests/test_meanfield.py``
compares today's predictions with it bit for bit, so the rewrite changed no number.

The grid: activations x init schemes (zero-mean, non-zero-mean, orthogonal) x shapes (constant
widths, explicit widths, a huge depth) x bias variances x methods x quantities x ``per_layer``,
plus every per-layer array of :func:`varprop.propagate`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from varprop import init_scheme, predict_variance, propagate

FIXTURE = Path(__file__).parent / "data" / "meanfield_bits.json"

ACTIVATIONS = ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "erf", "gelu", "swish",
               "x**3", "abs(x)", "2*x")
ZERO_MEAN = ("he_normal", "lecun_normal", "xavier_uniform", "orthogonal", "truncated_normal")
NONZERO = ("uniform", "uniform(-0.1,0.3)")
SHAPES = (
    dict(fan_in=16, depth=1),
    dict(fan_in=64, depth=5),
    dict(fan_in=32, fan_out=48, depth=7),
    dict(widths=[10, 30, 20, 20, 20]),
    dict(fan_in=100, depth=300),
)
DEEP = dict(fan_in=128, depth=10**7)
QUANTITIES = ("preactivation", "activation", "activation_second_moment", "gradient",
              "weight_gradient")
METHODS = ("auto", "closed_form", "quadrature")


def scheme_of(name: str):
    if name.startswith("uniform("):
        lo, hi = map(float, name[len("uniform("):-1].split(","))
        return init_scheme("uniform", low=lo, high=hi)
    return init_scheme(name)


def bits(value) -> list[str]:
    """Each float's bits as ``float.hex``; a long array as its length, first and last values and a
    SHA-256 digest of its bytes (the fixture stays small)."""
    arr = np.ascontiguousarray(np.atleast_1d(np.asarray(value, dtype=float)))
    if arr.size <= 8:
        return [float(v).hex() for v in arr]
    digest = hashlib.sha256(arr.tobytes()).hexdigest()[:24]
    return [str(arr.size), float(arr[0]).hex(), float(arr[-1]).hex(), digest]


def call(fn, *args, **kwargs) -> dict:
    """The float bits of ``fn(*args, **kwargs)``, or the error type and warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the fixture records errors too
            return {"error": type(exc).__name__}
    record: dict = {"warnings": sorted({type(w.message).__name__ for w in caught})}
    if hasattr(out, "preact_second"):
        record["fields"] = {name: bits(getattr(out, name)) for name in (
            "preact_mean", "preact_second", "preact_cross", "act_mean", "act_second", "act_cross",
            "grad_second", "delta_second", "weight_grad_second")}
    else:
        record["value"] = bits(out)
    return record


def cases():
    for act, init, shape, b2, method in itertools.product(
            ACTIVATIONS, ZERO_MEAN + NONZERO, SHAPES, (0.0, 0.05), METHODS):
        nonzero = init in NONZERO
        if method != "auto" and (act not in ("relu", "tanh", "erf", "linear")
                                 or shape.get("depth", 0) == 300):
            continue
        if nonzero and (shape.get("depth", 0) == 300 or act in ("gelu", "swish", "abs(x)")):
            continue  # the shifted recursion is slow; a subset suffices
        if init in ("xavier_uniform", "truncated_normal") and act not in ("relu", "tanh"):
            continue
        yield act, init, shape, b2, method
    for act in ("relu", "tanh", "linear"):
        yield act, "he_normal", DEEP, 0.0, "auto"


def key(act, init, shape, b2, method, what) -> str:
    return json.dumps([act, init, shape, b2, method, what], sort_keys=True)


def record_all() -> dict:
    out = {}
    for act, init, shape, b2, method in cases():
        kw = dict(shape, bias_variance=b2, method=method)
        scheme = scheme_of(init)
        for q, per_layer in itertools.product(QUANTITIES, (False, True)):
            if per_layer and shape.get("depth", 0) > 10**6:
                continue
            out[key(act, init, shape, b2, method, [q, per_layer])] = call(
                predict_variance, act, scheme, quantity=q, per_layer=per_layer, **kw)
        if shape.get("depth", 0) <= 10**6:
            out[key(act, init, shape, b2, method, "propagate")] = call(propagate, act, scheme, **kw)
    return out


def main() -> None:
    data = record_all()
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(data)} records -> {FIXTURE}", file=sys.stderr)


if __name__ == "__main__":
    main()
