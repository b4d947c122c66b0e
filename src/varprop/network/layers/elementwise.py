r"""The general-engine rules of an elementwise activation :math:`a = \phi(z)` (``Nonlinearity``).

Forward, per position :math:`t` with :math:`z_t \sim N(m_t, v_t)` (:math:`v_t = E z_t^2 - m_t^2`):

.. math::

    E a_t = E\phi(z_t), \qquad E a_t^2 = E\phi(z_t)^2, \qquad
    E a_t a_{t'} = E\phi(z_t)\phi(z_{t'}),\ (z_t, z_{t'}) \sim
    N\!\left(\begin{pmatrix} m_t \\ m_{t'} \end{pmatrix},
    \begin{pmatrix} v_t & C_{tt'} - m_t m_{t'} \\ \cdot & v_{t'} \end{pmatrix}\right),

the last for position covariances and, between two samples :math:`b \ne b'`, for
``batch_cross`` (:math:`t = t'`) and ``batch_cov`` (:math:`C_{tt'}` replaced by
:math:`E z_{b,t} z_{b',t'}`; its diagonal too is a pair of different variables).  Backward (gradient independence: :math:`\phi'(z)` independent of the
gradient :math:`\delta_a` arriving from above):

.. math::

    E\delta_{z,t}^2 = E\phi'(z_t)^2\, E\delta_{a,t}^2, \qquad
    E\delta_{z,t}\delta_{z,t'} = E\phi'(z_t)\phi'(z_{t'})\, E\delta_{a,t}\delta_{a,t'}
    \quad (\text{and the same between samples}).

Assumption: the channels entering :math:`\phi` are jointly Gaussian (a weight layer's output at
infinite width: ``Field.gaussian``).  For any other input (e.g. ``relu(x + F(x))`` in a
post-activation residual block) the same formulas are used with a Gaussian of the same means and
covariances -- the *Gaussian closure* -- and a sentence saying so is added to the field's
``approximations`` (measured error of the second moment after a post-activation residual
block, width 512: +5.3% for ReLU, +2.1% for tanh; for tanh acting directly on a ReLU output,
+41%).  A linear :math:`\phi(x) = s x` needs no assumption:
:math:`(m, E z^2, C) \mapsto (s m, s^2 E z^2, s^2 C)` and :math:`s^2` backward, exactly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from varprop._math import bivariate
from varprop._math.shifted_relu import RHO_LIMIT, relu_class_shifted
from varprop._util.lazy import lazy_module
from varprop.components.activations import Activation
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): derivations, and recognising erf
sp = lazy_module("sympy")

__all__ = ["backward", "exact", "forward", "pair_moments", "position_moments", "steps"]

_CLOSED_FORM_MIN_R = 3.0  # closed forms only where the standardised mean is at least -3


def _closure_sentence(act: Activation) -> str:
    return (f"Gaussian closure at {act.name}: its input is not jointly Gaussian (it is not a weight "
            "layer's output), so it is treated as a Gaussian with the same means and covariances")


def position_moments(act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    r"""``(4, N)``: :math:`E\phi, E\phi^2, E\phi', E\phi'^2` for :math:`z \sim N(m_k, v_k)`,
    each distinct ``(m, v)`` evaluated once: the activation's exact closed form where it has one
    (and the standardised mean is at least -3), else quadrature."""
    rows, inverse = bivariate.unique_rows(mean, var)
    out = np.empty((4, rows.shape[0]))
    rules = act.closed_form
    for k, (m, v) in enumerate(rows):
        if math.isfinite(m) and v == math.inf:  # beyond the float range: the symmetric limit
            out[:, k] = act.gaussian_moments(float(m), math.inf)
            continue
        if not (math.isfinite(m) and math.isfinite(v)):
            raise VarpropError(f"{act.name}: a pre-activation moment left the float range "
                               f"(mean {m!r}, variance {v!r}); reduce the depth or rescale")
        if v > 0 and rules is not None and rules.exact and not rules.zero_mean_only and \
                m / math.sqrt(v) >= -_CLOSED_FORM_MIN_R:
            with np.errstate(all="ignore"):
                vals = [float(rules.vectorized[name](np.array([m]), np.array([v]))[0])
                        for name in ("mean", "second", "deriv_mean", "deriv_second")]
            if all(math.isfinite(x) for x in vals):
                out[:, k] = vals
                continue
        out[:, k] = act.gaussian_moments(float(m), float(v), method="quadrature")
    return out[:, inverse].reshape((4,) + np.shape(mean))


def _f(act: Activation, name: str):
    fn = act.function if name == "function" else act.derivative_function
    return lambda x: np.broadcast_to(np.asarray(fn(x), dtype=float), np.shape(x))


def pair_moments(act: Activation, m1: np.ndarray, m2: np.ndarray, a: np.ndarray, b: np.ndarray,
                 c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(E phi(x)phi(y), E phi'(x)phi'(y))`` for :math:`(x, y) \sim N((m_1, m_2),
    [[a, c], [c, b]])`, elementwise over the arrays: exact identities for linear :math:`\phi`,
    closed forms at zero means for the ReLU class (arc-cosine kernel) and erf (arcsine), and
    conditional quadrature otherwise (:mod:`varprop._math.bivariate`)."""
    shape = np.shape(c)
    m1, m2, a, b, c = (np.broadcast_to(np.asarray(x, dtype=float), shape).ravel()
                       for x in (m1, m2, a, b, c))
    traits = act.traits
    if traits.linear:
        s2 = traits.slope * traits.slope  # type: ignore[operator]
        return (s2 * (c + m1 * m2)).reshape(shape), np.full(shape, s2)
    zero = (m1 == 0.0) & (m2 == 0.0)
    ff, dd = np.empty(c.size), np.empty(c.size)
    closed = shifted = None
    if traits.homogeneous_degree == 1.0 and traits.kinks == (0.0,):
        alpha = float(np.asarray(act.function(np.array([1.0])))[0])
        beta = -float(np.asarray(act.function(np.array([-1.0])))[0])
        closed = lambda a_, b_, c_: bivariate.relu_class(alpha, beta, a_, b_, c_)
        shifted = lambda *args: relu_class_shifted(alpha, beta, *args)
    elif act.expr == sp.erf(sp.Symbol("x", real=True)) or str(act.expr) == "erf(x)":
        closed = bivariate.erf_pair
    rest = ~zero if closed is not None else np.ones(c.size, dtype=bool)
    if closed is not None and zero.any():
        ff[zero], dd[zero] = closed(a[zero], b[zero], c[zero])
    if shifted is not None:  # non-zero means: the truncated bivariate normal's closed form
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = rest & (a > 0) & (b > 0) & (np.abs(c / np.sqrt(a * b)) < RHO_LIMIT)
        if ok.any():
            ff[ok], dd[ok] = shifted(m1[ok], m2[ok], a[ok], b[ok], c[ok])
            rest = rest & ~ok
    independent = rest & (c == 0.0)  # uncorrelated Gaussians: E phi(x) phi(y) = E phi(x) E phi(y)
    if independent.any():
        one = position_moments(act, np.concatenate([m1[independent], m2[independent]]),
                               np.concatenate([a[independent], b[independent]]))
        k = int(independent.sum())
        ff[independent] = one[0, :k] * one[0, k:]
        dd[independent] = one[2, :k] * one[2, k:]
        rest = rest & ~independent
    if rest.any():
        ff[rest], dd[rest] = bivariate.by_quadrature(
            _f(act, "function"), _f(act, "derivative"), act.kinks, m1[rest], m2[rest], a[rest],
            b[rest], c[rest])
    return ff.reshape(shape), dd.reshape(shape)


