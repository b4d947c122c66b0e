r"""``BatchNorm(eps=1e-5, *, mode="train", batch_size=B)``: batch normalisation at initialisation.

Each channel is normalised by statistics over the batch (and, for ``(C, L)``/``(C, H, W)``
inputs, over the positions too, as ``BatchNorm1d``/``BatchNorm2d`` do); the affine weight is 1
and the bias 0 at initialisation.

**Eval mode** (running mean 0, running variance 1 at initialisation): :math:`y = x/\sqrt{1 +
\epsilon}`, so every moment is divided by :math:`1+\epsilon` (exact, any law, any width).

**Train mode** (Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019, "A mean field theory of
batch normalization", ICLR).  One channel's batch :math:`h \in \mathbb R^N` (:math:`N = B`
for vectors) is, at infinite width, Gaussian with a permutation-symmetric covariance
:math:`aI + b\mathbf 1\mathbf 1^\top` (``second`` :math:`= a + b + m^2`, ``batch_cross``
:math:`= b + m^2`); the normalisation :math:`y = Ph/\sqrt{\lVert Ph\rVert^2/N + \epsilon}`
(biased variance) removes :math:`m` and :math:`b`, and :math:`y = \sqrt N s u` with :math:`u`
uniform on the unit sphere of :math:`\mathbf 1^\perp` and :math:`s^2 = v/(v+\eta)`,
:math:`v \sim \chi^2_{N-1}`, :math:`\eta = N\epsilon/a` (:mod:`varprop._math.sphere`):

.. math::

    E y_b = 0, \qquad E y_b^2 = E\frac{v}{v+\eta}, \qquad
    E y_b y_c = -\frac{E y_b^2}{N-1} \quad (b \ne c),

and one coordinate is :math:`\sqrt{N-1}\,s\,t` with :math:`t \propto (1-t^2)^{(N-4)/2}` on
:math:`[-1, 1]` -- not Gaussian at finite :math:`N`.  The output field carries this law
(``Field.law``), so a following ``Nonlinearity`` integrates :math:`E\phi(y_b)^2` and
:math:`E\phi(y_b)\phi(y_c)` over it exactly instead of a Gaussian closure.

Backward: :math:`\delta_h = J\delta_y`, :math:`J = c(P - \kappa uu^\top)`, :math:`c^2 = N/(a(v +
\eta))`, :math:`\kappa = s^2`.  Gradient independence makes the gradient arriving from the next
weight layer independent of this forward pass, but the activation's derivative
:math:`\phi'(y)` between them is a function of the same :math:`u` as :math:`J`: the exact rule is
the joint expectation :math:`E[J D G D J]`, :math:`D = \mathrm{diag}\,\phi'(y)`
(:meth:`varprop._math.sphere.BatchSphere.backward`), taken when the ``Nonlinearity`` above passes
its factor down (``GradField.factor``).  It needs the between-sample gradient moment
(``GradField.batch_cross``): only :math:`G_D - G_C` and :math:`G_C` enter.  With a linear
activation and :math:`\epsilon = 0` it is closed form:

.. math::

    E\delta_{h,b}^2 = \frac{N-2}{N-3}\,\frac{G_D - G_C}{a}, \qquad
    E\delta_{h,b}\delta_{h,c} = -\frac{E\delta_{h,b}^2}{N-1},

so a deep linear Dense-BN chain's gradient grows by :math:`(B-2)/(B-3)` per block (infinite for
:math:`B \le 3`; finite there only through :math:`\epsilon`).  ReLU with He init is closed form
too (:math:`\epsilon \to 0`): with :math:`\cos\psi = -1/(N-1)` and the arc-cosine kernel
:math:`\kappa = (\sin\psi + (\pi-\psi)\cos\psi)/(2\pi) = E\,\mathrm{relu}(y_b)\mathrm{relu}(y_c)`,

.. math::

    \lambda = \frac{2(A - B_\times/N)}{1 - 2\kappa}, \quad A = \frac{N(N-2)}{2(N-1)(N-3)}, \quad
    B_\times = \frac{N}{(N-1)(N-3)}\Big((N-1)\big(\tfrac14 + \tfrac{\arcsin(1/(N-1))}{2\pi}
    - \kappa\big) - \tfrac12\Big),

3.084, 1.788, 1.590 at :math:`N = 4, 8, 16`, decreasing to :math:`\pi/(\pi - 1) \approx 1.467`
as :math:`N \to \infty` (a hand derivation; ``tests/test_layer_batchnorm.py`` checks it against
the quadrature).

Assumptions: infinite width (the batch entries of one channel jointly Gaussian and exchangeable),
zero-mean weights, gradient independence.  Inputs with positions (:math:`P > 1`): the
:math:`N = BP` entries are treated as exchangeable (per-position moments rescaled by the average
over positions, no law carried), a declared approximation -- exact in the limit of many
entries only when the positions are statistically alike.  Measured on ``Conv(16, 3) ->
BatchNorm(B=4) -> relu`` twice on ``(3, 8, 8)`` inputs (zero padding): per-layer forward and
gradient second moments within 5.5% of ``simulate``.  With pooling downstream the engine tracks
the between-sample moments across positions (``Field.batch_cov``) and the output's moments and
the backward pass are computed over the whole batch of a channel (:math:`B \times P` entries,
Gaussian closure of the input) by randomized quasi-Monte Carlo
(:mod:`~varprop.network.layers.batchpairs`), with the activation above taken jointly with the
Jacobian.

Measured (Monte Carlo written from scratch in numpy, Dense(256) -> BatchNorm(train) -> phi
repeated 20 times, He gain for ReLU, LeCun otherwise, :math:`\epsilon = 10^{-5}`; rate = per-block
growth of :math:`E\delta^2` at the blocks' inputs, fitted over blocks 3..18; 10 networks;
``benchmarks/measure_batchnorm.py`` reproduces it):

=== ======= ========= ========== ========= ================ ======== ========
B   phi     predicted factorised MC (mean) MC (typical)     E a^2    E a^2 MC
=== ======= ========= ========== ========= ================ ======== ========
4   linear  1.9872    1.9872     1.9099    1.8644 +- 0.0437 1.0000   1.0000
4   relu    3.0586    2.7008     3.0107    2.9517 +- 0.0719 0.5000   0.5000
4   tanh    2.1146    1.5525     2.0510    2.0267 +- 0.0468 0.4577   0.4597
8   linear  1.2000    1.2000     1.2034    1.1984 +- 0.0099 1.0000   1.0000
8   relu    1.7882    1.7041     1.7638    1.7607 +- 0.0110 0.5000   0.4990
8   tanh    1.3585    1.2069     1.3559    1.3487 +- 0.0104 0.4202   0.4194
16  linear  1.0769    1.0769     1.0759    1.0752 +- 0.0036 1.0000   1.0000
16  relu    1.5899    1.5557     1.5908    1.5885 +- 0.0066 0.5000   0.5017
16  tanh    1.2462    1.1819     1.2573    1.2559 +- 0.0061 0.4060   0.4091
=== ======= ========= ========== ========= ================ ======== ========

"predicted": this module's rule (the joint expectation over the sphere law); "factorised": the
same with :math:`\phi'(y)` treated as independent of :math:`J` (what per-layer second moments
alone give -- wrong by up to 30%); "MC (mean)": the rate of the mean over networks of
:math:`E\delta^2`; "MC (typical)": the mean over networks of the per-network log-slope, with its
standard error; :math:`E a^2`: the activation's output second moment at the last block.  At
:math:`B = 4` the Jacobian's :math:`1/v`, :math:`v \sim \chi^2_3`, has infinite variance, so
finite samples fall short of the mean rate.  Wider (16 blocks, 16-20 networks, typical rate):
ReLU :math:`B = 8` at width 2048: 1.7855 +- 0.0027 (predicted 1.7882); tanh :math:`B = 16` at
1024: 1.2485 +- 0.0018 (1.2462); ReLU :math:`B = 4` at 1024: 2.987 +- 0.065, mean rate 3.117
(3.059); tanh :math:`B = 4` at 1024: 2.039 +- 0.025, mean rate 2.077 (2.115).  The linear rows
are :math:`(B-2)/(B-3)` up to :math:`\epsilon`.

Post-activation placement (``Dense -> phi -> BatchNorm``): the input batch :math:`x = \phi(z)`
is not Gaussian and the Jacobian is correlated with the activation derivative *below* it.  The
activation's output records its Gaussian pre-activation (``Field.pre_activation``;
:mod:`~varprop.network.layers.batchlaw`), and the moments and both backward rules are :math:`N`-dimensional integrals computed by randomised
quasi-Monte Carlo (:mod:`varprop._math.activated_batch`, declared in ``approximations``).
Gradient growth per block, ReLU, width 256, 60 networks, rate of the mean (predicted / measured;
treating the Jacobian as independent of the derivative instead gave 2.70 / 1.70 / 1.56):
B = 4: 4.01 / 3.62 (heavy-tailed, as for pre-activation); B = 8: 2.007 / 2.017; B = 16:
1.6813 / 1.6811.

The input dimension is a width too: all channels of the first ``BatchNorm`` see the same realised
batch Gram matrix :math:`x^\top x` of the network input, which is exchangeable only as the input
dimension grows.  With 32 inputs and :math:`B = 8`, the gradient at the first block is 10% above
the prediction (``verify``: +9.9%, 99% interval [+7.9%, +12.0%]); with 256 inputs -1.5%
[-5.0%, +2.4%].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from varprop._math.sphere import BatchSphere
from varprop._util.lazy import lazy_module
from varprop._util.validation import check_choice, check_positive_real, fail, fail_type
from varprop.components.activations import Activation
from varprop.errors import VarpropError
from varprop.network.field import Field, FieldNeeds, GradField, Shape
from varprop.network.layers.base import Layer
from varprop.network.layers.batchlaw import Fn, activated_integrals, vectorised
from varprop.network.layers.batchpairs import (
    JOINT_POINTS,
    JOINT_SCRAMBLES,
    centred_pairs,
    joint_gradient,
)

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only the symbolic derivations need it
sp = lazy_module("sympy")

__all__ = ["BatchNorm", "SphereLaw"]

_MODES = ("train", "eval")


def _qmc_sentence(activation: str) -> str:
    return (f"BatchNorm (train) after {activation}: the batch's moments and gradients are "
            "N-dimensional integrals over the Gaussian batch before the activation, computed by "
            "randomised quasi-Monte Carlo (8 x 2^13 scrambled Sobol points; heavy-tailed for "
            "small batches: standard errors of a few % at B = 8)")


def _sphere(n: int, eta: float) -> BatchSphere:
    """The law for ``(n, eta)``, cached with ``eta`` to 12 significant digits (successive layers
    of a deep network reach the same ``eta`` up to rounding; the results change by far less than
    the quadrature's 1e-13)."""
    return _cached_sphere(n, float(f"{eta:.12g}"))


@lru_cache(maxsize=256)
def _cached_sphere(n: int, eta: float) -> BatchSphere:
    return BatchSphere(n, eta)


@dataclass(frozen=True, eq=False)
class SphereLaw:
    r"""``Field.law`` of a train-mode ``BatchNorm`` output over vectors: one entry is
    :math:`y_b = \sqrt N s u_b` (module docstring), two entries of different samples
    :math:`(y_b, y_c)`.  ``expect``/``expect2`` integrate over it; the hooks give an elementwise
    layer's output field and gradient (``None`` for a field this law does not describe)."""

    sphere: BatchSphere
    second: float
    batch_cross: float

    def expect(self, f: Fn) -> float:
        return self.sphere.expect(f)

    def expect2(self, f: Fn, g: Fn) -> float:
        return self.sphere.expect2(f, g)

    def describes(self, fld: Field) -> bool:
        """Whether ``fld`` is the field this law was made for (no layer changed it since, and
        nobody declared it Gaussian, as a one-step check drawing Gaussian inputs does)."""
        return (fld.law is self and not fld.gaussian and fld.size == 1 and not np.any(fld.mean)
                and float(fld.second.ravel()[0]) == self.second
                and (fld.batch_cross is None or float(fld.batch_cross.ravel()[0]) == self.batch_cross))

    def moments(self, activation: Activation) -> dict[str, float]:
        r"""Everything an activation on this law needs (cached per law and activation):
        ``mean``, ``second``, ``cross`` :math:`= E\phi(y_b)\phi(y_c)`, ``d2`` :math:`=
        E\phi'(y_b)^2`, ``dcross`` :math:`= E\phi'(y_b)\phi'(y_c)`, and the joint backward
        coefficients ``joint_diag``, ``joint_cross`` (:meth:`BatchSphere.backward` at
        :math:`(\alpha, \beta) = (1, 0)` and :math:`(0, 1)`; it is linear in them)."""
        return _activation_moments(self.sphere, activation)

    def nonlinearity_forward(self, activation: Activation, fld: Field) -> Field | None:
        r""":math:`E\phi(y_b)`, :math:`E\phi(y_b)^2`, :math:`E\phi(y_b)\phi(y_c)` over the law."""
        if not self.describes(fld):
            return None
        mom = self.moments(activation)
        second = mom["second"]
        bc = None if fld.batch_cross is None else mom["cross"]
        return Field(fld.shape, fld.channel_axis, mom["mean"], second,
                     None if fld.cov is None else [[second]], bc, gaussian=False,
                     approximations=fld.approximations)

    def nonlinearity_backward(self, activation: Activation, grad: GradField, fld: Field
                              ) -> GradField | None:
        r""":math:`\delta_y = \phi'(y)\odot\delta`: marginal moments :math:`E\phi'(y_b)^2 G_D` and
        :math:`E\phi'(y_b)\phi'(y_c) G_C`, with the factor ``(activation, delta, law)`` passed
        down for the ``BatchNorm`` below (its Jacobian is correlated with :math:`\phi'(y)`)."""
        if not self.describes(fld):
            return None
        mom = self.moments(activation)
        second = mom["d2"] * grad.second
        bc = None if grad.batch_cross is None else mom["dcross"] * grad.batch_cross
        cov = None if grad.cov is None else second.reshape(1, 1)
        return GradField(grad.shape, grad.channel_axis, second, cov, bc,
                         factor=(activation, grad, self))


@lru_cache(maxsize=256)
def _activation_moments(sph: BatchSphere, activation: Activation) -> dict[str, float]:
    f, d = vectorised(activation.function), vectorised(activation.derivative_function)
    return {"mean": sph.expect(f), "second": sph.expect(lambda x: f(x) ** 2),
            "cross": sph.expect2(f, f), "d2": sph.expect(lambda x: d(x) ** 2),
            "dcross": sph.expect2(d, d), "joint_diag": sph.backward(d, 1.0, 0.0),
            "joint_cross": sph.backward(d, 0.0, 1.0)}


@dataclass(frozen=True, init=False)
class BatchNorm(Layer):
    r"""Batch normalisation at initialisation (affine weight 1, bias 0); rules in the module
    docstring.

    Parameters
    ----------
    eps : float
        :math:`\epsilon > 0` added to the variance.
    mode : {"train", "eval"}
        ``"train"``: batch statistics (the finite-batch law); ``"eval"``: the initial running
        statistics (mean 0, variance 1), :math:`y = x/\sqrt{1+\epsilon}`.
    batch_size : int
        The batch size :math:`B \ge 2` the network is run with (required in train mode: the
        rules depend on it; simulations use it).
    """

    eps: float = field(default=1e-5)
    mode: str = field(default="train")
    batch_size: int | None = field(default=None)
    kind = "batchnorm"

    def __init__(self, eps: float = 1e-5, *, mode: str = "train", batch_size: int | None = None
                 ) -> None:
        object.__setattr__(self, "eps", check_positive_real("eps", eps))
        object.__setattr__(self, "mode", check_choice("mode", mode, _MODES))
        if batch_size is not None or mode == "train":
            if batch_size is None:
                raise fail("batch_size", batch_size, "an integer >= 2 in train mode (the "
                           "normalisation uses the batch's statistics; e.g. batch_size=32)")
            if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)):
                raise fail_type("batch_size", batch_size, "an integer >= 2")
            if batch_size < 2:
                raise fail("batch_size", batch_size, "an integer >= 2 (train mode needs more than "
                           "1 value per channel, as PyTorch says)")
            batch_size = int(batch_size)
        object.__setattr__(self, "batch_size", batch_size)

    def __repr__(self) -> str:
        batch = f", batch_size={self.batch_size!r}" if self.batch_size is not None else ""
        return f"BatchNorm(eps={self.eps!r}, mode={self.mode!r}{batch})"

    @property
    def required_batch(self) -> int | None:
        """The batch size simulations must use (train mode), else ``None``."""
        return self.batch_size if self.mode == "train" else None

    def tail_note(self, backward: bool) -> str | None:
        r"""Why a Monte Carlo mean of a backward statistic cannot settle (train mode, batch
        :math:`B \le 5`), or ``None``: the gradient through the normalisation scales as
        :math:`1/\lVert Ph\rVert^2` with :math:`\lVert Ph\rVert^2 \propto \chi^2_{B-1}`, and
        :math:`E\chi_{k}^{-4} = \infty` for :math:`k \le 4`, so the replicate statistic has (up to
        ``eps``) infinite variance."""
        if not backward or self.mode != "train" or self.batch_size is None or self.batch_size > 5:
            return None
        return (f"{self!r}: the gradient through a train-mode BatchNorm with batch size "
                f"{self.batch_size} <= 5 has a second moment proportional to 1/chi^2_"
                f"{self.batch_size - 1}, whose square has infinite mean (up to eps): the replicate "
                "statistic has practically infinite variance, so no number of replicates gives it "
                "a usable interval; check batch sizes >= 6, or the forward pass")

    def output_shape(self, input_shape: Shape) -> Shape:
        if not 1 <= len(input_shape) <= 3:
            raise fail("input_shape", input_shape, f"(n,), (C, L) or (C, H, W) for {self!r}")
        return tuple(input_shape)

    def channel_axis_for(self, input_shape: Shape) -> int | None:
        return -1 if len(input_shape) == 1 else 0

    def field_needs(self) -> FieldNeeds:
        return FieldNeeds(batch_cross=self.mode == "train")

    def field_exact(self, field_in: Field) -> bool:
        """Eval mode: exact (a fixed rescaling); train mode: infinite width only."""
        return self.mode == "eval"

    # --- mean field ---------------------------------------------------------------------------
    def _entries(self, fld: Field) -> int:
        return self.batch_size * fld.size  # type: ignore[operator]

    def _centred_variance(self, fld: Field) -> float:
        r""":math:`a = E\lVert Ph\rVert^2/(N-1)` (the exchangeable closure for :math:`P > 1`)."""
        if fld.batch_cross is None:
            raise VarpropError(f"{self!r} needs the between-sample moment Field.batch_cross of its "
                               "input tracked (the engine tracks it when FieldNeeds.batch_cross)")
        a = float(np.mean(fld.second) - np.mean(fld.batch_cross))
        if not (math.isfinite(a) and a > 0):
            raise VarpropError(f"{self!r}: its input's centred variance over the batch is {a!r}; "
                               "it normalises nothing (a constant input or an overflow upstream)")
        return a

    def sphere_for(self, fld: Field) -> tuple[BatchSphere, float]:
        """The normalised law for the input field ``fld`` and its centred variance :math:`a`."""
        a = self._centred_variance(fld)
        n = self._entries(fld)
        return _sphere(n, n * self.eps / a), a

    def field_forward(self, field: Field) -> Field:
        if self.mode == "eval":
            k = 1.0 / (1.0 + self.eps)
            return field.with_(mean=field.mean * math.sqrt(k), second=field.second * k,
                               cov=None if field.cov is None else field.cov * k,
                               batch_cross=None if field.batch_cross is None else field.batch_cross * k,
                               batch_cov=None if field.batch_cov is None else field.batch_cov * k,
                               law=None)
        sph, a = self.sphere_for(field)
        n = sph.n
        approx = field.approximations
        activated = activated_integrals(field, n, self.eps)
        if activated is not None:
            second = activated[1]["second"][0]
            approx = field.approximate(_qmc_sentence(activated[0].name))
            return Field(field.shape, field.channel_axis, 0.0, second,
                         None if field.cov is None else [[second]], -second / (n - 1),
                         gaussian=False, approximations=approx)
        if not field.gaussian:
            approx = field.approximate(
                "BatchNorm (train) on an input that is not jointly Gaussian and carries no law: "
                "the centred batch is treated as Gaussian with the same covariance, and backward "
                "its Jacobian as independent of any activation derivative below it (for relu "
                "directly below, this underestimated the per-block gradient growth by up to 30%)")
        if field.size == 1:
            second = sph.second
            bc = -second / (n - 1)
            law = SphereLaw(sph, second, bc)
            return Field(field.shape, field.channel_axis, 0.0, second,
                         None if field.cov is None else [[second]], bc, gaussian=False,
                         approximations=approx, law=law)
        if field.batch_cov is not None:  # pooling downstream (batchpairs module)
            sentence = (f"BatchNorm (train) over {self.batch_size} samples x {field.size} "
                        "positions: moments over the channel's whole batch by randomized "
                        f"quasi-Monte Carlo of its Gaussian closure ({JOINT_SCRAMBLES} x "
                        f"{JOINT_POINTS} points), the average second moment from the sphere law")
            approx = approx if sentence in approx else approx + (sentence,)
            return centred_pairs(field, sph.second, self.batch_size, self.eps, approx)  # type: ignore[arg-type]
        approx = field.approximate(
            f"BatchNorm (train) over {self.batch_size} samples x {field.size} positions: the "
            "entries of a channel treated as exchangeable (per-position moments rescaled by their "
            "average)")
        centred = field.second - field.batch_cross  # type: ignore[operator]
        second = sph.second * centred / a
        cov = None
        if field.cov is not None:
            cov = sph.second * (np.asarray(field.cov) - float(np.mean(field.batch_cross))) / a
        return Field(field.shape, field.channel_axis, np.zeros(field.positions), second, cov,
                     -second / (n - 1), gaussian=False, approximations=approx)

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        if self.mode == "eval":
            k = 1.0 / (1.0 + self.eps)
            return grad.with_(second=grad.second * k, cov=None if grad.cov is None else grad.cov * k,
                              batch_cross=None if grad.batch_cross is None else grad.batch_cross * k,
                              batch_cov=None if grad.batch_cov is None else grad.batch_cov * k,
                              factor=None)
        if grad.batch_cross is None:
            raise VarpropError(f"{self!r} needs the between-sample gradient moment "
                               "GradField.batch_cross tracked by the layers above it")
        sph, a = self.sphere_for(field_in)
        n = sph.n
        activated = activated_integrals(field_in, n, self.eps)
        if activated is not None:  # at x, and jointly with phi'(z) at the pre-activation z
            r = activated[1]
            alpha = float(np.mean(grad.second) - np.mean(grad.batch_cross))
            g2, gz, gzc = (alpha * r[k][0] for k in ("jj", "djjd", "djjd_cross"))
            z = field_in.pre_activation[0]  # type: ignore[index]
            at_z = GradField(z.shape, z.channel_axis, gz, None if grad.cov is None else [[gz]], gzc)
            return GradField(field_in.shape, field_in.channel_axis, g2,
                             None if grad.cov is None else [[g2]], -g2 / (n - 1),
                             preactivation=at_z)
        factor = grad.factor
        if (factor is not None and field_out.law is not None and factor[2] is field_out.law
                and factor[1].batch_cross is not None):  # an activation directly above
            base = factor[1]
            gd, gc = float(np.mean(base.second)), float(np.mean(base.batch_cross))
            mom = field_out.law.moments(factor[0])  # type: ignore[attr-defined]
            x = ((gd - gc) * mom["joint_diag"] + gc * mom["joint_cross"]) / a
        elif field_in.batch_cov is not None and grad.cov is not None and grad.batch_cov is not None:
            return joint_gradient(grad, field_in, field_out, self.batch_size, self.eps)  # type: ignore[arg-type]
        else:
            base = grad
            gd, gc = float(np.mean(base.second)), float(np.mean(base.batch_cross))
            x = sph.backward(None, gd - gc, gc) / a
        scale = (base.second - base.batch_cross) / (gd - gc) if field_in.size > 1 and gd != gc else 1.0
        second = np.broadcast_to(x * (n - 1) / n * scale, field_in.positions)
        cov = None
        if grad.cov is not None:
            cov = np.diag(np.ravel(second)) if field_in.size > 1 else np.reshape(second, (1, 1))
        bcov = None  # between samples across positions: mirrors cov (diagonal)
        if field_in.batch_cov is not None and grad.cov is not None:
            bcov = np.diag(np.ravel(-second / (n - 1)))
        return GradField(field_in.shape, field_in.channel_axis, second, cov, -second / (n - 1),
                         batch_cov=bcov)

    def field_steps(self) -> list[tuple[str, object]]:
        if self.mode == "eval":
            eps, d = sp.symbols("epsilon E[x^2]", positive=True)
            return [("eval mode at initialisation: running mean 0, running variance 1",
                     sp.Eq(sp.Symbol("E[y^2]"), d / (1 + eps)))]
        n, eps, a, v = sp.symbols("N epsilon a v", positive=True)
        k = (n - 1) / 2
        chi2 = v ** (k - 1) * sp.exp(-v / 2) / (2 ** k * sp.gamma(k))
        ey2 = sp.Symbol("E[y_b^2]")
        gd, gc = sp.symbols("G_D G_C", real=True)
        jac, dia = sp.symbols("J D", commutative=False)
        return [
            (("forward: the centred batch is sqrt(a) r u, r^2 ~ chi^2_{N-1}, u uniform on the "
              "sphere of the subspace orthogonal to (1, ..., 1); a = E x^2 - E x_b x_c"),
             sp.Eq(ey2, sp.Integral(v / (v + n * eps / a) * chi2, (v, 0, sp.oo)))),
            ("forward: the normalised batch sums to zero",
             sp.Eq(sp.Symbol("E[y_b y_c]"), -ey2 / (n - 1))),
            (("backward, no activation between this layer and the next weight layer, "
              "epsilon -> 0 (gradient independence)"),
             sp.Eq(sp.Symbol("E[delta_h^2]"), (n - 2) / (n - 3) * (gd - gc) / a)),
            (("backward through an activation phi directly above: D = diag phi'(y) and the "
              "Jacobian J = c (P - kappa u u^T) depend on the same batch, so the expectation is "
              "joint over the sphere law (G = (G_D - G_C) I + G_C 1 1^T, the gradient from the "
              "next weight layer, independent of both); the result is a multiple of P"),
             sp.Eq(sp.Symbol("E[delta_h delta_h^T]"),
                   sp.Function("E")(jac * dia * sp.Symbol("G", commutative=False) * dia * jac))),
        ]

    # --- sampling -----------------------------------------------------------------------------
    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> None:
        return None

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        # x: (R, B, *input_shape); the channel axis is array axis 2 (input axis 0 or the vector's)
        return (1,) + tuple(range(3, x.ndim))

    def mc_forward(self, params: object, x: np.ndarray) -> tuple[np.ndarray, object]:
        if self.mode == "eval":
            return x / x.dtype.type(math.sqrt(1.0 + self.eps)), None
        if x.shape[1] != self.batch_size:
            raise VarpropError(f"{self!r} was given a batch of {x.shape[1]} samples; it was "
                               f"declared with batch_size={self.batch_size}")
        axes = self._axes(x)
        mu = np.mean(x, axis=axes, keepdims=True)
        var = np.mean((x - mu) ** 2, axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(var + self.eps)
        y = ((x - mu) * inv).astype(x.dtype)
        return y, (y, inv)

    def mc_backward(self, params: object, cache: object, grad: np.ndarray) -> np.ndarray:
        r""":math:`\partial L/\partial x = \sigma^{-1}(g - \bar g - y\,\overline{g y})` with the
        means over the normalised axes (eval mode: :math:`g/\sqrt{1+\epsilon}`)."""
        if self.mode == "eval":
            return grad / grad.dtype.type(math.sqrt(1.0 + self.eps))
        y, inv = cache  # type: ignore[misc]
        axes = self._axes(grad)
        gx = inv * (grad - np.mean(grad, axis=axes, keepdims=True)
                    - y * np.mean(grad * y, axis=axes, keepdims=True))
        return gx.astype(grad.dtype)
