r"""Which law a PyTorch weight tensor was drawn from: init recognition for :mod:`varprop.torch`.

A model's weights are read as they are.  Each candidate law below is evaluated at the fans
PyTorch computes (``torch.nn.init._calculate_fan_in_and_fan_out``: a ``(out, in, *kernel)``
tensor has :math:`n_{in} = \text{in}\prod k`, :math:`n_{out} = \text{out}\prod k`) and checked
on the tensor with :func:`~varprop.checking.initializers.check_initializer` (mean, variance and
distribution tests, Holm at level ``ALPHA``), in this order:

1. PyTorch's module default ``kaiming_uniform_(a=sqrt(5))``:
   :math:`U(\pm 1/\sqrt{n_{in}})` (``torch:default``; ``nn.RNN``'s default
   :math:`U(\pm 1/\sqrt{\text{hidden}})` for its matrices);
2. ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (torchvision's and Hugging Face's
   ResNet init), ``kaiming_normal_``/``kaiming_uniform_`` with ``mode="fan_in"`` and the ReLU
   gain;
3. ``xavier_normal_``, ``xavier_uniform_`` (gain 1);
4. ``normal_(0, std)`` and ``trunc_normal_(std, a=-2 std, b=2 std)`` at the tensor's own standard
   deviation rounded to two significant digits (``std=0.02`` is the ``initializer_range`` of
   ``transformers`` models);
5. ``orthogonal_(gain)`` (a matrix; gain from the tensor's norm, rounded likewise).

Only candidates whose variance is within ``PREFILTER`` (relative) of the tensor's sample variance
are tested; an i.i.d. candidate on a tensor of more than ``MAX_CHECKED`` entries is checked on
that many of its entries drawn at random (fixed seed), against the law at the layer's fans.
The first ``confirmed`` one is the recognised law; failing that, the first one not refuted (a
small tensor cannot confirm a variance to :math:`\pm 5\%`: the note says so); failing that,
the tensor's own moments: a zero-mean normal with the tensor's variance (``"tensor moments"``;
a non-zero sample mean is ignored and said so).  A mean that is significant
(:math:`|\bar w| > 6` standard errors) and not negligible (:math:`n_{in}\bar w^2 > 0.01\,
s^2`) raises a :class:`~varprop.errors.VarpropError`: the traced network's layers assume
zero-mean weights.

**Several draws.**  One small tensor (an ``nn.Linear(8, 16)`` has 128 entries) tells its law
poorly: a candidate test has little power, and a fallback variance read from one draw is off by
:math:`\pm\sqrt{2/n}` in every replicate alike.  Inside :func:`pooled_draws` (which
:func:`~varprop.torch.trace.trace_model` enters when given ``draws=``), :func:`recognise` pools
the entries of the parameter's re-initialised copies with its own: the i.i.d. candidates, the
prefilter and the fallback's variance use all of them (orthogonal candidates, whose entries are
dependent within a draw, are checked on the first draw).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from varprop.checking.initializers import check_initializer
from varprop.components.scheme import InitScheme, init_scheme, weight_moments
from varprop.errors import VarpropError

__all__ = ["Recognised", "recognise", "bias_variance", "torch_fans", "pooled_draws"]

#: Level of each candidate's check (Holm over its tests).
ALPHA = 0.01
#: Candidates whose claimed variance is this far (relative) from the sample variance are skipped.
PREFILTER = 0.25
#: Larger i.i.d. tensors are checked on this many entries drawn at random (seeded) without
#: replacement: under the claim they are i.i.d. draws of the law at the layer's fans.
MAX_CHECKED = 2**16
#: Re-initialised copies of a parameter are pooled until this many entries (or ``MAX_DRAWS``).
POOL_ENTRIES = 4096
MAX_DRAWS = 32
#: A weight mean more than this many standard errors from 0 ...
MEAN_SIGMAS = 6.0
#: ... whose effect :math:`n_{in}\mu^2` on a unit-mean-square input is more than this fraction
#: of the zero-mean part :math:`\sigma^2` is refused (a ``VarpropError``).
MEAN_NEGLIGIBLE = 0.01

_POOL: contextvars.ContextVar[Mapping[int, Sequence[torch.Tensor]]] = contextvars.ContextVar(
    "varprop_torch_pool")


def draws_needed(numel: int) -> int:
    """How many draws of a parameter of ``numel`` entries are pooled (``POOL_ENTRIES``, at most
    ``MAX_DRAWS``)."""
    return max(1, min(MAX_DRAWS, -(-POOL_ENTRIES // max(int(numel), 1))))


@contextlib.contextmanager
def pooled_draws(pool: Mapping[int, Sequence[torch.Tensor]]) -> Iterator[None]:
    """Within the block, :func:`recognise` of a parameter ``p`` with ``id(p)`` in ``pool``
    pools ``pool[id(p)]`` (other draws of the same shape) with ``p``'s own entries."""
    token = _POOL.set(pool)
    try:
        yield
    finally:
        _POOL.reset(token)


