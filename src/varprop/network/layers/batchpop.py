r"""``PopulationBatchNorm(eps)``: train-mode batch normalisation in the large-batch limit.

A train-mode ``BatchNorm`` normalises each channel by the mean and variance of its
:math:`N = B P` entries (``B`` samples, ``P`` positions).  :class:`~varprop.layers.BatchNorm`
predicts that exactly at infinite width for small :math:`N` (its law on the sphere; with
pooling downstream, a randomized quasi-Monte Carlo over the channel's :math:`N` entries, at most
1,024).  A convolutional network's early layers have far more entries per channel (ResNet-18 at
:math:`64 \times 64` with 8 samples: :math:`8 \cdot 32 \cdot 32`); there the batch statistics
are close to the *population* moments of the channel, the moments over infinitely many inputs
of the network as it is (given its weights).  This layer normalises by those (declared
approximation).

At infinite width one channel's entry is :math:`x_{b,t} = u_t + e_{b,t}`: a part :math:`u_t`
shared by every sample (fixed by the weights; :math:`E u_t u_{t'} = B_{tt'}`, the between-sample
moment ``Field.batch_cov``, uncentred, so the means are in it) and a part :math:`e` independent
between samples (:math:`E e_t e_{t'} = K_{tt'} - B_{tt'}`, ``K`` the same-sample ``cov``).  The
population mean of the channel is :math:`\bar u = \frac1P\sum_t u_t`, its variance
:math:`\sigma^2 = \frac1P \sum_t E(x_t - \bar u)^2`, and :math:`y = (x - \bar u)/\sqrt{\sigma^2 +
\epsilon}`:

.. math::

    E y_t y_{t'} = \frac{K_{tt'} - \bar B_{t\cdot} - \bar B_{\cdot t'} + \bar B}{\sigma^2 +
    \epsilon}, \qquad \sigma^2 = \overline{\operatorname{diag} K} - \bar B, \qquad
    E y_t = \frac{m_t - \bar m}{\sqrt{\sigma^2 + \epsilon}},

(:math:`\bar B_{t\cdot}` a row mean of :math:`B`, :math:`\bar B` its mean), and between samples
the centring leaves nothing shared: ``batch_cross`` = ``batch_cov`` = 0.  Without ``batch_cov``
tracked (no pooling downstream) :math:`u_t` is removed position by position:
:math:`E y_t^2 = (q_t - B_{tt})/(\sigma^2 + \epsilon)`.  Backward, :math:`\partial x = (\partial y
- \overline{\partial y})/\sqrt{\sigma^2 + \epsilon}`: the same maps on the gradient's moments.

What is left out is :math:`O(1/N)` relatively: the fluctuation of the batch mean and variance
about the population ones, and backward the projection of the gradient on :math:`y`
(:math:`\partial x` also loses :math:`y \cdot \overline{y\,\partial y}`), plus the spread of
:math:`u_t` about :math:`\bar u` inside :math:`\sigma^2` (its expectation is used).  Exact
neither at finite :math:`N` nor finite width; the output is Gaussian when the input is (an affine
map of it, given the weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from varprop._util.validation import check_positive_real
from varprop.errors import VarpropError
from varprop.network.field import Field, FieldNeeds, GradField, Shape
from varprop.network.layers.base import Layer

__all__ = ["PopulationBatchNorm", "APPROXIMATION"]

APPROXIMATION = ("PopulationBatchNorm: train-mode BatchNorm over many entries per channel "
                 "normalised by the channel's population moments (large-batch approximation, "
                 "relative error O(1/(batch x positions)))")


def _centre(mat: np.ndarray, shared: np.ndarray) -> np.ndarray:
    r""":math:`K - \bar B_{t\cdot} - \bar B_{\cdot t'} + \bar B` (see the module docstring)."""
    shared = np.asarray(shared)
    row = shared.mean(axis=1)
    col = shared.mean(axis=0)
    return np.asarray(mat) - row[:, None] - col[None, :] + shared.mean()


def _centred(second: np.ndarray, shared: np.ndarray, cov: np.ndarray | None,
             batch_cov: np.ndarray | None, k: float, pos: tuple[int, ...]
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""``(second, cov, batch_cov)`` of :math:`k(x - \bar x)` for the forward field or the
    gradient alike: the part shared by the batch (``shared``: :math:`E x_b x_{b'}`, or
    ``batch_cov`` between positions) removed, scaled by ``k``."""
    if cov is not None and batch_cov is not None:
        out = _centre(cov, batch_cov) * k
        return np.diag(out).reshape(pos), out, np.zeros_like(out)
    second = (np.asarray(second) - shared) * k
    if cov is None:
        return second, None, None
    out = (np.asarray(cov) - float(np.mean(shared))) * k
    np.fill_diagonal(out, np.ravel(second))
    return second, out, None


@dataclass(frozen=True, init=False)
class PopulationBatchNorm(Layer):
    r"""Train-mode batch normalisation by the channel's population moments (module docstring):
    :math:`y = (x - \bar u)/\sqrt{\sigma^2 + \epsilon}`; a declared large-batch approximation."""

    eps: float
    kind = "batchnorm"

    def __init__(self, eps: float = 1e-5) -> None:
        object.__setattr__(self, "eps", check_positive_real("eps", eps))

    def __repr__(self) -> str:
        return f"PopulationBatchNorm(eps={self.eps!r})"

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def channel_axis_for(self, input_shape: Shape) -> int | None:
        return -1 if len(input_shape) == 1 else 0

    def field_needs(self) -> FieldNeeds:
        return FieldNeeds(batch_cross=True)

    def _scale(self, field: Field) -> float:
        if field.batch_cross is None:
            raise VarpropError(f"{self!r} needs the between-sample moment Field.batch_cross")
        if field.batch_cov is not None:
            var = float(np.mean(np.diag(field.cov)) - np.mean(field.batch_cov))  # type: ignore[arg-type]
        else:
            var = float(np.mean(field.second) - np.mean(field.batch_cross))
        if not var > 0:
            raise VarpropError(f"{self!r}: its input's population variance is {var!r}; it "
                               "normalises nothing")
        return 1.0 / (var + self.eps)

    def field_forward(self, field: Field) -> Field:
        k = self._scale(field)
        pos = field.positions
        mean = (field.mean - float(np.mean(field.mean))) * np.sqrt(k)
        second, cov, bcov = _centred(field.second, field.batch_cross, field.cov,
                                     field.batch_cov, k, pos)
        return Field(field.shape, field.channel_axis, mean, second, cov, np.zeros(pos),
                     gaussian=field.gaussian, approximations=field.approximate(APPROXIMATION),
                     batch_cov=bcov, symmetric=False)

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        k = self._scale(field_in)
        pos = field_in.positions
        shared = grad.batch_cross if grad.batch_cross is not None else np.zeros(pos)
        second, cov, bcov = _centred(grad.second, shared, grad.cov, grad.batch_cov, k, pos)
        return GradField(field_in.shape, field_in.channel_axis, second, cov,
                         None if grad.batch_cross is None else np.zeros(pos), batch_cov=bcov)
