r"""The mean-field recursions of :class:`~varprop.layers.Recurrent` over time (forward kernel and
back-propagation through time), as plain functions of arrays.

Notation (one recurrent layer, width :math:`n`, input width :math:`n_{in}`, :math:`T` steps):
:math:`z_t = W h_{t-1} + U x_t + b`, :math:`h_t = \phi(z_t)`, :math:`h_0 = 0`;
:math:`v_w = \sigma_w^2` and :math:`v_u = \sigma_u^2` the entry variances of :math:`W` and
:math:`U`, :math:`\sigma_b^2` the bias variance.  At infinite width the pre-activations of one
unit over time, :math:`(z_{i,1}, \dots, z_{i,T})`, are a centred Gaussian process with kernel

.. math::

    K_{t,s} = v_w n\, E[\phi(z_{t-1})\phi(z_{s-1})] + v_u n_{in}\, E[x_t x_s] + \sigma_b^2,
    \qquad E[\phi(z_0)\,\cdot\,] := 0,

(Yang 2019, *Wide feedforward or recurrent neural networks of any architecture are Gaussian
processes*; the diagonal :math:`q_t = K_{t,t}` is the recursion of Chen, Pennington & Schoenholz
2018, *Dynamical isometry and a mean field theory of RNNs*).  Backward, with
:math:`\delta_t = \partial L/\partial z_t = \phi'(z_t)\odot(g_t + W^\top \delta_{t+1})`,
:math:`\delta_{T+1} = 0`, and gradient independence:

.. math::

    E[\delta_t\delta_s] = E[\phi'(z_t)\phi'(z_s)]\,\big(G_{t,s} + v_w n\, E[\delta_{t+1}
    \delta_{s+1}]\big), \qquad E[(U^\top\delta_t)(U^\top\delta_s)] = v_u n\, E[\delta_t\delta_s].

The pair expectations :math:`E[f(x)f(y)]` for :math:`(x, y) \sim N(0, [[a, c], [c, b]])` use the
arc-cosine closed form (Cho & Saul 2009) for positively homogeneous activations of degree 1 with a
kink at 0 only (ReLU, leaky ReLU, ``abs``), the identity for linear ones, and a 96 x 96
Gauss-Hermite rule otherwise (for tanh: absolute error below :math:`10^{-10}` at variances up to 1,
:math:`10^{-7}` up to 2, :math:`3 \cdot 10^{-6}` for :math:`\phi'` at variance 3 and correlation
0.97, measured against scipy ``dblquad``); the diagonal moments (:math:`E\phi^2`, :math:`E\phi'^2`,
:math:`E\phi`) come from the activation's own exact one-dimensional rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from varprop._math import bivariate
from varprop.components.activation import Activation
from varprop.errors import VarpropError

__all__ = ["Kernel", "backward_bptt", "forward_kernel", "pair_expectations"]

_GH_T, _GH_W = np.polynomial.hermite_e.hermegauss(96)
_GH_W = _GH_W / math.sqrt(2.0 * math.pi)
#: Pairs integrated at once by the Gauss-Hermite rule (bounds the temporary arrays to ~20 MB).
_CHUNK = 256


def pair_expectations(act: Activation, a: np.ndarray, b: np.ndarray, c: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`(E[\phi(x)\phi(y)], E[\phi'(x)\phi'(y)])` for :math:`(x, y) \sim N(0, [[a, c],
    [c, b]])`, elementwise over arrays of variances ``a``, ``b`` and covariances ``c``: exact for
    linear :math:`\phi` (:math:`s^2 c`, :math:`s^2`) and the ReLU class (the arc-cosine kernel of
    :func:`varprop._math.bivariate.relu_class`), a tensor Gauss-Hermite rule otherwise (each
    distinct triple once; the conditional quadrature of :mod:`varprop._math.bivariate` is about
    30 times slower on the :math:`T(T-1)/2` distinct pairs of a recurrent kernel)."""
    a, b, c = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(a, b, c))
    tr = act.traits
    if tr.linear:
        s2 = float(tr.slope) ** 2  # type: ignore[arg-type]
        return s2 * c, np.full(c.shape, s2)
    if tr.homogeneous_degree == 1.0 and tr.kinks == (0.0,):
        up = float(np.asarray(act.function(np.array([1.0])))[0])
        down = -float(np.asarray(act.function(np.array([-1.0])))[0])  # phi(x) = down x, x < 0
        ff, dd = bivariate.relu_class(up, down, a.ravel(), b.ravel(), c.ravel())
        return np.reshape(ff, a.shape), np.reshape(dd, a.shape)
    triples, where = bivariate.unique_rows(a, b, c)  # stationary regimes repeat exactly
    ff, dd = np.empty(len(triples)), np.empty(len(triples))
    for lo in range(0, len(triples), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        ff[sl], dd[sl] = _gauss_hermite(act, *triples[sl].T)
    return ff[where].reshape(a.shape), dd[where].reshape(a.shape)


def _gauss_hermite(act: Activation, a: np.ndarray, b: np.ndarray, c: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`x = \sqrt a\, u`, :math:`y = (c/\sqrt a)\, u + \sqrt{b - c^2/a}\, e` with
    :math:`u, e` i.i.d. :math:`N(0, 1)` on the tensor Gauss-Hermite grid."""
    sa = np.sqrt(np.maximum(a, 0.0))
    slope = np.where(sa > 0, c / np.where(sa > 0, sa, 1.0), 0.0)
    resid = np.sqrt(np.maximum(b - slope * slope, 0.0))
    x = sa[:, None] * _GH_T[None, :]  # (pairs, u): x depends on u only
    y = slope[:, None, None] * _GH_T[None, :, None] + resid[:, None, None] * _GH_T[None, None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.einsum("pi,pij,i,j->p", act.function(x), act.function(y), _GH_W, _GH_W,
                      optimize=True)
        d = np.einsum("pi,pij,i,j->p", act.derivative_function(x), act.derivative_function(y),
                      _GH_W, _GH_W, optimize=True)
    return f, d


@dataclass(frozen=True)
class Kernel:
    r"""The forward mean field of a recurrent layer over its ``T`` steps: per step the
    pre-activation variance ``q`` and :math:`E\phi`, :math:`E\phi^2`, :math:`E\phi'^2`; with
    ``full``, the ``(T, T)`` matrices ``K`` (pre-activations), ``C`` (:math:`E h_t h_s`) and
    ``D`` (:math:`E\phi'(z_t)\phi'(z_s)`); ``batch_cross`` (:math:`E h_{b,t} h_{b',t}`) and
    ``batch_cross_deriv`` (:math:`E \phi'(z_{b,t})\phi'(z_{b',t})`) when asked for."""

    q: np.ndarray
    mean: np.ndarray
    second: np.ndarray
    deriv_second: np.ndarray
    K: np.ndarray | None = None
    C: np.ndarray | None = None
    D: np.ndarray | None = None
    batch_cross: np.ndarray | None = None
    batch_cross_deriv: np.ndarray | None = None


def forward_kernel(act: Activation, vw_n: float, vu_nin: float, bias_variance: float,
                   x_second: np.ndarray, x_cov: np.ndarray | None = None,
                   x_batch_cross: np.ndarray | None = None) -> Kernel:
    r"""The kernel recursion of the module docstring: ``vw_n`` :math:`= v_w n`, ``vu_nin``
    :math:`= v_u n_{in}`, ``x_second`` :math:`E x_t^2` (``T``), ``x_cov`` :math:`E x_t x_s`
    (``(T, T)``: then the full matrices are computed), ``x_batch_cross``
    :math:`E x_{b,t} x_{b',t}` (two samples of one batch, ``T``)."""
    T = len(x_second)
    q, mean, second, d2 = (np.zeros(T) for _ in range(4))
    cache: dict[float, tuple[float, float, float, float]] = {}
    prev = 0.0
    for t in range(T):
        with np.errstate(over="ignore", invalid="ignore"):
            q[t] = vw_n * prev + vu_nin * x_second[t] + bias_variance
        if not math.isfinite(q[t]):
            raise VarpropError(
                f"the recurrent pre-activation variance is not finite at step {t + 1} (q = "
                f"{q[t]!r}): the recursion overflows; use fewer steps or a smaller weight scale")
        if q[t] not in cache:
            cache[q[t]] = act.gaussian_moments(0.0, float(q[t]))
        mean[t], second[t], _, d2[t] = cache[q[t]]
        prev = second[t]
    K = C = D = bc = bcd = None
    if x_cov is not None:
        K, C, D = np.zeros((T, T)), np.diag(second), np.diag(d2)
        np.fill_diagonal(K, q)
        for t in range(1, T):
            s = np.arange(t)
            h_prev = np.concatenate([[0.0], C[t - 1, : t - 1]])  # E h_{t-1} h_{s-1}, h_0 = 0
            K[t, :t] = vw_n * h_prev + vu_nin * x_cov[t, :t] + bias_variance
            C[t, :t], D[t, :t] = pair_expectations(act, q[t], q[s], K[t, :t])
            K[:t, t], C[:t, t], D[:t, t] = K[t, :t], C[t, :t], D[t, :t]
    if x_batch_cross is not None:
        bc, bcd = np.zeros(T), np.zeros(T)
        prev = 0.0
        for t in range(T):
            cz = vw_n * prev + vu_nin * x_batch_cross[t] + bias_variance
            bc[t], bcd[t] = pair_expectations(act, q[t], q[t], cz)
            prev = bc[t]
    for name, arr in (("E h^2", second), ("E h_t h_s", C), ("between-sample E h h'", bc)):
        if arr is not None and not np.all(np.isfinite(arr)):
            raise VarpropError(f"the recurrent mean field gave a non-finite {name}: the "
                               "recursion overflows; use fewer steps or a smaller weight scale")
    return Kernel(q, mean, second, d2, K, C, D, bc, bcd)


def backward_bptt(kernel: Kernel, vw_n: float, grad_second: np.ndarray,
                  grad_cov: np.ndarray | None = None, grad_batch_cross: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r""":math:`E\delta_t^2` (``T``) and, with ``grad_cov`` (:math:`G_{t,s}`, needs
    ``kernel.D``), :math:`E\delta_t\delta_s` (``(T, T)``) by the backward recursion of the module
    docstring from the output-gradient moments :math:`G_{t,t}` (``grad_second``); with
    ``grad_batch_cross`` (:math:`E g_{b,t} g_{b',t}`, needs ``kernel.batch_cross_deriv``) the
    between-sample :math:`E\delta_{b,t}\delta_{b',t} = E\phi'(z_{b,t})\phi'(z_{b',t})\,(E g_{b,t}
    g_{b',t} + v_w n\, E\delta_{b,t+1}\delta_{b',t+1})` (the same :math:`W` for every sample)."""
    T = len(kernel.q)
    e = np.zeros(T)
    nxt = 0.0
    for t in range(T - 1, -1, -1):
        e[t] = kernel.deriv_second[t] * (grad_second[t] + vw_n * nxt)
        nxt = e[t]
    cov = None
    if grad_cov is not None:
        assert kernel.D is not None
        cov = np.zeros((T + 1, T + 1))  # row/column T: delta_{T+1} = 0
        for t in range(T - 1, -1, -1):
            cov[t, :T] = kernel.D[t] * (grad_cov[t] + vw_n * cov[t + 1, 1:])
        cov = cov[:T, :T]
        np.fill_diagonal(cov, e)
    bc = None
    if grad_batch_cross is not None:
        assert kernel.batch_cross_deriv is not None
        bc = np.zeros(T)
        nxt = 0.0
        for t in range(T - 1, -1, -1):
            bc[t] = kernel.batch_cross_deriv[t] * (grad_batch_cross[t] + vw_n * nxt)
            nxt = bc[t]
    if not np.all(np.isfinite(e)):
        raise VarpropError("back-propagation through time overflows in the mean field (E "
                           "delta^2 is not finite): use fewer steps or a smaller weight scale")
    return e, cov, bc
