"""The argument parsers of the subcommands.

Parsing needs nothing heavy: this module imports argparse, the argument helpers and the quantity
vocabulary only, so that ``varprop --help`` and usage errors answer at once; the module that runs
a command (NumPy, SciPy, SymPy, the documents) is imported after parsing, and only for that
command (:data:`varprop.cli.COMMANDS`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from varprop._util.lazy import lazy_module
from varprop.cli._common import MAX_DEPTH, comma_list, int_list, integer, probability
from varprop.network.quantities import QUANTITIES

#: pathlib (with urllib.parse, ~4 ms), imported when ``--out`` is given (:mod:`varprop._util.lazy`)
pathlib = lazy_module("pathlib")

__all__ = ["PARSERS", "MAX_WORKERS", "MIN_BUDGET"]

#: Largest ``--workers`` (a process pool forks them all at once).
MAX_WORKERS = 256
#: Smallest ``--budget`` (the checker's sequential test needs 8 replicates).
MIN_BUDGET = 8


def _path(text: str) -> object:
    """``--out``'s type: a :class:`pathlib.Path`."""
    return pathlib.Path(text)


def _predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict per-layer variances",
                       description="Predict per-layer variances (forward and backward).  The "
                                   "activation, the init, --fan-in, --depth and --quantity take "
                                   "comma lists: one table row per combination and layer.")
    p.add_argument("activation", type=comma_list,
                   help="activation name(s), e.g. relu, relu,tanh or leaky_relu:negative_slope=0.2")
    p.add_argument("init", type=comma_list,
                   help="init scheme(s), e.g. he_normal or he_normal:mode=fan_out,lecun_normal")
    p.add_argument("--fan-in", type=int_list(), action="extend", default=None,
                   help="input width(s) n_0, e.g. 64 or 64,256")
    p.add_argument("--fan-out", type=integer(), default=None,
                   help="hidden width n_1..n_L (default fan-in)")
    p.add_argument("--widths", type=int_list(at_least=2), default=None,
                   help="comma list n_0,...,n_L instead of fan-in/out/depth")
    p.add_argument("--depth", type=int_list(1, MAX_DEPTH), action="extend", default=None,
                   help="number(s) of layers L (default 1, or len(widths) - 1), e.g. 5 or 1,5,20")
    p.add_argument("--input-variance", type=float, default=1.0,
                   help="second moment of the zero-mean inputs (default 1)")
    p.add_argument("--bias-variance", type=float, default=0.0,
                   help="variance of the N(0, .) biases (default 0)")
    p.add_argument("--quantity", type=comma_list, action="extend", default=None,
                   help=f"quantity(ies) among {', '.join(QUANTITIES)}, repeatable or a comma "
                        "list (default preactivation,activation,gradient)")
    p.add_argument("--method", default="auto",
                   help="how the Gaussian moments are computed (default auto; the choices of "
                        "predict_variance's method, checked when the command runs)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument("--csv", action="store_true",
                     help="CSV: one row per combination and layer (header line first)")


def _check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="Monte-Carlo-check predictions over activations x schemes x widths x depths",
        description="Check the library's variance predictions against simulation with calibrated "
                    "verdicts (confirmed / refuted / inconclusive); Holm family-wise control over "
                    "the matrix.  Filters take repeated options or comma lists.")
    p.add_argument("--activation", type=comma_list, action="extend", default=None,
                   help="activation(s), e.g. relu,tanh (default: all)")
    p.add_argument("--init", type=comma_list, action="extend", default=None,
                   help="init scheme(s) (default: the named zero-mean schemes)")
    p.add_argument("--fan-in", type=int_list(), action="extend", default=None,
                   help="width(s) (default 64,256; --quick: 64)")
    p.add_argument("--depth", type=int_list(1, MAX_DEPTH), action="extend", default=None,
                   help="depth(s) (default 1,5; --quick: 3)")
    p.add_argument("--quantity", type=comma_list, action="extend", default=None,
                   help=f"quantity(ies) among {', '.join(QUANTITIES)} "
                        "(default preactivation,activation,gradient)")
    p.add_argument("--rtol", type=probability("rtol"), default=0.05,
                   help="relative margin for 'confirmed'")
    p.add_argument("--alpha", type=probability("alpha"), default=0.01,
                   help="family-wise error level")
    p.add_argument("--budget", type=integer(MIN_BUDGET), default=None,
                   help=f"max replicates per check (at least {MIN_BUDGET})")
    p.add_argument("--quick", action="store_true", help="a small matrix and budget")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--workers", type=integer(1, MAX_WORKERS), default=1,
                   help="parallel processes (results do not depend on it)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster (distributed.Client(ADDRESS).get_executor())")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument("--csv", action="store_true",
                     help="CSV: one row per configuration (header line first)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _derive(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "derive", help="write derivation documents (Markdown/LaTeX) with Monte Carlo verdicts",
        description="Write one document per activation covering every init scheme (or the "
                    "schemes given), the index derivations/README.md and the extra pages the "
                    "source checkout lists (pyproject.toml [tool.varprop] derive-pages); --check "
                    "compares the committed files with what the code "
                    "writes now.")
    p.add_argument("activation", nargs="?", help="activation name, e.g. tanh or "
                   "leaky_relu:negative_slope=0.2 (omit with --all)")
    p.add_argument("init", nargs="*", help="init schemes (default: every scheme)")
    p.add_argument("--all", action="store_true", dest="all_",
                   help="every activation, the index, the checkout's extra pages and "
                        "montecarlo.json")
    p.add_argument("--out", type=_path, default=None,
                   help="output folder (default: the checkout's derivations/ when run from a "
                        "source checkout, else ./derivations)")
    p.add_argument("--format", choices=("markdown", "latex"), default="markdown")
    p.add_argument("--quick", action="store_true",
                   help="small Monte Carlo budget for drafts (under a minute)")
    p.add_argument("--check", action="store_true",
                   help="do not write: exit 1 if the files in --out differ from what the code "
                        "writes now (with --all)")
    p.add_argument("--reuse-montecarlo", action="store_true",
                   help="with --check: re-render from the committed montecarlo.json and re-run "
                        "only a sample of its simulations (fast); with --all: re-render after a "
                        "text-only change, simulating only what montecarlo.json lacks")
    p.add_argument("--spot-check", type=int, default=2, metavar="K",
                   help="with --reuse-montecarlo: simulations to re-run (default 2)")
    p.add_argument("--no-figures", action="store_true", help="skip the matplotlib figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=integer(), default=None, metavar="N",
                   help="with --all: build the folder's parts in N processes (default: the "
                        "cores available); the files do not depend on N")


