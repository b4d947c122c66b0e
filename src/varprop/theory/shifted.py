r"""Non-zero-mean weights: the mean-field recursion conditional on the layer-1 shared shift.

Why a closure on :math:`(m, D, C)` fails
----------------------------------------
Write :math:`W_{l,ij} = \mu_w + \sigma_w \varepsilon_{ij}`.  Every unit of layer :math:`l` carries
the same **shared shift** :math:`s_l = \mu_w \sum_j a_{l-1,j}`:

.. math:: z_{l,i} = s_l + \sigma_w \textstyle\sum_j \varepsilon_{ij} a_{l-1,j} + b_{l,i}.

The layer-1 shift :math:`s_1 = \mu_w \sum_j x_j \sim N(0, \mu_w^2 n_0 \sigma_x^2)` is Gaussian
(the inputs are i.i.d. :math:`N(0, \sigma_x^2)`), but :math:`s_2 = \mu_w \sum_j \phi(z_{1,j})` is,
at large width, a deterministic *nonlinear* function of :math:`s_1` (e.g. always positive for ReLU),
so treating the units of layer 2 and beyond as jointly Gaussian (the old :math:`(m, D, C)`
closure) is wrong from layer 3 on whenever :math:`\phi` is not linear (+49% for ReLU, U[0,1),
width 256, depth 3).

The recursion
-------------
Condition on the standardised layer-1 shift :math:`u = s_1 / \sqrt{\mu_w^2 n_0 \sigma_x^2} \sim
N(0, 1)`.  At large width, given :math:`u`, each layer's shift is deterministic (its own
fluctuation :math:`\mu_w \sqrt{n \operatorname{Var}\phi}` is :math:`O(n^{-1/2})` relative to
:math:`s_{l+1}`) and the units are i.i.d. :math:`N(m_l(u), q_l(u))` (central limit theorem in the
weights' random part):

.. math::

    m_1 = \mu_w \sqrt{n_0}\, \sigma_x u, \qquad
    q_1 = \sigma_w^2 \sigma_x^2 (n_0 - 1 + u^2) + \sigma_b^2

(:math:`E[\|x\|^2 \mid u] = \sigma_x^2 (n_0 - 1 + u^2)`, exact for Gaussian inputs), and with
:math:`A_m, A_D, B, B_D` the moments :math:`E\phi, E\phi^2, E\phi', E\phi'^2` of
:math:`z \sim N(m_l, q_l)` and :math:`n = n_l`,

.. math::

    m_{l+1} = \mu_w n A_m, \qquad q_{l+1} = \sigma_w^2 n A_D + \sigma_b^2 .

The moments of layer :math:`l` are averages over :math:`u`: :math:`E z = E_u m`,
:math:`E z^2 = E_u[m^2 + q]`, :math:`E z_i z_k = E_u[m^2]`, :math:`E a = E_u A_m`,
:math:`E a^2 = E_u A_D`, :math:`E a_i a_k = E_u[A_m^2]`.

Backward, with the gradient-independence assumption (:math:`\phi'(z_{l-1})` independent of
:math:`g_l = W_l^\top \delta_l` given :math:`u`) and :math:`G_D = E[\delta_i^2 \mid u]`,
:math:`G_C = E[\delta_i \delta_k \mid u]` (1 and 0 at the last layer, where :math:`\delta_L` is
independent of everything), :math:`n = n_l`:

.. math::

    H_D = \sigma_w^2 n G_D + \mu_w^2 (n G_D + n(n-1) G_C), \quad
    H_C = \mu_w^2 (n G_D + n(n-1) G_C), \quad
    G_D' = B_D H_D, \quad G_C' = B^2 H_C

(:math:`H_C` is the second moment of the shared backward shift :math:`t_l = \mu_w \sum_i
\delta_{l,i}`), and :math:`E g^2 = E_u H_D`, :math:`E(\partial\mathcal L/\partial W_l)_{ij}^2 =
E_u[G_{D,l}\, A_{D,l-1}]` with :math:`E[x_j^2 \mid u] = \sigma_x^2 (n_0 - 1 + u^2) / n_0`.

Accuracy: at finite width the neglected shift fluctuations are an :math:`O(1/n)` relative
error where the layer's shift is far from the activation's nonlinearity.  Measured against an
independent NumPy Monte Carlo (ReLU, tanh, sigmoid; :math:`U[0,1)` and :math:`U[-0.1,0.3)`;
widths 32..512; layers 1..10): ReLU with :math:`U[-0.1,0.3)` -7.1%, -2.4%, -1.3% at widths 32,
64, 128 (about :math:`-2.4/n`, not growing with depth); tanh within the noise (:math:`\le 0.5\%`)
from layer 3 on; sigmoid :math:`\operatorname{Var} z` within the noise except layer 3 with
:math:`U[0,1)` (-2.4%, -4.4%, -4.5%, -7.1%, -8.3% at widths 32..512: a rare-shift region, where
layer 2's shift is small enough for layer 3 not to saturate, carries a fixed share of that
variance, and there the shift's fluctuation matters at first order).  Adding the shifts'
fluctuation as a Gaussian (a bivariate-Gaussian closure conditional on :math:`u`, with a
first-order or the exact covariance) helped ReLU and sigmoid but made tanh worse (-1% to -5%
from layer 3 on): a saturating layer's shift is not Gaussian, so it is left out.  Backward (gradient at the input, width 64/256, depth 3): ReLU
and tanh within the noise (ReLU, U[0,1), width 64: 0.0% +- 1.5%), but at the inputs of ReLU's
hidden layers +10.5% (width 64) and +6.1% (width 256): networks that die after a very negative
layer-1 shift are kept alive by the Gaussian mean field.  **The gradient through saturating
layers is not reliable.**  Sigmoid with :math:`U[-0.1, 0.3)`: +7% at depth 3, +31% at depth 4,
+75% at depth 5, about :math:`\times 1.33` per layer at widths 64 and 256 alike: with a non-zero
weight mean, each weight's own :math:`O(1)` share of :math:`z_i` tilts
:math:`\phi'(z_i) \propto e^{-z_i}`, so the backward shift sees the tilted weight mean
:math:`E[W e^{-W}]/E[e^{-W}]` instead of :math:`\mu_w`, which gradient independence ignores
(an outside review's derivation; not corrected here).  For tanh and erf the ensemble gradient is
carried by rare networks whose shift nearly cancels (tanh, :math:`U[0,1)`, width 64, depth 5:
simulated :math:`2.3\cdot 10^6` +- 24%, predicted :math:`1.6\cdot 10^6`); the checker reports
such rows inconclusive (heavy tails) or refutes them.  Linear
activations do not use this module: their :math:`(D, C)` recursion in :mod:`varprop.theory.predict` is
exact at every width.

Numerics: the average over :math:`u` is a composite Gauss--Legendre rule on :math:`|u| \le 10`
(:data:`OUTER_PANELS` panels of :data:`OUTER_POINTS` points, plus panels graded geometrically
down to :math:`|u| = 10^{-11}`, or to :math:`10^{-301}` when an average is concentrated in its
innermost decade, where the shifts of odd activations change sign and become sharp in
:math:`u` at depth; for odd activations a shift below :data:`SMALL_SHIFT` standard deviations
uses :math:`E\phi(m + \sqrt q z) = m E\phi'(\sqrt q z)`, since quadrature noise (~1e-17) would
swamp it; the Gaussian mass beyond :math:`|u| = 10` is :math:`1.5\cdot 10^{-23}`), all
nodes at once (against four times as many panels: :math:`10^{-12}` relative for ReLU and
sigmoid, :math:`3\cdot 10^{-7}` for tanh at depth 10 and width 512); each Gaussian expectation is the composite
16-point rule of :mod:`varprop._math.quadrature` (panels of width 1 in the standardised variable, split
at the activation's kinks and at :math:`x = 0, \pm 2^k`), vectorised over the nodes, with the
scalar routine (wider windows, divergence detection) for any node whose tail is not negligible
(tested on :math:`|v| w \max(|v|, 1)`, which bounds the tails of :math:`v` and :math:`v^2`).
The forward recursion stops once the node state is bitwise the one entering the identical layer
before (saturating activations reach it in a few tens of layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from varprop._math import quadrature as _q
from varprop.components.activations import MOMENTS, Activation, is_odd
from varprop.errors import VarpropError

__all__ = ["ShiftedMoments", "shifted_recursion", "OUTER_PANELS", "OUTER_POINTS"]

OUTER_HALF_WIDTH = 10.0
OUTER_PANELS = 160
OUTER_POINTS = 8
OUTER_GRADED = 10


#: Decades graded towards u = 0 in the fallback rule, used when the default one is not resolved.
DEEP_GRADED = 300
#: Largest share of an average that its innermost decade (|u| < 10^-graded) may carry.
UNRESOLVED_SHARE = 1e-6


@lru_cache(maxsize=2)
def _outer_rule(graded: int = OUTER_GRADED) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(OUTER_POINTS)
    # graded towards u = 0, where odd activations' shifts change sign (sharp in u at depth)
    graded = np.concatenate([s * 10.0 ** -np.arange(2.0, 2.0 + graded) for s in (-1.0, 1.0)])
    edges = np.union1d(np.linspace(-OUTER_HALF_WIDTH, OUTER_HALF_WIDTH, OUTER_PANELS + 1), graded)
    a, b = edges[:-1, None], edges[1:, None]
    u = (a + (b - a) * (x + 1.0) / 2.0).ravel()
    wu = ((b - a) * w / 2.0).ravel() * np.exp(-0.5 * u * u) * _q._INV_SQRT_2PI
    return u, wu / wu.sum()  # normalised: E_u[1] = 1 exactly up to rounding


_U, _WU = _outer_rule(OUTER_GRADED)
#: Memory of the recursion per layer: three node arrays kept for the backward pass, the
#: per-layer results and the widths.
BYTES_PER_LAYER = 3 * 8 * _U.size + 9 * 8 + 8
#: Closed forms are used where the standardised mean is at least -3 (no cancellation).
_CLOSED_FORM_MIN_R = 3.0
_BASE = np.arange(-_q._HALF_WIDTH, _q._HALF_WIDTH + 0.5, 1.0)


def _stack(act: Activation, x: np.ndarray) -> np.ndarray:
    """``(phi, phi^2, phi', phi'^2)`` at ``x``."""
    f = np.broadcast_to(act.function(x), x.shape)
    d = np.broadcast_to(act.derivative_function(x), x.shape)
    return np.stack([f, f * f, d, d * d])


def gaussian_moments_many(act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    r"""``(4, N)``: :math:`E\phi, E\phi^2, E\phi', E\phi'^2` for :math:`z \sim N(m_k, v_k)`.

    Finite means and variances only; ``var == 0`` gives the values at the mean.
    """
    out = np.empty((4, mean.size))
    zero = var == 0.0
    if zero.any():
        x = mean[zero]
        f, d = np.broadcast_to(act.function(x), x.shape), np.broadcast_to(act.derivative_function(x), x.shape)
        out[:, zero] = np.stack([f, f * f, d, d * d])
    rows = ~zero
    rules = act.closed_form
    if rows.any() and rules is not None and rules.exact and not rules.zero_mean_only:
        # exact closed forms at any mean (ReLU family): vectorised, no quadrature
        with np.errstate(all="ignore"):
            closed = np.stack([rules.vectorized[name](mean[rows], var[rows]) for name in MOMENTS])
            # below mu/sqrt(q) = -3 the formulas cancel (Phi(r) and r Phi(r) + pdf(r) lose their
            # digits: a negative E relu(z)^2 at r = -10), so those nodes go to quadrature
            standardised = mean[rows] / np.sqrt(var[rows])
        good = (np.all(np.isfinite(closed), axis=0) & (standardised >= -_CLOSED_FORM_MIN_R)
                & (closed[1] >= 0.0) & (closed[3] >= 0.0))
        idx = np.flatnonzero(rows)
        out[:, idx[good]] = closed[:, good]
        rows = rows.copy()
        rows[idx[good]] = False  # anything non-finite goes to quadrature below
    if not rows.any():
        return out
    m, s = mean[rows], np.sqrt(var[rows])
    pts = np.concatenate([_q._SCALE_POINTS, np.asarray(act.kinks, float)])
    extra = np.clip((pts[None, :] - m[:, None]) / s[:, None], -_q._HALF_WIDTH, _q._HALF_WIDTH)
    edges = np.sort(np.concatenate([np.broadcast_to(_BASE, (m.size, _BASE.size)), extra], axis=1), axis=1)
    a, b = edges[:, :-1, None], edges[:, 1:, None]
    t = (a + (b - a) * _q._NODES).reshape(m.size, -1)
    w = ((b - a) * _q._WEIGHTS).reshape(m.size, -1) * np.exp(-0.5 * t * t) * _q._INV_SQRT_2PI
    x = m[:, None] + s[:, None] * t
    f = np.broadcast_to(act.function(x), x.shape)
    d = np.broadcast_to(act.derivative_function(x), x.shape)
    fw, dw = f * w, d * w
    total = np.stack([fw.sum(axis=1), (fw * f).sum(axis=1), dw.sum(axis=1), (dw * d).sum(axis=1)])
    ok = np.all(np.isfinite(total), axis=0)
    for v, vw in ((f, fw), (d, dw)):  # the tail test of varprop._math.quadrature, for phi and phi'
        a = np.abs(v)
        scale = (np.abs(vw) * np.maximum(a, 1.0)).sum(axis=1)  # bounds the scales of v and v^2
        tail = np.maximum(np.abs(vw[:, 0]) * np.maximum(a[:, 0], 1.0), np.abs(vw[:, -1]) * np.maximum(a[:, -1], 1.0))
        ok &= np.isfinite(scale) & (tail <= _q._TAIL_RTOL * scale)
    idx = np.flatnonzero(rows)
    out[:, idx[ok]] = total[:, ok]
    for k in np.flatnonzero(~ok):  # fast-growing activations: the scalar rule widens its window
        mk, sk = float(m[k]), float(s[k])
        out[:, idx[k]] = _q.gaussian_expectations(
            [lambda x: _stack(act, x)], mk, sk * sk, act.kinks)[0]
    return out


def overflowed_moments(act: Activation, mean: float
                        ) -> tuple[float, float, float, float, float, float]:
    r"""The limits of ``varprop.theory.predict._general_moments`` once the pre-activation's mean or variance has left
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