@dataclass(frozen=True)
class Recognised:
    """A weight tensor's law: ``scheme`` (for varprop's layers), ``name`` (as reported),
    ``source`` (``"recognised"`` or ``"tensor moments"``) and a ``note``."""

    scheme: InitScheme
    name: str
    source: str
    note: str = ""


def torch_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's ``(fan_in, fan_out)`` of a weight of ``shape`` (``(out, in, *kernel)``)."""
    if len(shape) < 2:
        return int(shape[0]), int(shape[0])
    receptive = math.prod(shape[2:])
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def _two_digits(x: float) -> float:
    return float(f"{x:.2g}")


def _candidates(std: float, matrix: bool, rnn: bool) -> list[tuple[str, InitScheme]]:
    s = _two_digits(std)
    out = []
    if rnn:
        out.append(("torch:rnn_default U(+-1/sqrt(hidden))",
                    init_scheme("variance_scaling", scale=1 / 3, mode="fan_out",
                                distribution="uniform")))
    out += [
        ("torch:kaiming_uniform(a=sqrt(5))", init_scheme("torch:default")),
        ("he_normal(fan_out)", init_scheme("torch:kaiming_normal", mode="fan_out",
                                           nonlinearity="relu")),
        ("he_normal(fan_in)", init_scheme("torch:kaiming_normal", mode="fan_in",
                                          nonlinearity="relu")),
        ("he_uniform(fan_in)", init_scheme("torch:kaiming_uniform", mode="fan_in",
                                           nonlinearity="relu")),
        ("he_uniform(fan_out)", init_scheme("torch:kaiming_uniform", mode="fan_out",
                                            nonlinearity="relu")),
        ("xavier_normal", init_scheme("torch:xavier_normal")),
        ("xavier_uniform", init_scheme("torch:xavier_uniform")),
    ]
    if s > 0:
        out.append((f"normal(std={s:g})", init_scheme("torch:normal", std=s)))
    # trunc_normal_(std, a=-2 std, b=2 std): its variance is TRUNC_2SD std^2, so the
    # candidate's (untruncated) std is the tensor's std over sqrt(TRUNC_2SD), rounded
    t = _two_digits(std / math.sqrt(TRUNC_2SD))
    if t > 0:
        out.append((f"trunc_normal(std={t:g}, a=-{2 * t:g}, b={2 * t:g})",
                    init_scheme("torch:trunc_normal", std=t, a=-2 * t, b=2 * t)))
    return out


def _orthogonal(w: np.ndarray) -> list[tuple[str, InitScheme]]:
    mat = w.reshape(w.shape[0], -1)
    rows, cols = mat.shape
    est = float(np.sqrt(np.sum(mat * mat) / min(rows, cols)))
    if est <= 0:
        return []
    known = [(name, g) for name, g in _GAINS if abs(g / est - 1) <= 0.02]
    gains = [*known, (f"{_two_digits(est):g}", _two_digits(est))]
    return [(f"orthogonal(gain={name})", init_scheme("torch:orthogonal", gain=g))
            for name, g in gains]


#: Variance of a standard normal truncated to [-2, 2]: 1 - 4 phi(2) / (2 Phi(2) - 1).
TRUNC_2SD = 1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2))
#: The gains ``torch.nn.init.calculate_gain`` gives (relu, tanh, selu): an orthogonal
#: candidate tries these unrounded when the tensor's norm is within 2% of one.
_GAINS = (("sqrt(2)", math.sqrt(2)), ("5/3", 5 / 3), ("3/4", 0.75))


def _subset(raw: torch.Tensor) -> torch.Tensor:
    """``MAX_CHECKED`` entries of ``raw`` drawn without replacement (seeded), as a row."""
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(raw.numel(), generator=gen)[:MAX_CHECKED]
    return raw.reshape(-1)[idx].reshape(1, -1)


def _absolute(scheme: InitScheme, fan_in: int, fan_out: int) -> InitScheme:
    """The same law as ``scheme`` at these fans, with absolute parameters (for a subset)."""
    law = scheme.law(fan_in, fan_out)
    p = law.parameters
    family = type(law).__name__
    if family == "Uniform":
        return init_scheme("torch:uniform", a=p["low"], b=p["high"])
    if family == "Normal":
        return init_scheme("torch:normal", mean=p["loc"], std=p["scale"])
    return init_scheme("torch:trunc_normal", mean=p["loc"], std=p["scale"],
                       a=p["loc"] - p["bound"] * p["scale"], b=p["loc"] + p["bound"] * p["scale"])


