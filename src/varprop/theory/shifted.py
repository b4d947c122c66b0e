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

In a general :class:`~varprop.Network` the conditioning variable is the shift of the *first*
Dense layer with non-zero-mean weights: the layers before it (zero-mean weights) are walked
unconditionally, and its shift :math:`\mu_w \sum_j a_j \sim N(\mu_w n A_m, \mu_w^2 n (A_D -
A_m^2))` is standardised to :math:`u` (:func:`varprop.network.state.conditioned_state`).  A later
non-zero-mean layer's shift is taken as deterministic given :math:`u`, which needs its input's
conditional mean to dominate the fluctuation (:math:`n A_m \gg \sqrt{n \operatorname{Var}\phi}`);
where the conditional mean vanishes (an odd activation after zero-mean weights inside the
conditioned part) the shift is pure fluctuation and the walk refuses the network rather than
drop it.

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
activations do not use this module: their :math:`(D, C)` closure (the unconditional state of
:mod:`varprop.network.state`) is exact at every width.

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
The layers' rules act on the node state (:class:`varprop.network.state.MomentState` with arrays
over the nodes) and the one walk of :mod:`varprop.theory.meanfield` applies them, stopping once
the node state is bitwise the one entering the identical layer before (saturating activations
reach it in a few tens of layers); the vectorised expectations are
:func:`varprop.theory.moments.node_moments`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from varprop._math import quadrature as _q
from varprop.errors import VarpropError
from varprop.network.model import Network
from varprop.network.state import MomentEvaluator
from varprop.theory.meanfield import (
    BackwardWalk,
    ForwardWalk,
    walk_backward,
    walk_forward,
)

__all__ = ["shifted_walks", "OUTER_PANELS", "OUTER_POINTS", "BYTES_PER_LAYER"]

OUTER_HALF_WIDTH = 10.0
OUTER_PANELS = 160
OUTER_POINTS = 8
OUTER_GRADED = 10


#: Decades graded towards u = 0 in the fallback rule, used when the default one is not resolved.
DEEP_GRADED = 300
#: Largest share of an average that its innermost decade (|u| < 10^-graded) may carry.
UNRESOLVED_SHARE = 1e-6


def _outer_edges(graded: int) -> tuple[np.ndarray, np.ndarray]:
    """The uniform panel edges and the edges graded towards u = 0, where odd activations' shifts
    change sign (sharp in u at depth)."""
    graded_edges = np.concatenate([s * 10.0 ** -np.arange(2.0, 2.0 + graded) for s in (-1.0, 1.0)])
    return np.linspace(-OUTER_HALF_WIDTH, OUTER_HALF_WIDTH, OUTER_PANELS + 1), graded_edges


@lru_cache(maxsize=2)
def _outer_rule(graded: int = OUTER_GRADED) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(OUTER_POINTS)
    edges = np.union1d(*_outer_edges(graded))
    a, b = edges[:-1, None], edges[1:, None]
    u = (a + (b - a) * (x + 1.0) / 2.0).ravel()
    wu = ((b - a) * w / 2.0).ravel() * np.exp(-0.5 * u * u) * _q.INV_SQRT_2PI
    return u, wu / wu.sum()  # normalised: E_u[1] = 1 exactly up to rounding


#: Memory of the recursion per layer: three node arrays kept for the backward pass, the
#: per-layer results and the widths.  The nodes are counted without building the rule, which
#: is built at the first conditional walk (``np.union1d`` imports ``numpy.ma``: start-up).
BYTES_PER_LAYER = 3 * 8 * OUTER_POINTS * (len(set(np.concatenate(_outer_edges(OUTER_GRADED))
                                                   .tolist())) - 1) + 9 * 8 + 8


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


def shifted_walks(net: Network, moments: MomentEvaluator, origin: int, *, layers_per_unit: int = 1,
                 source_positive: bool = False) -> tuple[ForwardWalk, BackwardWalk]:
    """The forward walk over the outer nodes (``keep="all"``) and the backward walk started at the
    output of position ``origin`` (per position), conditional on the layer-1 shift.

    When an average over :math:`u` is concentrated in its innermost decade (the gradient of a
    deep saturating network is carried by the networks whose shift nearly cancels), the walks are
    redone with the rule graded down to :math:`|u| = 10^{-301}`; if that is not resolved either,
    a :class:`~varprop.VarpropError` says so rather than returning an artefact (a spurious 0).
    """
    for graded in (OUTER_GRADED, DEEP_GRADED):
        avg = _Averager(graded)
        fw = walk_forward(net, moments, keep="all", nodes=avg.u, average=avg,
                          layers_per_unit=layers_per_unit)
        bw = walk_backward(fw, origin, per_position=True, source_positive=source_positive)
        if avg.share <= UNRESOLVED_SHARE:
            return fw, bw
    raise VarpropError(
        f"the average over the layer-1 shift is not resolved: {avg.share:.2g} of it comes from "
        f"networks whose shift |u| < 1e-{DEEP_GRADED} (the unsaturated networks that carry a deep "
        "saturating network's gradient with non-zero-mean weights); reduce depth")
