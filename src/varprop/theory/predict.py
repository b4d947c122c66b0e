r"""Fast numerical predictions: :func:`propagate` and :func:`predict_variance`.

The model (issue 2, stated identically in the docs)
--------------------------------------------------
A network of depth :math:`L` maps an input :math:`x = a_0` (i.i.d. zero-mean entries with second
moment ``input_variance``) through

.. math:: z_l = W_l a_{l-1} + b_l, \qquad a_l = \phi(z_l), \qquad l = 1, \dots, L,

with widths :math:`n_0 = ` ``fan_in``, :math:`n_1 = \dots = n_L = ` ``fan_out`` (default
``fan_in``) or explicit ``widths``.  Weights are i.i.d. from the init scheme (mean
:math:`\mu_w`, variance :math:`\sigma_w^2`), biases i.i.d. :math:`N(0, \sigma_b^2)`.  The backward
pass starts from :math:`\delta_L = \partial\mathcal L/\partial z_L` with i.i.d. zero-mean
unit-variance entries, independent of the forward pass.

Recursions
----------
**Zero-mean weights** (:math:`\mu_w = 0`): one variance per layer,

.. math::

    q_l = n_{l-1}\sigma_w^2 E[\phi(z)^2]_{z\sim N(0, q_{l-1})} + \sigma_b^2, \qquad
    E g_j^2 = \sigma_w^2 n_l E\delta_{l,i}^2, \qquad
    E\delta_{l-1,j}^2 = E[\phi'(z_{l-1})^2]\, E g_j^2

(with :math:`E[x^2]` for the first layer), :math:`g = W_l^\top \delta_l`, and
:math:`E(\partial\mathcal L/\partial W_l)_{ij}^2 = E\delta_{l,i}^2\, E a_{l-1,j}^2`.

**Non-zero-mean weights, linear layers**: with :math:`A_m = E a_i`, :math:`A_D = E a_i^2`,
:math:`A_C = E a_i a_k` (:math:`i \ne k`) of layer :math:`l-1` (for the input :math:`A_m = A_C = 0`,
:math:`A_D = ` ``input_variance``) and :math:`S_2 = n A_D + n(n-1) A_C = E(\sum_j a_j)^2`,

.. math::

    m_l = \mu_w n A_m, \quad
    D_l = E z_i^2 = \sigma_w^2 n A_D + \mu_w^2 S_2 + \sigma_b^2, \quad
    C_l = E z_i z_k = \mu_w^2 S_2 ,

and backward, with :math:`G_D = E\delta_i^2`, :math:`G_C = E\delta_i\delta_k`,
:math:`E g_j^2 = \sigma_w^2 n_l G_D + \mu_w^2 (n_l G_D + n_l(n_l-1) G_C)`: exact at every width
(second moments of linear maps need no Gaussianity).

**Non-zero-mean weights, nonlinear activations**: every unit of a layer carries the same shift
:math:`s_l = \mu_w \sum_j a_{l-1,j}`, which after a nonlinearity is *not* Gaussian, so the
:math:`(m, D, C)` closure with jointly Gaussian units fails from layer 3 on.  The recursion is
instead conditional on the layer-1 shift :math:`s_1 = \mu_w\sum_j x_j` (exactly Gaussian):
given it, each layer's shift :math:`m_l` and within-layer variance :math:`q_l` are deterministic,
:math:`m_{l+1} = \mu_w n_l E\phi`, :math:`q_{l+1} = \sigma_w^2 n_l E\phi^2 + \sigma_b^2` with
:math:`z \sim N(m_l, q_l)`, and the moments are averages over :math:`s_1` (numerical quadrature);
see :mod:`varprop.theory.shifted` for the full statement, the backward pass and the measured accuracy.

Assumptions: infinite-width mean field (pre-activations Gaussian given the shared shift) and the
gradient-independence assumption (:math:`\phi'(z_{l-1})` independent of :math:`g`).  For
zero-mean symmetric i.i.d. weights the second moments of **linear and ReLU** nets are exact at
every finite width, and for linear nets with any i.i.d. weights; everything else is exact only
as the widths grow.  Orthogonal weights enter through their entry variance
:math:`g^2/\max(n_{in}, n_{out})` (exact for the second moments of linear layers).

Sizes
-----
The recursion stops as soon as the state entering a layer is bitwise the state entering the
identical layer before it (every later layer then computes the same numbers), and the last
layer's value needs memory independent of depth (``per_layer=False``; zero-mean weights and
linear layers).  Per-layer arrays that cannot fit in the available memory are refused with a
:class:`~varprop.VarpropError` stating the bytes they would need.  A predicted variance beyond
the float range is returned as ``inf`` and one that underflows to exactly 0.0 (from a positive
input or bias variance) as 0.0, each with a :class:`~varprop.VarpropWarning`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import sympy as sp

from varprop._math.scalar import lambdify_scalar
from varprop._math.tabulated import LogTable
from varprop._util.validation import (
    check_choice,
    check_nonnegative_real,
    check_positive_int,
    check_widths,
    fail,
)
from varprop.components.activations import MU, Activation, Q, X, resolve_activation
from varprop.components.schemes import InitScheme, _cached_moments, resolve_scheme
from varprop.errors import VarpropError, VarpropWarning
from varprop.theory import shifted as _shifted
from varprop.theory.shifted import overflowed_moments as _overflowed_moments

__all__ = ["predict_variance", "propagate", "Propagation", "QUANTITIES", "METHODS"]

Quantity = Literal["preactivation", "activation", "activation_second_moment", "gradient",
                   "weight_gradient"]
Method = Literal["auto", "exact", "closed_form", "quadrature"]
from varprop.network.quantities import QUANTITIES  # noqa: E402  (the one vocabulary, shared with simulate/verify/CLI)

METHODS: tuple[str, ...] = ("auto", "exact", "closed_form", "quadrature")

# forward quantities are reported at the last layer, backward ones at the first
_BACKWARD = ("gradient", "weight_gradient")


@dataclass(frozen=True)
class Propagation:
    r"""Per-layer moments of a network, forward and backward (arrays over :math:`l = 1..L`).

    Attributes
    ----------
    widths : tuple of int
        :math:`(n_0, \dots, n_L)`.
    method : str
        How activation moments were computed (``exact``, ``closed_form`` or ``quadrature``).
    preact_mean, preact_second, preact_cross : ndarray
        :math:`E z_{l,i}`, :math:`E z_{l,i}^2`, :math:`E z_{l,i} z_{l,k}` (:math:`i \ne k`).
    act_mean, act_second, act_cross : ndarray
        The same for :math:`a_l = \phi(z_l)`.
    grad_second : ndarray
        :math:`E(\partial\mathcal L/\partial a_{l-1})^2`, the gradient at layer :math:`l`'s input
        (element 0 is the gradient at the network input).
    delta_second : ndarray
        :math:`E(\partial\mathcal L/\partial z_l)^2` (the last element is 1).
    weight_grad_second : ndarray
        :math:`E(\partial\mathcal L/\partial W_l)_{ij}^2`.

    An entry is NaN only where it is indeterminate in floating point (:math:`0\cdot\infty`, e.g.
    a saturated activation's vanishing derivative times an overflowing gradient);
    :meth:`variance` (and so :func:`predict_variance`) raises :class:`~varprop.VarpropError` rather
    than returning it.
    """

    widths: tuple[int, ...]
    method: str
    preact_mean: np.ndarray
    preact_second: np.ndarray
    preact_cross: np.ndarray
    act_mean: np.ndarray
    act_second: np.ndarray
    act_cross: np.ndarray
    grad_second: np.ndarray
    delta_second: np.ndarray
    weight_grad_second: np.ndarray

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    def variance(self, quantity: Quantity) -> np.ndarray:
        """Per-layer values of ``quantity`` (see :func:`predict_variance`)."""
        quantity = check_choice("quantity", quantity, QUANTITIES)
        out = self._values(quantity)
        if np.isnan(out).any():
            raise VarpropError(f"{quantity}: {_NAN_MESSAGE}")
        return out

    def _values(self, quantity: str) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            if quantity == "preactivation":
                out = _variance(self.preact_second, self.preact_mean)
            elif quantity == "activation":
                out = _variance(self.act_second, self.act_mean)
            elif quantity == "activation_second_moment":
                out = self.act_second.copy()
            elif quantity == "gradient":
                out = self.grad_second.copy()
            else:
                out = self.weight_grad_second.copy()
        return out


def _variance(second: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``second - mean**2``, keeping ``inf`` where the second moment is beyond the float range."""
    out = second - mean * mean
    out = np.where(np.isinf(second), np.inf, out)
    return np.maximum(out, 0.0)


# ----------------------------------------------------------------------------------------------
# compiled moment functions
# ----------------------------------------------------------------------------------------------

MomentFn = Callable[[float], tuple[float, float, float]]


@lru_cache(maxsize=256)
def _zero_mean_moments(act: Activation, method: str) -> MomentFn:
    r"""``q -> (E phi(z), E phi(z)^2, E phi'(z)^2)`` for :math:`z \sim N(0, q)`, compiled once."""
    rules = act.closed_form
    if method == "closed_form" and rules is None:
        raise fail("method", method, f"'exact', 'auto' or 'quadrature': {act.name!r} has no closed form")

    def quadrature(q: float) -> tuple[float, float, float]:
        m = act.gaussian_moments(0.0, q, method="quadrature")
        return float(m[0]), float(m[1]), float(m[3])

    use_closed = rules is not None and (
        method == "closed_form" or (method == "exact" and rules.exact))
    if not use_closed:
        # "exact": quadrature through a verified table in log q (see _tabulated): ~50x faster
        # per layer, checked against quadrature to 1e-11 in every panel it uses
        return LogTable(quadrature) if method == "exact" else quadrature
    exprs = [getattr(rules, name).subs(MU, 0) for name in ("mean", "second", "deriv_second")]
    # simplify takes seconds on a long polynomial (a custom one), where it has nothing to gain
    exprs = [e if e.is_polynomial(Q) else sp.simplify(e) for e in exprs]
    compiled = lambdify_scalar([Q], exprs)  # inf, not OverflowError, beyond the float range

    def closed(q: float) -> tuple[float, float, float]:
        if q == 0.0 or math.isinf(q):  # limits, where the formulas divide by zero
            return quadrature(q)
        return compiled(q)  # type: ignore[return-value]

    return closed


def _general_moments(act: Activation, method: str, mean: float, var: float, cov: float
                     ) -> tuple[float, float, float, float, float, float]:
    """``(E phi, E phi^2, E phi_i phi_k, E phi', E phi'^2, E phi'_i phi'_k)`` for correlated units."""
    if act.expr == X:  # linear: exact identities, no quadrature needed
        return mean, var + mean * mean, cov + mean * mean, 1.0, 1.0, 1.0
    if method == "closed_form":
        raise fail("method", method, f"'exact', 'auto' or 'quadrature': with non-zero-mean weights "
                   f"{act.name!r} has no closed form (units are correlated)")
    if math.isinf(mean) or math.isinf(var):
        return _overflowed_moments(act, mean)
    e_m, e_2, e_d, e_d2 = act.gaussian_moments(mean, var, method=method)
    cross, dcross = act.correlated_moments(mean, var, cov)
    return e_m, e_2, cross, e_d, e_d2, dcross


# ----------------------------------------------------------------------------------------------
# the recursion
# ----------------------------------------------------------------------------------------------

_NAN_MESSAGE = ("a moment is 0 * inf: the variances leave the float range in both directions "
                "(e.g. vanishing derivatives times exploding gradients); reduce depth or rescale")


@dataclass(frozen=True)
class _Shape:
    r"""The widths :math:`(n_0, \dots, n_L)`: explicit, or ``(n0, n, L)`` without materialising
    the constant tail (so a depth of :math:`10^9` costs no memory)."""

    explicit: tuple[int, ...] | None
    n0: int
    n: int
    L: int

    @staticmethod
    def of(widths: tuple[int, ...]) -> _Shape:
        return _Shape(widths, widths[0], widths[-1], len(widths) - 1)

    def pair(self, l: int) -> tuple[int, int]:
        """(fan-in, fan-out) of layer ``l + 1`` (0-based ``l``)."""
        if self.explicit is not None:
            return self.explicit[l], self.explicit[l + 1]
        return (self.n0, self.n) if l == 0 else (self.n, self.n)

    @property
    def tail(self) -> int:
        """The smallest 0-based layer index from which every layer has the same (fan-in, fan-out)."""
        if self.explicit is None:
            return 1
        w, t = self.explicit, self.L - 1
        while t >= 1 and w[t] == w[t + 1] == w[-1]:
            t -= 1
        return t + 1

    def widths(self) -> tuple[int, ...]:
        return self.explicit if self.explicit is not None else (self.n0,) + (self.n,) * self.L


@dataclass(frozen=True)
class _Forward:
    """Forward moments of layers ``1..k`` (0-based lists); layers ``k+1..L`` repeat layer ``k``
    (the recursion reached a bitwise fixed point: every later layer computes the same numbers)."""

    k: int
    z_m: Sequence[float]
    z_d: Sequence[float]
    z_c: Sequence[float]
    a_m: Sequence[float]
    a_d: Sequence[float]
    a_c: Sequence[float]
    d2: Sequence[float]
    dcross: Sequence[float]
    #: ``keep="last"``: each sequence holds only layer ``k``; whether ``z_d`` / ``a_d`` went from a
    #: positive value (or a positive source) to exactly 0.0 on the way (underflow)
    z_under: bool = False
    a_under: bool = False

    def at(self, name: str, l: int) -> float:
        seq = getattr(self, name)
        return seq[min(l, self.k - 1) - self.k + len(seq)]


def _moments_of(scheme: InitScheme, shape: _Shape, l: int) -> tuple[float, float]:
    return _cached_moments(scheme, *shape.pair(l))


@lru_cache(maxsize=1024)
def _forward_scalar(act: Activation, scheme: InitScheme, shape: _Shape, input_variance: float,
                    bias_variance: float, method: str, keep: str = "all") -> _Forward:
    """The forward recursion of the module docstring (zero-mean weights, or linear layers),
    stopping once the state entering a layer is bitwise the one entering the previous identical
    layer (every later layer then repeats it: the numbers are those of the full loop).

    ``keep``: ``"all"`` per-layer values (8 bytes per layer and moment), ``"backward"`` only what
    the backward pass needs (``a_d``, ``d2``, ``dcross``), ``"last"`` only the last layer's
    (memory independent of depth).
    """
    zero_mean = scheme.is_zero_mean
    fast = _zero_mean_moments(act, method) if zero_mean else None
    names = ("z_m", "z_d", "z_c", "a_m", "a_d", "a_c", "d2", "dcross")
    kept = {"all": names, "backward": ("a_d", "d2", "dcross"), "last": ()}[keep]
    seqs = {name: array("d") for name in names}
    tail = shape.tail
    prev_m, prev_d, prev_c = 0.0, input_variance, 0.0
    last: tuple[float, float, float] | None = None
    k = 0
    pos_z = pos_a = _source_positive(scheme, shape, input_variance, bias_variance, False)
    under_z = under_a = False
    started = probed = time.perf_counter()
    with np.errstate(all="ignore"):
        for l in range(shape.L):
            state = (prev_m, prev_d, prev_c)
            if l - 1 >= tail and state == last:
                break
            last = state
            mu, v = _moments_of(scheme, shape, l)
            n = shape.pair(l)[0]
            if zero_mean:
                q = v * n * prev_d + bias_variance
                em, e2, ed2 = fast(q)  # type: ignore[misc]
                row = (0.0, q, 0.0, em, e2, em * em, ed2, 0.0)
            else:
                s2 = n * prev_d + n * (n - 1) * prev_c
                m = mu * n * prev_m
                d = v * n * prev_d + mu * mu * s2 + bias_variance
                c = mu * mu * s2
                if math.isnan(d + c):
                    raise VarpropError(_NAN_MESSAGE)
                var = d - m * m if math.isfinite(d) else math.inf
                cov = c - m * m if math.isfinite(c) else var
                e_m, e_2, cross, _, e_d2, d_cross = _general_moments(
                    act, method, m, max(var, 0.0), max(cov, 0.0))
                row = (m, d, c, e_m, e_2, cross, e_d2, d_cross)
            for name, value in zip(names, row):
                seq = seqs[name]
                if name in kept or not seq:
                    seq.append(value)
                else:
                    seq[0] = value
            k += 1
            if k % _PROBE_LAYERS == 0 and shape.L > k:
                now = time.perf_counter()
                _refuse_slow(shape.L, k, now - started, (now - probed) / _PROBE_LAYERS)
                probed = now
            under_z = under_z or (pos_z and row[1] == 0.0)
            under_a = under_a or (pos_a and row[4] == 0.0)
            pos_z, pos_a = pos_z or row[1] > 0.0, pos_a or row[4] > 0.0
            prev_m, prev_d, prev_c = row[3], row[4], row[5]
    return _Forward(k, *(seqs[name] for name in names), z_under=under_z, a_under=under_a)


#: Layers after which a recursion that has not settled estimates its remaining time.
_PROBE_LAYERS = 100_000
#: The longest a prediction may take by that estimate (seconds).
_TIME_LIMIT = 60.0


def _refuse_slow(depth: int, done: int, elapsed: float, rate: float) -> None:
    """Refuse a recursion that has not reached a fixed point after ``done`` layers and would take
    longer than :data:`_TIME_LIMIT` in all for ``depth`` layers, at the rate of the last
    :data:`_PROBE_LAYERS` layers (checked every :data:`_PROBE_LAYERS` layers: the rate can change
    with the variance, e.g. below the verified table's range)."""
    estimate = elapsed + rate * (depth - done)
    if estimate > _TIME_LIMIT:
        raise fail("depth", depth, f"a depth this recursion can walk in about {_TIME_LIMIT:.0f} s: "
                   f"it has not reached a fixed point after {done:,} layers ({elapsed:.2g} s), and "
                   f"{depth:,} layers would take about {estimate:.2g} s at the current rate")


def _backward_scalar(scheme: InitScheme, shape: _Shape, fw: _Forward, input_variance: float,
                     out: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                     bias_variance: float = 0.0, track: bool = False
                     ) -> tuple[float, float, float, bool, bool]:
    """Back-propagate (gradient independence), filling ``out = (grad, delta, wgrad)`` if given.

    Returns layer 1's ``(grad, delta, wgrad)`` and (with ``track``) whether ``grad`` / ``wgrad``
    is exactly 0.0 below a positive value or from a positive source (underflow, see
    :func:`_underflowed`).  Layers where the state entering
    them is bitwise the one entering the identical layer above are filled without recomputing.
    """
    L = shape.L
    low = max(fw.k, shape.tail, 1)  # layers l >= low use identical inputs
    g_d, g_c = 1.0, 0.0
    last: tuple[float, float] | None = None
    last_out = (0.0, 0.0, 0.0)
    # with an identically zero forward pass, phi'(0) may be exactly 0: zeros are then exact
    track = track and _source_positive(scheme, shape, input_variance, bias_variance, True)
    pos_g = pos_w = track
    under_g = under_w = False
    l = L - 1
    with np.errstate(all="ignore"):
        while l >= 0:
            if l >= low and l + 1 <= L - 1 and (g_d, g_c) == last:
                if out is not None:
                    for arr, val in zip(out, last_out):
                        arr[low:l + 1] = val
                l = low - 1
                continue
            last = (g_d, g_c)
            n_out = shape.pair(l)[1]
            mu, v = _moments_of(scheme, shape, l)
            delta = g_d
            wgrad = g_d * (input_variance if l == 0 else fw.at("a_d", l - 1))
            gj_d = v * n_out * g_d
            gj_c = 0.0
            if mu:
                s2 = n_out * g_d + n_out * (n_out - 1) * g_c
                gj_d += mu * mu * s2
                gj_c = mu * mu * s2
            grad = gj_d
            last_out = (grad, delta, wgrad)
            if out is not None:
                out[0][l], out[1][l], out[2][l] = grad, delta, wgrad
            if track:
                under_g = under_g or (pos_g and grad == 0.0)
                under_w = under_w or (pos_w and wgrad == 0.0)
                pos_g, pos_w = pos_g or grad > 0.0, pos_w or wgrad > 0.0
            if l > 0:
                g_d, g_c = fw.at("d2", l - 1) * gj_d, fw.at("dcross", l - 1) * gj_c
            l -= 1
    return last_out[0], last_out[1], last_out[2], under_g, under_w


#: Bytes of the per-layer arrays of :class:`Propagation` per layer (nine float64 arrays) plus the
#: widths tuple.
_BYTES_PER_LAYER = 9 * 8 + 8


def _available_bytes() -> int:
    """Physical memory available now (``sysconf``), or 4 GiB where it cannot be queried."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 4 << 30


_SHIFTED_ARRAYS = "per-layer node arrays of the non-zero-mean recursion (varprop.theory.shifted)"
_LAST_ONLY = "ask for the last layer only (per_layer=False, memory independent of depth) or "


def _check_fits(depth: int, per_layer_bytes: int = _BYTES_PER_LAYER, what: str = "per-layer arrays",
                advice: str = _LAST_ONLY) -> None:
    """Refuse, before allocating, what needs more memory than is available."""
    need = depth * per_layer_bytes
    have = _available_bytes()
    if need > have:
        raise VarpropError(
            f"depth={depth}: the {what} would need {need:,} bytes ({need / 2**30:.3g} GiB), more "
            f"than the {have:,} bytes available; {advice}reduce depth")


def _readonly(values: list[float] | np.ndarray) -> np.ndarray:
    arr = np.array(values, dtype=float)
    arr.flags.writeable = False
    return arr


def _expand(values: list[float], L: int) -> np.ndarray:
    """``values`` followed by its last element repeated up to length ``L``."""
    arr = np.empty(L)
    arr[:len(values)] = values
    arr[len(values):] = values[-1]
    arr.flags.writeable = False
    return arr


@lru_cache(maxsize=1024)
def _propagate_cached(act: Activation, scheme: InitScheme, widths: tuple[int, ...],
                      input_variance: float, bias_variance: float, method: str) -> Propagation:
    L = len(widths) - 1
    if not scheme.is_zero_mean and act.expr != X:
        moments = [_cached_moments(scheme, *pair) for pair in zip(widths, widths[1:])]
        return _shifted_propagation(act, widths, moments, input_variance, bias_variance, method)
    shape = _Shape.of(widths)
    fw = _forward_scalar(act, scheme, shape, input_variance, bias_variance, method)
    grad, delta, wgrad = np.empty(L), np.empty(L), np.empty(L)
    _backward_scalar(scheme, shape, fw, input_variance, (grad, delta, wgrad))
    forward = [_expand(getattr(fw, name), L) for name in ("z_m", "z_d", "z_c", "a_m", "a_d", "a_c")]
    return Propagation(widths, method, *forward, *map(_readonly, (grad, delta, wgrad)))


def _shifted_propagation(act: Activation, widths: tuple[int, ...], moments: list[tuple[float, float]],
                         input_variance: float, bias_variance: float, method: str) -> Propagation:
    """Non-zero-mean weights, nonlinear activation: conditional on the layer-1 shift
    (:mod:`varprop.theory.shifted`)."""
    if method == "closed_form":
        raise fail("method", method, f"'exact', 'auto' or 'quadrature': with non-zero-mean weights "
                   f"{act.name!r} has no closed form (the shared shift is integrated numerically)")
    _check_fits(len(widths) - 1, _shifted.BYTES_PER_LAYER, _SHIFTED_ARRAYS, "")
    r = _shifted.shifted_recursion(act, widths, moments, input_variance, bias_variance)
    arrays = [np.array(x, dtype=float) for x in (r.z_m, r.z_d, r.z_c, r.a_m, r.a_d, r.a_c,
                                                r.grad, r.delta, r.wgrad)]
    for arr in arrays:
        arr.flags.writeable = False
    return Propagation(widths, method, *arrays)


def _resolve_method(method: object) -> str:
    method = check_choice("method", method, METHODS)
    return "exact" if method == "auto" else method


def propagate(
    activation: Activation | str,
    init: InitScheme | str,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: list[int] | tuple[int, ...] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    method: Method = "auto",
) -> Propagation:
    r"""All per-layer moments of the model, forward and backward (see the module docstring).

    Parameters are those of :func:`predict_variance`.  Results are cached (the returned arrays are
    read-only).

    >>> p = propagate("relu", "he_normal", fan_in=100, depth=3)
    >>> p.preact_second.tolist()
    [2.0, 2.0, 2.0]
    """
    act, scheme, shape, in_var, b_var, method = _arguments(
        activation, init, fan_in, fan_out, widths, depth, input_variance, bias_variance, method)
    _check_fits(shape.L)  # before allocating: the per-layer arrays grow with depth
    return _propagate_cached(act, scheme, shape.widths(), in_var, b_var, method)


def predict_variance(
    activation: Activation | str,
    init: InitScheme | str,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: list[int] | tuple[int, ...] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    quantity: Quantity = "activation",
    method: Method = "auto",
    per_layer: bool = False,
) -> float | np.ndarray:
    r"""Predict the variance of a quantity in a randomly initialised network.

    Parameters
    ----------
    activation : str or Activation
        ``"relu"``, ``"tanh"``, ... or :func:`varprop.activation` (a custom expression in ``x``
        where supported).
    init : str or InitScheme
        ``"he_normal"``, ... or :func:`varprop.init_scheme`.
    fan_in, fan_out, widths, depth
        Network shape: :math:`n_0 = ` ``fan_in``, :math:`n_1..n_L = ` ``fan_out`` (default
        ``fan_in``), :math:`L = ` ``depth``; or ``widths=[n_0, ..., n_L]``.
    input_variance : float
        :math:`E[x_j^2]` of the zero-mean input entries.
    bias_variance : float
        :math:`\sigma_b^2`.
    quantity : {"preactivation", "activation", "activation_second_moment", "gradient", "weight_gradient"}
        ``preactivation``: :math:`\operatorname{Var} z_L`; ``activation``:
        :math:`\operatorname{Var} a_L = E a_L^2 - (E a_L)^2`; ``activation_second_moment``:
        :math:`E a_L^2` (what feeds the next layer); ``gradient``:
        :math:`\operatorname{Var}\partial\mathcal L/\partial x` after back-propagating through all
        :math:`L` layers; ``weight_gradient``: :math:`\operatorname{Var}\partial\mathcal L/\partial W_1`.
    method : {"auto", "exact", "closed_form", "quadrature"}
        ``exact``: infinite-width mean field, closed forms where exact, quadrature otherwise
        (zero-mean weights: through a table in :math:`\log q` verified against quadrature to
        :math:`10^{-11}` per panel, ~1.5 µs a layer); ``auto``: the same; ``closed_form``: the
        derived formulas with the activation's stated approximation (tanh, sigmoid);
        ``quadrature``: direct numerical integration everywhere (~50 µs a layer).
    per_layer : bool
        Return an array over layers :math:`1..L` in forward order (for ``gradient``:
        :math:`\operatorname{Var}\partial\mathcal L/\partial a_{l-1}`, the gradient at layer
        :math:`l`'s input; for ``weight_gradient``: :math:`\partial\mathcal L/\partial W_l`).

    Returns
    -------
    float or ndarray
        Values beyond the float range come back as ``inf`` with a :class:`VarpropWarning`.

    Notes
    -----
    Ensemble variance of one unit over networks and inputs.  Exact at finite width for second
    moments of linear and ReLU nets with zero-mean symmetric i.i.d. weights; otherwise the
    infinite-width limit (see :mod:`varprop.theory.predict`).

    Examples
    --------
    >>> predict_variance("linear", "standard_normal", fan_in=512, quantity="preactivation")
    512.0
    >>> round(float(predict_variance("tanh", "lecun_normal", fan_in=512)), 4)
    0.3943
    >>> predict_variance("relu", "he_normal", fan_in=64, depth=10, quantity="preactivation")
    2.0
    """
    quantity = check_choice("quantity", quantity, QUANTITIES)
    if not isinstance(per_layer, bool):
        raise fail("per_layer", per_layer, "True or False")
    act, scheme, shape, in_var, b_var, method = _arguments(
        activation, init, fan_in, fan_out, widths, depth, input_variance, bias_variance, method)
    backward = quantity in _BACKWARD
    scalar = scheme.is_zero_mean or act.expr == X
    if per_layer or not scalar:
        if not scalar:
            _check_fits(shape.L, _shifted.BYTES_PER_LAYER, _SHIFTED_ARRAYS, "")
        else:
            _check_fits(shape.L)
        prop = _propagate_cached(act, scheme, shape.widths(), in_var, b_var, method)
        values = prop.variance(quantity)
        seconds = {"preactivation": prop.preact_second, "activation": prop.act_second,
                   "activation_second_moment": prop.act_second, "gradient": prop.grad_second,
                   "weight_gradient": prop.weight_grad_second}[quantity]
        source = _source_positive(scheme, shape, in_var, b_var, backward)
        under = (source or not backward) and _underflowed(seconds[::-1] if backward else seconds, source)
    else:
        fw = _forward_scalar(act, scheme, shape, in_var, b_var, method,
                             "backward" if backward else "last")
        if backward:
            grad, _, wgrad, under_g, under_w = _backward_scalar(scheme, shape, fw, in_var, None,
                                                                b_var, track=True)
            values = np.array([grad if quantity == "gradient" else wgrad])
            under = under_g if quantity == "gradient" else under_w
        else:
            name, mean = {"preactivation": ("z_d", "z_m"), "activation": ("a_d", "a_m"),
                          "activation_second_moment": ("a_d", None)}[quantity]
            second = np.array([fw.at(name, fw.k - 1)])
            with np.errstate(invalid="ignore", over="ignore"):
                values = second if mean is None else _variance(second, np.array([fw.at(mean, fw.k - 1)]))
            under = fw.z_under if name == "z_d" else fw.a_under
        if np.isnan(values).any():
            raise VarpropError(f"{quantity}: {_NAN_MESSAGE}")
    if np.isinf(values).any():
        warnings.warn(f"predicted {quantity} variance exceeds the float range at some layer; "
                      "returned as inf", VarpropWarning, stacklevel=2)
    if under:
        warnings.warn(f"predicted {quantity} variance underflows to 0.0 at some layer (the exact "
                      "value is positive but below the float range); returned as 0.0",
                      VarpropWarning, stacklevel=2)
    if per_layer:
        return values
    return float(values[0] if backward or values.size == 1 else values[-1])


def _arguments(activation: object, init: object, fan_in: object, fan_out: object, widths: object,
               depth: object, input_variance: object, bias_variance: object, method: object
               ) -> tuple[Activation, InitScheme, _Shape, float, float, str]:
    """The public arguments of :func:`propagate` and :func:`predict_variance`, validated once."""
    return (resolve_activation(activation), resolve_scheme(init),
            _shape(fan_in, fan_out, widths, depth),
            check_nonnegative_real("input_variance", input_variance),
            check_nonnegative_real("bias_variance", bias_variance), _resolve_method(method))


def _shape(fan_in: object, fan_out: object, widths: object, depth: object) -> _Shape:
    """Validated network shape; a constant-width one without materialising its widths."""
    if widths is not None:
        return _Shape.of(check_widths(fan_in, fan_out, widths, depth))
    n0, n = check_widths(fan_in, fan_out, None, 1)
    return _Shape(None, n0, n, check_positive_int("depth", depth))


def _source_positive(scheme: InitScheme, shape: _Shape, input_variance: float,
                     bias_variance: float, backward: bool) -> bool:
    r"""Whether the exact predicted second moments are positive at every layer (a 0.0 is then an
    underflow): the input or the bias feeds a positive variance into layer 1 and, backward, the
    last layer's weights carry :math:`\delta_L`'s unit variance down."""
    forward = (input_variance > 0 and _weight_variance_positive(scheme, shape, 0)) or bias_variance > 0
    if not backward:
        return forward
    return forward and _weight_variance_positive(scheme, shape, shape.L - 1)


def _weight_variance_positive(scheme: InitScheme, shape: _Shape, l: int) -> bool:
    """Whether layer ``l + 1``'s weight variance is positive, exactly: a float 0.0 may itself be an
    underflow (``normal(std=1e-300)``: 1e-600), which SymPy's exact value tells apart."""
    v = _moments_of(scheme, shape, l)[1]
    if v != 0.0:
        return v > 0.0
    exact_value = sp.sympify(scheme.weight_variance(*shape.pair(l)))
    if exact_value.is_positive is not None:
        return bool(exact_value.is_positive)
    # undecided symbolically (a truncated normal's 1 - ... cancels): adaptive-precision evalf
    return bool(sp.N(exact_value, 5, maxn=4000) > 0)


def _underflowed(seconds: np.ndarray, source_positive: bool) -> bool:
    """A second moment, in propagation order, that is exactly 0.0 where the exact value is
    positive: after a positive layer, or at the first layer from a positive source."""
    zero = seconds == 0.0
    if not zero.any():
        return False
    if source_positive and zero[0]:
        return True
    positive_before = np.maximum.accumulate(seconds > 0.0)
    return bool(np.any(zero[1:] & positive_before[:-1]))
