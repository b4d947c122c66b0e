"""``varprop critical-gain``, ``edge-of-chaos`` and ``overflow-depth``: the functions of the same
names on the command line.

Example::

    varprop critical-gain tanh --target-variance 1
    varprop edge-of-chaos tanh --bias-variance 0.05
    varprop overflow-depth linear standard_normal --fan-in 256
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from varprop._util.jsonio import jsonable
from varprop.cli._common import parse_named
from varprop.components.activations import activation as build_activation
from varprop.components.schemes import init_scheme
from varprop.theory.criticality import critical_gain, edge_of_chaos
from varprop.theory.overflow import overflow_depth


def _activation(args: argparse.Namespace):
    name, params = parse_named(args.activation, "activation")
    return build_activation(name, **params)


def run(args: argparse.Namespace) -> int:
    act = _activation(args)
    if args.command == "critical-gain":
        gain = critical_gain(act, target_variance=args.target_variance,
                             bias_variance=args.bias_variance)
        result = {"activation": act.name, "target_variance": args.target_variance,
                  "bias_variance": args.bias_variance, "gain": gain, "sigma_w2": gain * gain}
        text = f"gain {gain:.12g} (sigma_w^2 = {gain * gain:.12g})"
    elif args.command == "edge-of-chaos":
        point = edge_of_chaos(act, args.bias_variance)
        result = dataclasses.asdict(point)
        text = (f"sigma_w^2 {point.sigma_w2:.12g} (gain {point.gain:.12g}), q* {point.q_star:.6g}, "
                f"chi_1 {point.chi:.6g}")
    else:
        init_name, init_params = parse_named(args.init, "init")
        depth = overflow_depth(act, init_scheme(init_name, **init_params), fan_in=args.fan_in,
                               input_variance=args.input_variance,
                               bias_variance=args.bias_variance, dtype=args.dtype,
                               max_depth=args.max_depth, quantile=args.quantile)
        result = {"activation": act.name, "init": args.init, "fan_in": args.fan_in,
                  "dtype": args.dtype, "quantile": args.quantile, "depth": depth}
        text = (f"layer {depth}" if depth is not None else
                f"none within max_depth={args.max_depth}")
    if args.json:
        print(json.dumps(jsonable(result), indent=2, allow_nan=False))
    else:
        print(f"{args.command} {act.name}: {text}")
    return 0
