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
With :math:`A_m = E\phi(z_i)`, :math:`A_D = E\phi(z_i)^2`, :math:`A_C = E\phi(z_i)\phi(z_k)`
(:math:`i \ne k`) of layer :math:`l-1` (for the input :math:`A_m = A_C = 0`,
:math:`A_D = ` ``input_variance``) and :math:`S_2 = n A_D + n(n-1) A_C = E(\sum_j a_j)^2`:

.. math::

    m_l = E z_i = \mu_w n A_m, \quad
    D_l = E z_i^2 = \sigma_w^2 n A_D + \mu_w^2 S_2 + \sigma_b^2, \quad
    C_l = E z_i z_k = \mu_w^2 S_2 .

For zero-mean weights this is :math:`q_l = n_{l-1}\sigma_w^2 E[\phi(z)^2]_{z\sim N(0, q_{l-1})} +
\sigma_b^2` (with :math:`E[x^2]` for the first layer).  Backward, with
:math:`G_D = E\delta_i^2`, :math:`G_C = E\delta_i\delta_k` and :math:`g = W_l^\top \delta_l`:

.. math::

    E g_j^2 = \sigma_w^2 n_l G_D + \mu_w^2 (n_l G_D + n_l(n_l-1) G_C), \qquad
    E\delta_{l-1,j}^2 = E[\phi'(z_{l-1})^2]\, E g_j^2 ,

and :math:`E(\partial\mathcal L/\partial W_l)_{ij}^2 = E\delta_{l,i}^2\, E a_{l-1,j}^2`.

Assumptions: infinite-width mean field (pre-activations Gaussian; units jointly Gaussian with
covariance :math:`C_l - m_l^2` when :math:`\mu_w \ne 0`) and the gradient-independence assumption
(:math:`\phi'(z_{l-1})` independent of :math:`g`).  For zero-mean symmetric i.i.d. weights the
second moments of **linear and ReLU** nets are exact at every finite width; everything else is
exact only as the widths grow.  Orthogonal weights enter through their entry variance
:math:`g^2/\max(n_{in}, n_{out})` (exact for the second moments of linear layers).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import sympy as sp

from ._scalar import lambdify_scalar
from ._tabulated import LogTable
from ._validation import check_choice, check_nonnegative_real, check_widths, fail
from .activations import MU, Q, X, Activation, resolve_activation
from .errors import VarpropError, VarpropWarning
from .schemes import InitScheme, _cached_moments, resolve_scheme

__all__ = ["predict_variance", "propagate", "Propagation", "QUANTITIES", "METHODS"]

Quantity = Literal["preactivation", "activation", "activation_second_moment", "gradient",
                   "weight_gradient"]
Method = Literal["auto", "exact", "closed_form", "quadrature"]
QUANTITIES: tuple[str, ...] = ("preactivation", "activation", "activation_second_moment",
                               "gradient", "weight_gradient")
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


def _overflowed_moments(act: Activation, mean: float
                        ) -> tuple[float, float, float, float, float, float]:
    r"""The limits of :func:`_general_moments` once the pre-activation's mean or variance has left
    the float range (only unbounded activations get there from finite inputs).

    With :math:`|\mu| = \infty` the shared shift dominates every unit: :math:`\phi` and
    :math:`\phi'` are taken at :math:`\operatorname{sign}(\mu)\,\infty` (ReLU: ``inf`` upwards,
    exactly 0 downwards).  With a finite mean and infinite variance the symmetric limit
    :math:`E f(\pm\infty)/2` is used and the units are treated as uncorrelated.
    """
    if math.isinf(mean):
        # at +-inf itself, or just inside the float range where that is NaN (x * sigmoid(x))
        x = np.array([mean, math.copysign(1e300, mean)])
        with np.errstate(all="ignore"):
            f, d = act.function(x), act.derivative_function(x)
        f, d = (float(v[0]) if math.isfinite(v[0]) or not math.isfinite(v[1]) else float(v[1])
                for v in (f, d))
        f, d = (v if not math.isnan(v) else math.inf for v in (f, d))
        return f, f * f, f * f, d, d * d, d * d
    e_m, e_2, e_d, e_d2 = act.gaussian_moments(0.0, math.inf)
    return e_m, e_2, e_m * e_m, e_d, e_d2, e_d * e_d


# ----------------------------------------------------------------------------------------------
# the recursion
# ----------------------------------------------------------------------------------------------

_NAN_MESSAGE = ("a moment is 0 * inf: the variances leave the float range in both directions "
                "(e.g. vanishing derivatives times exploding gradients); reduce depth or rescale")


@lru_cache(maxsize=1024)
def _propagate_cached(act: Activation, scheme: InitScheme, widths: tuple[int, ...],
                      input_variance: float, bias_variance: float, method: str) -> Propagation:
    L = len(widths) - 1
    layer_moments = {pair: _cached_moments(scheme, *pair) for pair in set(zip(widths, widths[1:]))}
    moments = [layer_moments[pair] for pair in zip(widths, widths[1:])]
    zero_mean = scheme.is_zero_mean
    fast = _zero_mean_moments(act, method) if zero_mean else None
    z_m, z_d, z_c, a_m, a_d, a_c, d2, dcross = ([0.0] * L for _ in range(8))

    prev_m, prev_d, prev_c = 0.0, input_variance, 0.0
    with np.errstate(all="ignore"):
        for l, (mu, v) in enumerate(moments):
            n = widths[l]
            if zero_mean:
                q = v * n * prev_d + bias_variance
                em, e2, ed2 = fast(q)  # type: ignore[misc]
                z_d[l], a_m[l], a_d[l], a_c[l], d2[l] = q, em, e2, em * em, ed2
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
                z_m[l], z_d[l], z_c[l] = m, d, c
                a_m[l], a_d[l], a_c[l], d2[l], dcross[l] = e_m, e_2, cross, e_d2, d_cross
            prev_m, prev_d, prev_c = a_m[l], a_d[l], a_c[l]

        grad, delta, wgrad = [0.0] * L, [0.0] * L, [0.0] * L
        g_d, g_c = 1.0, 0.0
        for l in range(L - 1, -1, -1):
            n_out = widths[l + 1]
            mu, v = moments[l]
            delta[l] = g_d
            wgrad[l] = g_d * (input_variance if l == 0 else a_d[l - 1])
            gj_d = v * n_out * g_d
            gj_c = 0.0
            if mu:
                s2 = n_out * g_d + n_out * (n_out - 1) * g_c
                gj_d += mu * mu * s2
                gj_c = mu * mu * s2
            grad[l] = gj_d
            if l > 0:
                g_d, g_c = d2[l - 1] * gj_d, dcross[l - 1] * gj_c

    arrays = [np.array(x, dtype=float) for x in (z_m, z_d, z_c, a_m, a_d, a_c, grad, delta, wgrad)]
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
    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    ws = check_widths(fan_in, fan_out, widths, depth)
    in_var = check_nonnegative_real("input_variance", input_variance)
    b_var = check_nonnegative_real("bias_variance", bias_variance)
    return _propagate_cached(act, scheme, ws, in_var, b_var, _resolve_method(method))


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
    infinite-width limit (see :mod:`varprop.predict`).

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
    prop = propagate(activation, init, fan_in=fan_in, fan_out=fan_out, widths=widths, depth=depth,
                     input_variance=input_variance, bias_variance=bias_variance, method=method)
    values = prop.variance(quantity)
    if np.isinf(values).any():
        warnings.warn(f"predicted {quantity} variance exceeds the float range at some layer; "
                      "returned as inf", VarpropWarning, stacklevel=2)
    if per_layer:
        return values
    return float(values[0] if quantity in _BACKWARD else values[-1])