def _field_pairs(act: Activation, field: Field) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_cov_pairs` of ``field``; for up to :data:`_CACHED_POSITIONS` positions cached by
    field identity (the forward and the backward rule of one walk share the evaluation; larger
    matrices are recomputed rather than kept)."""
    if field.size > _CACHED_POSITIONS:
        return _cov_pairs(act, field.mean, field.variance, np.asarray(field.cov))
    return _cached_pairs(act, field)


#: Largest number of positions whose pair matrices are cached (8 MiB each).
_CACHED_POSITIONS = 1024


@lru_cache(maxsize=16)
def _cached_pairs(act: Activation, field: Field) -> tuple[np.ndarray, np.ndarray]:
    return _cov_pairs(act, field.mean, field.variance, np.asarray(field.cov))


@lru_cache(maxsize=4)
def _batch_pairs(act: Activation, field: Field) -> tuple[np.ndarray, np.ndarray]:
    r"""``(P, P)`` matrices of :math:`E\phi(x_{b,t})\phi(x_{b',t'})` and of the same for
    :math:`\phi'` between two samples (``Field.batch_cov``; every entry, the diagonal included,
    is a pair of two different random variables), cached by field identity."""
    m, v = np.ravel(field.mean), np.ravel(field.variance)
    P = m.size
    i, j = np.triu_indices(P)
    c = np.asarray(field.batch_cov)[i, j] - m[i] * m[j]
    f_ij, d_ij = pair_moments(act, m[i], m[j], v[i], v[j], c)
    ff, dd = np.zeros((P, P)), np.zeros((P, P))
    ff[i, j] = ff[j, i] = f_ij
    dd[i, j] = dd[j, i] = d_ij
    return ff, dd


def _cov_pairs(act: Activation, mean: np.ndarray, var: np.ndarray, cov: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Full ``(P, P)`` matrices of ``E phi phi`` and ``E phi' phi'`` between positions (upper
    triangle evaluated, mirrored; the diagonal from the one-position moments)."""
    m, v = mean.ravel(), var.ravel()
    P = m.size
    i, j = np.triu_indices(P, k=1)
    ff, dd = np.zeros((P, P)), np.zeros((P, P))
    if i.size:
        c = cov[i, j] - m[i] * m[j]
        f_ij, d_ij = pair_moments(act, m[i], m[j], v[i], v[j], c)
        ff[i, j] = ff[j, i] = f_ij
        dd[i, j] = dd[j, i] = d_ij
    mom = position_moments(act, m, v)
    ff[np.arange(P), np.arange(P)] = mom[1]
    dd[np.arange(P), np.arange(P)] = mom[3]
    return ff, dd


