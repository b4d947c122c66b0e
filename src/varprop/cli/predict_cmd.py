"""``varprop predict``: print the per-layer prediction table.

Example::

    varprop predict relu he_normal --fan-in 256 --depth 5
    varprop predict tanh "normal:std=0.0625" --fan-in 256 --depth 100 --quantity gradient --json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from varprop._util.jsonio import jsonable
from varprop._util.validation import check_choice, fail
from varprop.cli._common import parse_named
from varprop.components.activations import activation as build_activation
from varprop.components.schemes import init_scheme
from varprop.network.quantities import NETWORK_QUANTITIES
from varprop.theory.predict import METHODS, predict_variance


def run(args: argparse.Namespace) -> int:
    check_choice("method", args.method, METHODS)
    act_name, act_params = parse_named(args.activation, "activation")
    init_name, init_params = parse_named(args.init, "init")
    act = build_activation(act_name, **act_params)
    scheme = init_scheme(init_name, **init_params)
    widths = args.widths
    if widths is not None and args.depth is not None and args.depth != len(widths) - 1:
        raise fail("depth", args.depth, f"len(widths) - 1 = {len(widths) - 1} when --widths is "
                   "given (or omit --depth)")
    quantities = args.quantity or ["preactivation", "activation", "gradient"]
    per_position = [q in NETWORK_QUANTITIES for q in quantities]
    if any(per_position) and not all(per_position):
        raise fail("quantity", ",".join(quantities), "MLP quantities (one row per dense layer) or "
                   f"{' / '.join(NETWORK_QUANTITIES)} (one row per layer position: each dense "
                   "layer and each activation), not both in one table")
    row = "position" if all(per_position) else "layer"
    depth = (len(widths) - 1) if widths else (1 if args.depth is None else args.depth)
    shape = dict(fan_in=args.fan_in, fan_out=args.fan_out, widths=widths, depth=depth)
    table = {
        q: np.asarray(predict_variance(act, scheme, **shape, input_variance=args.input_variance,
                                       bias_variance=args.bias_variance, quantity=q,
                                       method=args.method, per_layer=True))
        for q in quantities
    }
    depth = len(next(iter(table.values())))
    if args.json:
        config = {"activation": repr(act), "init": repr(scheme), "method": args.method, **shape,
                  "input_variance": args.input_variance, "bias_variance": args.bias_variance}
        rows = list(range(depth)) if row == "position" else list(range(1, depth + 1))
        print(json.dumps(jsonable({"config": config, f"{row}s": rows, "values": table}), indent=2,
                         allow_nan=False))
        return 0
    print(f"# {act!r} with {scheme!r}, method={args.method}")
    header = [row] + list(quantities)
    w = len(row)
    print("  ".join(f"{h:>24}" if i else f"{h:>{w}}" for i, h in enumerate(header)))
    for l in range(depth):
        label = l if row == "position" else l + 1
        cells = [f"{label:>{w}}"] + [f"{table[q][l]:>24.10g}" for q in quantities]
        print("  ".join(cells))
    return 0