def _recommend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend", help="the weight std (gain) that keeps signals/gradients steady over a depth",
        description="Recommend the gain g (weights N(0, g^2/width)) minimising the forward ratio "
                    "q_L/q_1, the backward ratio, or the worse of the two (in |log|), with the "
                    "trade-off table (variance-preserving gain, edge of chaos, framework "
                    "defaults); --plot draws the ratios over depth.")
    p.add_argument("activation", help="activation name, e.g. tanh")
    p.add_argument("--width", type=integer(), required=True, help="fan-in = fan-out n")
    p.add_argument("--depth", type=integer(2, MAX_DEPTH), required=True, help="layers L (>= 2)")
    p.add_argument("--bias-variance", type=float, default=0.0, help="sigma_b^2 (default 0)")
    p.add_argument("--goal", choices=("forward", "backward", "both"), default="both")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", nargs="?", const="", default=None, metavar="PATH",
                   help="also draw the ratios over depth (.svg or .pdf; default "
                        "recommend-ACTIVATION-wN-dL.svg; needs matplotlib, the 'plot' extra)")


def _critical_gain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("critical-gain", help="the gain making a variance a fixed point",
                       description="The gain g with target_variance a fixed point of "
                                   "q = g^2 E phi(z)^2 + sigma_b^2 (varprop.critical_gain).")
    p.add_argument("activation", help="activation name, e.g. tanh")
    p.add_argument("--target-variance", type=float, default=1.0, help="q* (default 1)")
    p.add_argument("--bias-variance", type=float, default=0.0, help="sigma_b^2 (default 0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _edge_of_chaos(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edge-of-chaos", help="the critical weight variance (chi_1 = 1)",
                       description="The sigma_w^2 with chi_1 = sigma_w^2 E phi'(z)^2 = 1 at the "
                                   "fixed point (varprop.edge_of_chaos).")
    p.add_argument("activation", help="activation name, e.g. tanh")
    p.add_argument("--bias-variance", type=float, default=0.0, help="sigma_b^2 (default 0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _overflow_depth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("overflow-depth", help="the first layer whose values overflow a dtype",
                       description="The median (or --quantile) first layer at which values "
                                   "overflow --dtype (varprop.overflow_depth).")
    p.add_argument("activation", help="activation name, e.g. linear")
    p.add_argument("init", help="init scheme, e.g. standard_normal")
    p.add_argument("--fan-in", type=integer(), required=True, help="width n")
    p.add_argument("--input-variance", type=float, default=1.0)
    p.add_argument("--bias-variance", type=float, default=0.0)
    p.add_argument("--dtype", default="float32", help="float16, float32 or float64")
    p.add_argument("--max-depth", type=integer(1, MAX_DEPTH), default=1000)
    p.add_argument("--quantile", type=probability("quantile"), default=0.5)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the activations, init schemes and aliases",
                       description="List the activations and init schemes (varprop's own and "
                                   "the framework-qualified ones) with their parameters, "
                                   "defaults and aliases.")
    p.add_argument("what", nargs="?", default="all", choices=("all", "activations", "inits"),
                   help="what to list (default all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit", help="audit a PyTorch model: per-layer predictions vs re-initialisations",
        description="Audit a PyTorch model at initialisation (varprop.torch.audit): per site the "
                    "predicted and measured second moment of its output and of the gradient, "
                    "over re-initialisations, with verdicts.  Exit 1 if any row is refuted.")
    p.add_argument("factory", metavar="PACKAGE.MODULE:FACTORY",
                   help="a callable returning the torch.nn.Module, e.g. mypackage.models:make_net "
                        "(imported with importlib; the current directory is on the path)")
    p.add_argument("--input-shape", type=int_list(), required=True,
                   help="the example batch's shape, e.g. 8,3,64,64")
    p.add_argument("--input-kind", default="normal", metavar="KIND",
                   help="normal (torch.randn, the default) or tokens:VOCAB (integer ids drawn "
                        "uniformly from 0..VOCAB-1, for a model that starts with an embedding)")
    p.add_argument("--replicates", type=integer(4, 100_000), default=32,
                   help="re-initialisations (default 32)")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--unsupported", choices=("error", "measure"), default="error",
                   help="unmapped modules: error (default) or measure and pass them through")
    p.add_argument("--no-backward", action="store_true", help="forward pass only")
    p.add_argument("--json", action="store_true", help="machine-readable output")


#: subcommand -> the function that adds its parser (in the order ``--help`` lists them)
PARSERS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "predict": _predict, "check": _check, "derive": _derive,
    "recommend": _recommend, "critical-gain": _critical_gain, "edge-of-chaos": _edge_of_chaos,
    "overflow-depth": _overflow_depth, "list": _list, "audit": _audit}