def recognise(weight: torch.Tensor, *, fans: tuple[int, int] | None = None,
              rnn: bool = False) -> Recognised:
    """The law of ``weight`` (module docstring), at PyTorch's fans unless ``fans`` is given."""
    others = [t for t in _POOL.get({}).get(id(weight), ()) if t.shape == weight.shape]
    draws = [weight.detach().cpu(), *(t.detach().cpu() for t in others)]
    pooled = torch.cat([t.reshape(-1) for t in draws])
    w = weight.detach().to("cpu", torch.float64).numpy()
    fan_in, fan_out = fans if fans is not None else torch_fans(tuple(w.shape))
    allw = pooled.to(torch.float64).numpy()
    var = float(np.var(allw))
    mean = float(np.mean(allw))
    if allw.size < 2 or var == 0.0:
        return Recognised(init_scheme("normal", std=max(math.sqrt(var), 1e-300)), "constant",
                          "tensor moments", f"a constant tensor (every entry {mean:.4g})")
    if (abs(mean) > MEAN_SIGMAS * math.sqrt(var / allw.size)
            and fan_in * mean * mean > MEAN_NEGLIGIBLE * var):
        raise VarpropError(
            f"its weights have mean {mean:.4g} (standard deviation {math.sqrt(var):.4g}, "
            f"{allw.size} entries{'' if len(draws) == 1 else f' of {len(draws)} draws'}): "
            "varprop's network model assumes zero-mean weights here")
    candidates = _candidates(math.sqrt(var), w.ndim == 2, rnn)
    if w.ndim >= 2:
        candidates += _orthogonal(w)
    raw = weight.detach().cpu()  # its own dtype: the checks know the storage format
    matrix = raw if raw.ndim >= 2 else raw.reshape(1, -1)
    iid_matrix = pooled.reshape(1, -1) if len(draws) > 1 else matrix
    fallback = None
    for name, scheme in candidates:
        law_fans = (fan_in, fan_out)
        tested = matrix
        if not scheme.is_iid:  # orthogonal_ flattens all but the first axis
            tested = matrix.reshape(matrix.shape[0], -1)
            law_fans = (tested.shape[1], tested.shape[0])
        claimed = weight_moments(scheme, *law_fans)[1]
        if not abs(claimed / var - 1.0) <= PREFILTER:
            continue
        try:
            if scheme.is_iid and pooled.numel() > MAX_CHECKED:
                verdict = check_initializer(_subset(pooled), _absolute(scheme, *law_fans),
                                            alpha=ALPHA)
            elif scheme.is_iid and len(draws) > 1:
                verdict = check_initializer(iid_matrix, _absolute(scheme, *law_fans),
                                            alpha=ALPHA)
            else:
                verdict = check_initializer(tested, scheme, fan_in=law_fans[0],
                                            fan_out=law_fans[1], alpha=ALPHA)
        except (ValueError, TypeError):
            continue
        if verdict.status == "confirmed":
            return Recognised(scheme, name, "recognised", "confirmed by check_initializer")
        if verdict.status == "inconclusive" and fallback is None:
            fallback = Recognised(scheme, name, "recognised",
                                  f"not refuted by check_initializer ({allw.size} entries are too "
                                  "few to confirm its variance to +-5%)")
    if fallback is not None:
        return fallback
    own = "the tensor's own" if len(draws) == 1 else f"the pooled ({len(draws)} draws)"
    note = f"no candidate law fits: N(0, {var:.4g}) from {own} variance"
    if abs(mean) > 4 * math.sqrt(var / allw.size):
        note += f" (its sample mean {mean:.3g} is ignored: zero-mean weights are assumed)"
    std = math.sqrt(var)
    return Recognised(init_scheme("normal", std=std), f"normal(std={std:.4g})", "tensor moments",
                      note)


def bias_variance(bias: torch.Tensor | None, fan_in: int) -> tuple[float, str]:
    r""":math:`E b^2` of a bias and how it was read: 0 for none or all zeros;
    :math:`1/(3 n_{in})` when it fits PyTorch's default :math:`U(\pm 1/\sqrt{n_{in}})` (not
    refuted); else the tensor's own mean square."""
    if bias is None:
        return 0.0, "no bias"
    b = bias.detach().to("cpu", torch.float64).numpy().reshape(1, -1)
    if not np.any(b):
        return 0.0, "zero bias"
    bound = 1 / math.sqrt(fan_in)
    scheme = init_scheme("torch:uniform", a=-bound, b=bound)
    if b.size >= 2 and np.max(np.abs(b)) <= bound * (1 + 1e-6):
        try:
            verdict = check_initializer(b, scheme, alpha=ALPHA)
        except (ValueError, TypeError):
            verdict = None
        if verdict is not None and verdict.status != "refuted":
            return 1.0 / (3.0 * fan_in), "bias U(+-1/sqrt(fan_in)), PyTorch's default"
    return float(np.mean(b * b)), "bias: the tensor's own mean square"
