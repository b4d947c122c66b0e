"""``varprop recommend``: the recommended gain and the trade-off table.

Example::

    varprop recommend tanh --width 512 --depth 20
    varprop recommend relu --width 256 --depth 50 --goal backward --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from varprop._util.jsonio import jsonable
from varprop.cli._common import parse_named
from varprop.components.activations import activation as build_activation
from varprop.theory.recommend import recommend


def run(args: argparse.Namespace) -> int:
    name, params = parse_named(args.activation, "activation")
    rec = recommend(build_activation(name, **params), width=args.width, depth=args.depth,
                    bias_variance=args.bias_variance, goal=args.goal)
    if args.json:
        print(json.dumps(jsonable(dataclasses.asdict(rec)), indent=2, allow_nan=False))
        return 0
    print(f"# {rec.activation}, width {rec.width}, depth {rec.depth}, bias_variance "
          f"{rec.bias_variance:g}, goal {rec.goal}")
    print(f"# recommended gain {rec.gain:.6g}: PyTorch std = gain/sqrt(fan_in) = {rec.std:.6g}; "
          f"Keras VarianceScaling(scale={rec.keras_scale:.6g}, mode='fan_in') (from: {rec.source})")
    if rec.at_bound:
        print("# note: the search ended at the end of its range (the objective still decreases)")
    print(f"{'row':<28}{'gain':>10}{'std':>12}{'q_L/q_1':>14}{'grad ratio':>14}  phase")
    for r in rec.table:
        print(f"{r.name:<28}{r.gain:>10.5g}{r.std:>12.5g}{r.forward_ratio:>14.5g}"
              f"{r.backward_ratio:>14.5g}  {r.phase}")
    return 0