def _overflowed(act: Activation, mean: np.ndarray) -> np.ndarray:
    """``(4, N)`` limits once a node's mean or variance has left the float range."""
    out = np.empty((4, mean.size))
    # only three cases: the mean at +inf, at -inf, or finite with an infinite variance
    key = np.where(np.isinf(mean), np.sign(mean), 0.0)
    for k in np.unique(key):
        e_m, e_2, _, e_d, e_d2, _ = overflowed_moments(act, float(k) * math.inf if k else 0.0)
        out[:, key == k] = np.array([e_m, e_2, e_d, e_d2])[:, None]
    return out


#: Below |m| = SMALL_SHIFT sqrt(q), odd activations use the first-order expansion in the mean.
SMALL_SHIFT = 1e-6


def _moments(act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    r"""The four moments at every node.  For an odd activation and a shift below
    :data:`SMALL_SHIFT` standard deviations, :math:`E\phi(m + \sqrt q z) = m E\phi'(\sqrt q z)
    + O(m^3)` and the other three moments are their values at :math:`m = 0` up to
    :math:`O(m^2/q) \le 10^{-12}`: quadrature at such a mean would return its rounding noise
    (~1e-17) for a shift of 1e-20, which deep layers multiply by :math:`(\mu_w n E\phi')^L`."""
    if is_odd(act):
        with np.errstate(all="ignore"):
            small = np.isfinite(var) & (var > 0) & (np.abs(mean) <= SMALL_SHIFT * np.sqrt(var))
        if small.any():
            out = np.empty((4, mean.size))
            at_zero = _moments_general(act, np.zeros(int(small.sum())), var[small])
            at_zero[0] = mean[small] * at_zero[2]
            out[:, small] = at_zero
            if (~small).any():
                out[:, ~small] = _moments_general(act, mean[~small], var[~small])
            return out
    return _moments_general(act, mean, var)


def _moments_general(act: Activation, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    finite = np.isfinite(mean) & np.isfinite(var)
    if finite.all():
        return gaussian_moments_many(act, mean, var)
    if np.isnan(mean).any() or np.isnan(var).any():
        raise VarpropError("a moment is 0 * inf: the variances leave the float range in both "
                           "directions; reduce depth or rescale")
    out = np.empty((4, mean.size))
    out[:, finite] = gaussian_moments_many(act, mean[finite], var[finite])
    out[:, ~finite] = _overflowed(act, mean[~finite])
    return out


@dataclass(frozen=True)
class ShiftedMoments:
    """Per-layer moments (lists over layers ``1..L``), as in :class:`varprop.theory.predict.Propagation`."""

    z_m: list[float]
    z_d: list[float]
    z_c: list[float]
    a_m: list[float]
    a_d: list[float]
    a_c: list[float]
    grad: list[float]
    delta: list[float]
    wgrad: list[float]


class _Averager:
    r""":math:`E_u[x]` by the outer rule, remembering the largest share of an average that the
    innermost decade :math:`|u| < 10^{-g}` carries (a smooth integrand gives ~1e-11: a large share
    means the integrand is concentrated at the shift's sign change, beyond the rule's grading)."""

    def __init__(self, graded: int) -> None:
        self.u, self.w = _outer_rule(graded)
        self.inner = np.abs(self.u) < 10.0 ** -graded
        self.share = 0.0

    def __call__(self, x: np.ndarray) -> float:
        total = float(self.w @ x)
        if total != 0.0 and math.isfinite(total):
            self.share = max(self.share, abs(float(self.w[self.inner] @ x[self.inner]) / total))
        return total


def _tail(widths: tuple[int, ...]) -> int:
    """Smallest 0-based layer index from which every layer has the same (fan-in, fan-out)."""
    t = len(widths) - 2
    while t >= 1 and widths[t] == widths[t + 1] == widths[-1]:
        t -= 1
    return t + 1


def shifted_recursion(act: Activation, widths: tuple[int, ...], moments: list[tuple[float, float]],
                      input_variance: float, bias_variance: float) -> ShiftedMoments:
    """The recursion of the module docstring; ``moments[l] = (mu_w, sigma_w^2)`` of layer ``l+1``.

    Once the node state entering a layer is bitwise the one entering the identical layer before
    it, every later layer repeats it and is not recomputed (likewise backward).  When an average
    over :math:`u` is concentrated in its innermost decade (the gradient of a deep saturating
    network is carried by the networks whose shift nearly cancels), the recursion is redone with
    the rule graded down to :math:`|u| = 10^{-301}`; if that is not resolved either, a
    :class:`~varprop.VarpropError` says so rather than returning an artefact (a spurious 0).
    """
    out = _recursion(act, widths, moments, input_variance, bias_variance, avg := _Averager(OUTER_GRADED))
    if avg.share <= UNRESOLVED_SHARE:
        return out
    out = _recursion(act, widths, moments, input_variance, bias_variance, avg := _Averager(DEEP_GRADED))
    if avg.share <= UNRESOLVED_SHARE:
        return out
    raise VarpropError(
        f"the average over the layer-1 shift is not resolved: {avg.share:.2g} of it comes from "
        f"networks whose shift |u| < 1e-{DEEP_GRADED} (the unsaturated networks that carry a deep "
        "saturating network's gradient with non-zero-mean weights); reduce depth")


def _recursion(act: Activation, widths: tuple[int, ...], moments: list[tuple[float, float]],
               input_variance: float, bias_variance: float, _avg: _Averager) -> ShiftedMoments:
    L = len(widths) - 1
    n0 = widths[0]
    u = _avg.u
    mu1 = moments[0][0]
    tail = _tail(widths)
    with np.errstate(all="ignore"):
        x2 = input_variance * (n0 - 1.0 + u * u) / n0  # E[x_j^2 | u]
        m = mu1 * math.sqrt(n0 * input_variance) * u
        q = moments[0][1] * n0 * x2 + bias_variance
        prev_ad = [x2]
        b_d: list[np.ndarray] = []
        b_c: list[np.ndarray] = []
        out = ShiftedMoments(*([] for _ in range(9)))
        last: tuple[np.ndarray, np.ndarray] | None = None
        for l in range(L):
            if l - 1 >= tail and last is not None and np.array_equal(m, last[0]) and np.array_equal(q, last[1]):
                break
            last = (m, q)
            a_m, a_d, b1, bd = _moments(act, m, q)
            out.z_m.append(_avg(m))
            out.z_d.append(_avg(m * m + q))
            out.z_c.append(_avg(m * m))
            out.a_m.append(_avg(a_m))
            out.a_d.append(_avg(a_d))
            out.a_c.append(_avg(a_m * a_m))
            prev_ad.append(a_d)
            b_d.append(bd)
            b_c.append(b1 * b1)
            if l + 1 < L:
                n = widths[l + 1]
                mu, v = moments[l + 1]
                m = mu * n * a_m
                q = v * n * a_d + bias_variance
        k = len(out.z_m)
        for seq in (out.z_m, out.z_d, out.z_c, out.a_m, out.a_d, out.a_c):
            seq.extend([seq[-1]] * (L - k))

        g_d, g_c = np.ones_like(u), np.zeros_like(u)
        grad, delta, wgrad = [0.0] * L, [0.0] * L, [0.0] * L
        low = max(k, tail, 1)  # layers l >= low use identical inputs
        last_g: tuple[np.ndarray, np.ndarray] | None = None
        l = L - 1
        while l >= 0:
            if (l >= low and l + 1 <= L - 1 and last_g is not None and np.array_equal(g_d, last_g[0])
                    and np.array_equal(g_c, last_g[1])):
                for arr in (grad, delta, wgrad):
                    arr[low:l + 1] = [arr[l + 1]] * (l + 1 - low)
                l = low - 1
                continue
            last_g = (g_d, g_c)
            n_out = widths[l + 1]
            mu, v = moments[l]
            delta[l] = _avg(g_d)
            wgrad[l] = _avg(g_d * prev_ad[min(l, k)])
            s2 = mu * mu * (n_out * g_d + n_out * (n_out - 1.0) * g_c)
            h_d = v * n_out * g_d + s2
            grad[l] = _avg(h_d)
            if l > 0:
                g_d, g_c = b_d[min(l, k) - 1] * h_d, b_c[min(l, k) - 1] * s2
            l -= 1
    return ShiftedMoments(out.z_m, out.z_d, out.z_c, out.a_m, out.a_d, out.a_c, grad, delta, wgrad)
