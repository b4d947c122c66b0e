"""What every derivation document shares: the activations and schemes covered, the shapes of
the Monte Carlo runs, file names, scheme labels and the seeds of the Monte Carlo records.

Everything is deterministic: fixed seeds (a hash of each record's key), fixed budgets, numbers
rounded to 4 significant digits, sorted iteration, no timestamps.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, init_scheme
from varprop.errors import VarpropWarning

__all__ = ["ACTIVATIONS", "SCHEMES", "VERIFY_WIDTH", "VERIFY_DEPTH", "FIGURE_WIDTH", "FIGURE_DEPTH",
           "FIGURE_SCHEMES", "STEADY_WIDTH", "STEADY_DEPTH", "ERROR_TABLE_Q", "GeneratedFile",
           "file_stem", "schemes_for", "repository_root", "default_output_dir"]

Format = Literal["markdown", "latex"]

#: Activations with a document, in index order.
ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "leaky_relu", "tanh", "erf", "sigmoid")

#: Init schemes every document covers (the naive unscaled ones first).
SCHEMES: tuple[str, ...] = ("standard_normal", "uniform", "lecun_normal", "lecun_uniform",
                            "xavier_normal", "xavier_uniform", "he_normal", "he_uniform",
                            "variance_scaling", "orthogonal", "torch_linear_default")

#: Shape of the Monte Carlo verification (width n_0 = n_1 = ... and depth L).
VERIFY_WIDTH = 64
VERIFY_DEPTH = 5
#: Figures: width and depth of the curves, and the schemes drawn.
FIGURE_WIDTH = 64
FIGURE_DEPTH = 20
FIGURE_SCHEMES: tuple[str, ...] = ("lecun_normal", "xavier_uniform", "he_normal")
#: The "steady" table: width and depth of the prediction.
STEADY_WIDTH = 256
STEADY_DEPTH = 30
#: Variances q at which the approximation error table is evaluated.
ERROR_TABLE_Q: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0, 1e4)

_TITLES = {"linear": "Linear (identity)", "relu": "ReLU", "leaky_relu": "Leaky ReLU",
           "tanh": "tanh", "erf": "erf", "sigmoid": "Sigmoid"}

_MODEL = (
    "A network of depth $L$ maps an input $x = a_0$ (zero-mean entries, second moment "
    "`input_variance` $= q_0$) through $z_l = W_l a_{l-1} + b_l$, $a_l = \\phi(z_l)$, "
    "$l = 1..L$.  Widths $n_0$ = `fan_in`, $n_1..n_L$ = `fan_out` (default: `fan_in`), or an "
    "explicit `widths=[n_0, ..., n_L]`.  Weights are drawn i.i.d. from the init scheme, biases "
    "i.i.d. $N(0, \\sigma_b^2)$ (`bias_variance`).  The backward pass starts from "
    "$\\partial\\mathcal L/\\partial z_L$ with i.i.d. zero-mean unit-variance entries, independent "
    "of the forward pass.")


def repository_root() -> Path | None:
    """The source checkout this package runs from: the first folder above this file holding
    ``pyproject.toml`` and ``src/varprop`` (an editable install), else None (an installed wheel)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "varprop").is_dir():
            return parent
    return None


def default_output_dir() -> Path:
    """The repository's ``derivations/`` folder (next to ``src/``), else ``./derivations``."""
    root = repository_root()
    return (root if root is not None else Path.cwd()) / "derivations"


_SAFE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def file_stem(act: Activation | str) -> str:
    """The file name (without suffix) of ``act``'s document: its name when that is a safe file
    name (letters, digits, ``_ . -``; not starting with ``.`` or ``-``), else the name with every
    other run of characters replaced by ``_`` plus 8 hex digits of its CRC-32, so that custom
    expressions (``"x/2"``, ``"abs(x-1)/2"``) give distinct, portable names without a path
    separator."""
    name = resolve_activation(act).name
    if _SAFE_STEM.fullmatch(name) and len(name) <= 100:
        return name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-")[:60] or "activation"
    return f"{slug}-{zlib.crc32(name.encode()):08x}"


def schemes_for(act: Activation | str) -> list[InitScheme]:
    """The schemes of ``act``'s document: :data:`SCHEMES`, plus He with the matching negative
    slope for leaky ReLU."""
    a = resolve_activation(act)
    out = [init_scheme(s) for s in SCHEMES]
    slope = a.params.get("negative_slope")
    if slope:
        out.append(init_scheme("he_normal", negative_slope=float(slope)))  # type: ignore[arg-type]
    return out


def _label(scheme: InitScheme) -> str:
    """``he_normal`` or ``he_normal(negative_slope=0.01)``: the name plus non-default params."""
    defaults = init_scheme(scheme.name).params
    extra = {k: v for k, v in scheme.params.items() if defaults.get(k) != v}
    return scheme.name + ("(" + ", ".join(f"{k}={v!r}" for k, v in extra.items()) + ")" if extra else "")


def _key_seed(key: str) -> int:
    return zlib.crc32(key.encode()) % (2**31)


# ----------------------------------------------------------------------------------------------
# a tiny document model rendered to Markdown or LaTeX


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VarpropWarning)
        with np.errstate(all="ignore"):
            return fn()


@dataclass
class GeneratedFile:
    """A file the generator writes (path relative to the output folder)."""

    path: str
    content: str | bytes  # bytes for binary files (PDF figures)
