r"""The worked architectures of ``derivations/architectures.md``: each a few variants of one
network (:class:`Variant`), drawn against layer position or, for the recurrent network, against
the number of time steps, with a computed paragraph (:attr:`Architecture.facts`) whose every
number comes from the predictions of that variant.

Widths are small (32) so that the Monte Carlo of the whole page stays within its budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from varprop.components.schemes import init_scheme
from varprop.documents.store import fmt
from varprop.network.model import Network

__all__ = ["Variant", "VariantResult", "Architecture", "ARCHITECTURES", "WIDTH", "BLOCKS",
           "RNN_STEPS"]

WIDTH = 32
#: Blocks of the residual, LayerNorm and BatchNorm networks.
BLOCKS = 10
#: Sequence lengths of the recurrent figure (the longest is the one verified).
RNN_STEPS = (1, 2, 5, 10, 20, 50)


@dataclass(frozen=True)
class Variant:
    """``build(L, T)`` makes the network from the layer module ``L`` (``T``: the number of time
    steps for a recurrent architecture, else ``None``)."""

    key: str
    label: str
    build: Callable[[ModuleType, int | None], Network]


@dataclass(frozen=True)
class VariantResult:
    """What a variant's paragraph and figure are computed from: per x, the predicted forward
    (output at the last position) and backward (output gradient at position 1) values."""

    variant: Variant
    x: tuple[int, ...]
    forward: np.ndarray
    backward: np.ndarray
    error: str = ""


@dataclass(frozen=True)
class Architecture:
    key: str
    title: str
    description: str
    variants: tuple[Variant, ...]
    facts: Callable[[Sequence[VariantResult]], str]
    steps: tuple[int, ...] | None = None  # x axis: time steps (else layer positions)


def _growth(r: VariantResult) -> str:
    f, g = r.forward, r.backward
    return (f"{r.variant.label}: $E y^2$ from {fmt(f[0])} (position 1) to {fmt(f[-1])} (position "
            f"{len(f)}), $E(\\partial\\mathcal L/\\partial y)^2$ from {fmt(g[-1])} at the output "
            f"to {fmt(g[0])} at position 1.")


def _ok(results: Sequence[VariantResult]) -> list[VariantResult]:
    return [r for r in results if not r.error]


# --- residual MLP --------------------------------------------------------------------------------

def _residual(scale: float) -> Callable[[ModuleType, int | None], Network]:
    def build(L: ModuleType, _: int | None) -> Network:
        block = L.Residual([L.Nonlinearity("relu"), L.Dense(WIDTH, init="he_normal")], scale=scale)
        return Network([L.Dense(WIDTH, init="he_normal")] + [block] * BLOCKS, input_shape=(WIDTH,))
    return build


def _residual_facts(results: Sequence[VariantResult]) -> str:
    parts = []
    for r in _ok(results):
        s = _RES_SCALES[r.variant.key]
        ratio = float(r.forward[-1] / r.forward[0])
        parts.append(f"{r.variant.label}: over {BLOCKS} blocks $E y^2$ grows by {fmt(ratio)} "
                     f"(the hand rule $(1+s^2)^{{{BLOCKS}}}$ = {fmt((1 + s * s) ** BLOCKS)}), "
                     f"{fmt(ratio ** (1 / BLOCKS))} per block; the gradient at position 1 is "
                     f"{fmt(r.backward[0])}.")
    return "  ".join(parts)


_RES_SCALES = {"s1": 1.0, "sinv": 1.0 / math.sqrt(BLOCKS), "s0": 0.0}


# --- pre-LN vs post-LN ---------------------------------------------------------------------------

def _pre_ln(L: ModuleType, _: int | None) -> Network:
    block = L.Residual([L.LayerNorm(), L.Dense(WIDTH, init="he_normal"), L.Nonlinearity("relu"),
                        L.Dense(WIDTH, init="he_normal")])
    return Network([L.Dense(WIDTH)] + [block] * BLOCKS, input_shape=(WIDTH,))


def _post_ln(L: ModuleType, _: int | None) -> Network:
    block = [L.Residual([L.Dense(WIDTH, init="he_normal"), L.Nonlinearity("relu"),
                         L.Dense(WIDTH, init="he_normal")]), L.LayerNorm()]
    return Network([L.Dense(WIDTH)] + block * BLOCKS, input_shape=(WIDTH,))


def _ln_facts(results: Sequence[VariantResult]) -> str:
    parts = [_growth(r) for r in _ok(results)]
    ok = _ok(results)
    if len(ok) == 2:
        parts.append(f"The pre-LN stream grows (ratio of last to first {fmt(float(ok[0].forward[-1] / ok[0].forward[0]))}), "
                     f"the post-LN one is renormalised after every block (ratio "
                     f"{fmt(float(ok[1].forward[-1] / ok[1].forward[0]))}).")
    return "  ".join(parts)


# --- small CNN -----------------------------------------------------------------------------------

def _cnn(pool: str) -> Callable[[ModuleType, int | None], Network]:
    def build(L: ModuleType, _: int | None) -> Network:
        make = L.AvgPool if pool == "avg" else L.MaxPool
        return Network([L.Conv(8, 3, padding="same", init="he_normal"), L.Nonlinearity("relu"),
                        make(2), L.Conv(8, 3, padding="same", init="he_normal"),
                        L.Nonlinearity("relu"), L.Flatten(), L.Dense(10, init="lecun_normal")],
                       input_shape=(3, 8, 8))
    return build


def _cnn_facts(results: Sequence[VariantResult]) -> str:
    return "  ".join(_growth(r) for r in _ok(results))


# --- batch-normalised MLP ------------------------------------------------------------------------

def _bn(batch: int) -> Callable[[ModuleType, int | None], Network]:
    def build(L: ModuleType, _: int | None) -> Network:
        block = [L.Dense(WIDTH, init="he_normal"), L.BatchNorm(mode="train", batch_size=batch),
                 L.Nonlinearity("relu")]
        return Network(block * BLOCKS, input_shape=(WIDTH,))
    return build


def _bn_facts(results: Sequence[VariantResult]) -> str:
    parts = []
    for r in _ok(results):
        g = r.backward
        per_block = float(g[0] / g[-1]) ** (1 / BLOCKS) if g[-1] > 0 else math.nan
        parts.append(f"{r.variant.label}: the gradient at the input is {fmt(g[0])}, "
                     f"{fmt(float(g[0] / g[-1]))} times the one at the output, "
                     f"a geometric mean of {fmt(per_block)} per block over the {BLOCKS} blocks "
                     "(the first and last blocks included), while the forward second moment "
                     "after the "
                     f"last block stays {fmt(r.forward[-1])}.")
    return "  ".join(parts)


# --- recurrent network ---------------------------------------------------------------------------

def _rnn(gain: float) -> Callable[[ModuleType, int | None], Network]:
    def build(L: ModuleType, steps: int | None) -> Network:
        t = int(steps or 1)
        init = init_scheme("variance_scaling", scale=gain * gain, mode="fan_in",
                           distribution="normal")
        return Network([L.Nonlinearity("linear"),
                        L.Recurrent(WIDTH, "tanh", steps=t, init=init, return_sequences=False)],
                       input_shape=(t, WIDTH))
    return build


def _rnn_facts(results: Sequence[VariantResult]) -> str:
    parts = []
    for r in _ok(results):
        f, g = r.forward, r.backward
        parts.append(f"{r.variant.label}: $E h_T^2$ = {fmt(f[0])} after {r.x[0]} step, "
                     f"{fmt(f[-1])} after {r.x[-1]}; the input gradient (mean over the steps) "
                     f"{fmt(g[0])} at $T$ = {r.x[0]} and {fmt(g[-1])} at $T$ = {r.x[-1]}.")
    return "  ".join(parts)


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        "residual_mlp", "Residual MLP: scale 1, $1/\\sqrt{L}$, 0",
        f"A He-initialised input layer, then {BLOCKS} blocks $x + s\\,W\\,\\mathrm{{relu}}(x)$ "
        f"(He), width {WIDTH}.  At infinite width plain blocks ($s = 1$) double the second "
        "moment per block, "
        f"depth-scaled ones ($s = 1/\\sqrt{{{BLOCKS}}}$) grow it by a bounded factor $(1+1/L)^L "
        "\\le e$, SkipInit/ReZero ($s = 0$) keep it.",
        (Variant("s1", "scale 1", _residual(1.0)),
         Variant("sinv", f"scale 1/sqrt({BLOCKS})", _residual(1.0 / math.sqrt(BLOCKS))),
         Variant("s0", "scale 0", _residual(0.0))),
        _residual_facts),
    Architecture(
        "pre_post_ln", "Pre-LN vs post-LN residual blocks",
        f"{BLOCKS} blocks of width {WIDTH}: pre-LN $x + f(\\mathrm{{LN}}(x))$ and post-LN "
        "$\\mathrm{LN}(x + f(x))$, $f$ = Dense-ReLU-Dense (He).",
        (Variant("pre", "pre-LN", _pre_ln), Variant("post", "post-LN", _post_ln)),
        _ln_facts),
    Architecture(
        "small_cnn", "A small CNN: conv, ReLU, pooling, dense head",
        "Input $(3, 8, 8)$; Conv(8, 3, same, He), ReLU, pooling 2 (average or max), Conv(8, 3, "
        "same, He), ReLU, Flatten, Dense(10) (LeCun).  Zero padding lowers the edge positions' "
        "second moment; pooling mixes positions, so the engine tracks their covariance.",
        (Variant("avg", "average pooling", _cnn("avg")), Variant("max", "max pooling", _cnn("max"))),
        _cnn_facts),
    Architecture(
        "batchnorm_mlp", "Batch-normalised MLP (train mode): gradient growth",
        f"{BLOCKS} blocks Dense (He) - BatchNorm (train) - ReLU, width {WIDTH}, batch sizes 4, 8, "
        "16.  Batch statistics couple the samples; backward the gradient grows with depth, "
        "at a rate that depends on the batch size (Yang et al. 2019).",
        (Variant("b4", "B = 4", _bn(4)), Variant("b8", "B = 8", _bn(8)),
         Variant("b16", "B = 16", _bn(16))),
        _bn_facts),
    Architecture(
        "rnn", "A tanh RNN over 50 steps: vanishing vs exploding through time",
        f"One tanh `Recurrent` layer of width {WIDTH} (weights $N(0, g^2/n)$, inputs through "
        "LeCun-normal input weights) reading $T$ steps, returning the last state; $g$ = 0.5, "
        "1, 2.  Forward: $E h_T^2$; backward: the loss gradient at the input sequence, averaged "
        "over the $T$ steps.",
        (Variant("g0.5", "g = 0.5", _rnn(0.5)), Variant("g1", "g = 1", _rnn(1.0)),
         Variant("g2", "g = 2", _rnn(2.0))),
        _rnn_facts, steps=RNN_STEPS),
)
