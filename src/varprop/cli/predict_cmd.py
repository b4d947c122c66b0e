"""``varprop predict``: print the per-layer prediction table.

The activation, the init, ``--fan-in``, ``--depth`` and ``--quantity`` take comma lists (as in
``varprop check``); the table has one row per combination (activation x init x fan-in x depth) and
layer.  A single combination prints the plain per-layer table (and its JSON object); ``--csv``
always prints the long table.

Example::

    varprop predict relu he_normal --fan-in 256 --depth 5
    varprop predict relu,tanh he_normal,lecun_normal --fan-in 64,256 --depth 5 --csv
    varprop predict tanh "normal:std=0.0625" --fan-in 256 --depth 100 --quantity gradient --json
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from typing import Any

import numpy as np

from varprop._util.jsonio import jsonable
from varprop._util.validation import check_choice, fail
from varprop.cli._common import parse_named
from varprop.components.activations import activation as build_activation
from varprop.components.schemes import init_scheme
from varprop.network.quantities import NETWORK_QUANTITIES, QUANTITIES
from varprop.theory.predict import METHODS, predict_variance

#: the columns that name a combination in the long table (``--csv`` and several combinations)
KEYS = ("activation", "init", "fan_in", "depth")


def _quantities(args: argparse.Namespace) -> tuple[list[str], str]:
    """The quantities asked for and the row label (``layer`` or ``position``)."""
    quantities = args.quantity or ["preactivation", "activation", "gradient"]
    for q in quantities:
        check_choice("quantity", q, QUANTITIES)
    per_position = [q in NETWORK_QUANTITIES for q in quantities]
    if any(per_position) and not all(per_position):
        raise fail("quantity", ",".join(quantities), "MLP quantities (one row per dense layer) or "
                   f"{' / '.join(NETWORK_QUANTITIES)} (one row per layer position: each dense "
                   "layer and each activation), not both in one table")
    return quantities, ("position" if all(per_position) else "layer")


def _predict_one(args: argparse.Namespace, act_text: str, init_text: str, fan_in: int | None,
                 depth: int | None, quantities: list[str]) -> dict[str, Any]:
    """One combination: its config, its resolved objects and its per-layer table."""
    act_name, act_params = parse_named(act_text, "activation")
    init_name, init_params = parse_named(init_text, "init")
    act = build_activation(act_name, **act_params)
    scheme = init_scheme(init_name, **init_params)
    widths = args.widths
    if widths is not None and depth is not None and depth != len(widths) - 1:
        raise fail("depth", depth, f"len(widths) - 1 = {len(widths) - 1} when --widths is "
                   "given (or omit --depth)")
    depth = (len(widths) - 1) if widths else (1 if depth is None else depth)
    shape = dict(fan_in=fan_in, fan_out=args.fan_out, widths=widths, depth=depth)
    table = {
        q: np.asarray(predict_variance(act, scheme, **shape, input_variance=args.input_variance,
                                       bias_variance=args.bias_variance, quantity=q,
                                       method=args.method, per_layer=True))
        for q in quantities
    }
    return {"act": act, "scheme": scheme, "shape": shape, "table": table,
            "key": (act_text, init_text, fan_in if widths is None else widths[0], depth)}


def _labels(row: str, n: int) -> list[int]:
    return list(range(n)) if row == "position" else list(range(1, n + 1))


def run(args: argparse.Namespace) -> int:
    check_choice("method", args.method, METHODS)
    quantities, row = _quantities(args)
    combos = list(itertools.product(args.activation, args.init, args.fan_in or [None],
                                    args.depth or [None]))
    results = [_predict_one(args, *combo, quantities) for combo in combos]
    if args.csv:
        _print_csv(results, quantities, row)
    elif len(results) == 1:
        _print_single(args, results[0], quantities, row)
    elif args.json:
        print(json.dumps(jsonable({"results": [_json_object(args, r, row) for r in results]}),
                         indent=2, allow_nan=False))
    else:
        _print_long(results, quantities, row)
    return 0


def _json_object(args: argparse.Namespace, r: dict[str, Any], row: str) -> dict[str, Any]:
    config = {"activation": repr(r["act"]), "init": repr(r["scheme"]), "method": args.method,
              **r["shape"], "input_variance": args.input_variance,
              "bias_variance": args.bias_variance}
    n = len(next(iter(r["table"].values())))
    return {"config": config, f"{row}s": _labels(row, n), "values": r["table"]}


def _long_rows(results: list[dict[str, Any]], quantities: list[str], row: str):
    for r in results:
        n = len(next(iter(r["table"].values())))
        for i, label in enumerate(_labels(row, n)):
            yield list(r["key"]) + [label] + [float(r["table"][q][i]) for q in quantities]


def _print_csv(results: list[dict[str, Any]], quantities: list[str], row: str) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(list(KEYS) + [row] + quantities)
    for values in _long_rows(results, quantities, row):
        writer.writerow(values[:-len(quantities)] + [repr(v) for v in values[-len(quantities):]])


def _print_long(results: list[dict[str, Any]], quantities: list[str], row: str) -> None:
    names = [str(r["key"][k]) for r in results for k in (0, 1)]
    w = max(len(n) for n in names + ["activation", "init"])
    header = [f"{k:<{w}}" for k in KEYS[:2]] + [f"{k:>7}" for k in KEYS[2:]] + \
             [f"{row:>8}"] + [f"{q:>24}" for q in quantities]
    print("  ".join(header))
    for values in _long_rows(results, quantities, row):
        act, init, fan_in, depth, label, *cells = values
        print("  ".join([f"{act:<{w}}", f"{init:<{w}}", f"{fan_in!s:>7}", f"{depth:>7}",
                         f"{label:>8}"] + [f"{c:>24.10g}" for c in cells]))


def _print_single(args: argparse.Namespace, r: dict[str, Any], quantities: list[str],
                  row: str) -> None:
    if args.json:
        print(json.dumps(jsonable(_json_object(args, r, row)), indent=2, allow_nan=False))
        return
    print(f"# {r['act']!r} with {r['scheme']!r}, method={args.method}")
    print("  ".join(f"{h:>24}" if i else f"{h:>{len(row)}}"
                    for i, h in enumerate([row] + quantities)))
    table = r["table"]
    for i, label in enumerate(_labels(row, len(next(iter(table.values()))))):
        print("  ".join([f"{label:>{len(row)}}"] + [f"{table[q][i]:>24.10g}" for q in quantities]))