def forward(act: Activation, field: Field, layer: object) -> Field:
    """The output field of ``phi`` (module docstring); on a field carrying an exact law
    (``Field.law``: a train-mode BatchNorm's output), the expectations over that law.  The output
    records its Gaussian pre-activation (``Field.pre_activation = (field, act)``) when the input
    is Gaussian (``MaxPool`` needs the joint law of its window)."""
    traits = act.traits
    if field.law is not None and not (traits.linear and traits.slope == 1):
        out = field.law.nonlinearity_forward(act, field)  # type: ignore[attr-defined]
        if out is not None:
            return out
    if traits.linear:
        s = float(traits.slope)  # type: ignore[arg-type]
        s2 = s * s
        pre = (field, act) if field.gaussian else (field.pre_activation if s == 1.0 else None)
        return field.with_(mean=s * field.mean, second=s2 * field.second,
                           cov=None if field.cov is None else s2 * field.cov,
                           batch_cross=None if field.batch_cross is None else s2 * field.batch_cross,
                           batch_cov=None if field.batch_cov is None else s2 * field.batch_cov,
                           pre_activation=pre)
    approx = field.approximations if field.gaussian else field.approximate(_closure_sentence(act))
    var = field.variance
    mom = position_moments(act, field.mean, var)
    cov = None
    if field.cov is not None:
        cov = _field_pairs(act, field)[0]
    bc = bcov = None
    if field.batch_cov is not None:
        bcov = _batch_pairs(act, field)[0]
    elif field.batch_cross is not None:
        c = field.batch_cross - field.mean * field.mean
        bc = pair_moments(act, field.mean, field.mean, var, var, c)[0]
    # a non-Gaussian input is closed as Gaussian (declared above): MaxPool uses the same closure
    return Field(field.shape, field.channel_axis, mom[0], mom[1], cov, bc, gaussian=False,
                 approximations=approx, pre_activation=(field, act), batch_cov=bcov)


def backward(act: Activation, grad: GradField, field_in: Field) -> GradField:
    r"""The gradient field at ``phi``'s input (module docstring); between two samples of a batch
    :math:`E\delta_{z,b}\delta_{z,b'} = E\phi'(z_b)\phi'(z_{b'})\, E\delta_{a,b}\delta_{a,b'}`
    when tracked; on a field carrying an exact law, the law's rule.  A gradient that already
    carries the one at this layer's input (``GradField.preactivation``, set by ``MaxPool``, whose
    routing depends on the pre-activation) is returned as it is."""
    if grad.preactivation is not None:
        return grad.preactivation
    traits = act.traits
    if field_in.law is not None and not (traits.linear and traits.slope == 1):
        out = field_in.law.nonlinearity_backward(act, grad, field_in)  # type: ignore[attr-defined]
        if out is not None:
            return out
    if traits.linear:
        s2 = float(traits.slope) ** 2  # type: ignore[arg-type]
        return grad.with_(second=s2 * grad.second, cov=None if grad.cov is None else s2 * grad.cov,
                          batch_cross=None if grad.batch_cross is None else s2 * grad.batch_cross,
                          batch_cov=None if grad.batch_cov is None else s2 * grad.batch_cov)
    var = field_in.variance
    d2 = position_moments(act, field_in.mean, var)[3]
    cov = None
    if grad.cov is not None:
        if field_in.cov is None:
            raise VarpropError(f"{act.name}: the gradient covariance between positions is tracked "
                               "but the forward one is not (a layer dropped Field.cov)")
        dd = _field_pairs(act, field_in)[1]
        cov = dd * grad.cov
    bc = bcov = None
    if grad.batch_cov is not None:
        if field_in.batch_cov is None:
            raise VarpropError(f"{act.name}: the gradient's between-sample covariance is tracked "
                               "but the forward one is not (a layer dropped Field.batch_cov)")
        bcov = _batch_pairs(act, field_in)[1] * grad.batch_cov
    elif grad.batch_cross is not None:
        if field_in.batch_cross is None:
            raise VarpropError(f"{act.name}: the gradient's between-sample moment is tracked but "
                               "the forward one is not (a layer dropped Field.batch_cross)")
        c = field_in.batch_cross - field_in.mean * field_in.mean
        bc = pair_moments(act, field_in.mean, field_in.mean, var, var, c)[1] * grad.batch_cross
    # with between-sample covariances tracked, pass the factor (act, grad, field_in) down: a
    # train-mode BatchNorm over positions whose output is field_in takes phi'(y) jointly with
    # its Jacobian
    factor = (act, grad, field_in) if bcov is not None and grad.cov is not None else None
    return GradField(field_in.shape, field_in.channel_axis, d2 * grad.second, cov, bc,
                     batch_cov=bcov, factor=factor)


def exact(act: Activation, field_in: Field) -> bool:
    """See :meth:`varprop.network.layers.Nonlinearity.field_exact`."""
    traits = act.traits
    if traits.linear:
        return True
    return bool(traits.exact_at_finite_width and field_in.gaussian and field_in.symmetric
                and not np.any(field_in.mean) and (field_in.cov is None or field_in.size == 1) and field_in.batch_cross is None)


def steps(act: Activation) -> list[tuple[str, object]]:
    """The rules as SymPy equations (symbols per position ``t``)."""
    m, v, g = sp.symbols("m_t v_t G_t", real=True)
    z = sp.Symbol("z", real=True)
    phi = sp.Function("phi")
    E = sp.Function("E")
    return [
        ((f"forward: each position's pre-activation is N(m_t, v_t); the output's second moment "
          f"is the Gaussian expectation of {act.name}(z)^2"),
         sp.Eq(sp.Symbol("E[a_t^2]"), E(phi(z) ** 2))),
        ("backward: the derivative is independent of the incoming gradient (gradient independence)",
         sp.Eq(sp.Symbol("E[delta_{z,t}^2]"), E(sp.Derivative(phi(z), z) ** 2) * g)),
        ("where the position's pre-activation has mean m_t and variance v_t",
         sp.Eq(sp.Symbol("z"), m + sp.sqrt(v) * sp.Symbol("xi"))),
    ]
