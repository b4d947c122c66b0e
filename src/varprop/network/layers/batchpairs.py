r"""Train-mode ``BatchNorm`` over positions when the engine tracks the between-sample moments
across positions (``Field.batch_cov``, because a pooling layer mixes positions): the forward
centring taken exactly in second moments (:func:`centred_pairs`) and the backward pass over the
whole batch of a channel by randomized quasi-Monte Carlo (:func:`joint_gradient`).

Assumptions: infinite width (a channel's batch of :math:`B \times P` entries Gaussian with the
tracked covariances -- for a non-Gaussian input, the Gaussian closure), zero-mean weights,
gradient independence (the gradient arriving above the activation independent of this layer's
forward pass).  Source of the normalisation's law: Yang et al. (2019), "A mean field theory of
batch normalization" (ICLR); here the entries are not exchangeable (positions differ).
"""

from __future__ import annotations

import numpy as np

from varprop._math.batch_backward import normalised_batch_gradient
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField
from varprop.network.layers.batchlaw import Fn, vectorised

__all__ = ["centred_pairs", "joint_gradient"]

#: RQMC budget of the train-mode backward over positions (:func:`joint_gradient`).
JOINT_POINTS, JOINT_SCRAMBLES, JOINT_SEED = 2048, 8, 20261204


def centred_pairs(field: Field, ey2: float, batch_size: int, approx: tuple[str, ...]) -> Field:
    r"""Train mode over positions with ``batch_cov`` tracked: the centring by the channel's
    mean :math:`\hat\mu` over the :math:`B 	imes P` entries taken exactly in second moments,
    with :math:`K` = ``cov``, :math:`B` = ``batch_cov``, :math:`
ho_t = (ar K_{t\cdot} +
    (B-1)ar B_{t\cdot})/B = E h_{b,t}\hat\mu`, :math:`\sigma = (ar K + (B-1)ar B)/B =
    E\hat\mu^2` (bars: means over positions),

    .. math::

        C_{tt'} = K_{tt'} - 
ho_t - 
ho_{t'} + \sigma, \qquad
        D_{tt'} = B_{tt'} - 
ho_t - 
ho_{t'} + \sigma,

    then scaled by :math:`E y^2 / \overline{C_{tt}}` (the normalised entries' average second
    moment :math:`E y^2` from the sphere law, shared out in proportion to the centred
    moments: the divisor treated as common to all entries, the declared exchangeable
    treatment).  Same-sample ``cov`` :math:`\propto C`, between samples ``batch_cov``
    :math:`\propto D` (their total over the batch is 0, as the centring makes it)."""
    if field.cov is None:
        raise VarpropError("BatchNorm (train): Field.batch_cov is tracked without Field.cov")
    k, bb = np.asarray(field.cov), np.asarray(field.batch_cov)
    nb = batch_size
    rho = (k.mean(axis=1) + (nb - 1) * bb.mean(axis=1)) / nb  # type: ignore[operator]
    sigma = (float(k.mean()) + (nb - 1) * float(bb.mean())) / nb  # type: ignore[operator]
    shift = rho[:, None] + rho[None, :] - sigma
    c, d = k - shift, bb - shift
    unit = ey2 / float(np.mean(np.diag(c)))
    return Field(field.shape, field.channel_axis, np.zeros(field.positions),
                 (unit * np.diag(c)).reshape(field.positions), unit * c, None,
                 gaussian=False, approximations=approx, batch_cov=unit * d)


def joint_gradient(grad: GradField, field_in: Field, batch_size: int, eps: float) -> GradField:
    r"""Train mode with ``batch_cov`` tracked (pooling in the network): the gradient over the
    whole batch of one channel, :math:`N = BP` entries, by randomized quasi-Monte Carlo
    (:func:`varprop._math.batch_backward.normalised_batch_gradient`) over the Gaussian
    closure of the input batch (covariance from ``cov`` and ``batch_cov``).  An activation
    directly above passes its factor (``GradField.factor``): :math:`\phi'(y)` is then taken
    jointly with the Jacobian (a ``GlobalAvgPool`` above makes a sample's gradient nearly
    constant over positions, where treating them as independent overestimated the gradient
    by 58% in the test network).  Returns the same-sample and between-sample blocks averaged
    over samples."""
    nb, p = batch_size, field_in.size
    factor = grad.factor
    deriv = None
    base = grad
    if (factor is not None and factor[2] is None and factor[1].cov is not None
            and factor[1].batch_cov is not None):
        base = factor[1]
        deriv = vectorised(factor[0].derivative_function)
    m = np.ravel(field_in.mean)
    mm = np.outer(m, m)
    k, kb = np.asarray(field_in.cov) - mm, np.asarray(field_in.batch_cov) - mm  # type: ignore[arg-type]
    cov = np.kron(np.eye(nb), k - kb) + np.kron(np.ones((nb, nb)), kb)
    g, gb = np.asarray(base.cov), np.asarray(base.batch_cov)
    gamma = np.kron(np.eye(nb), g - gb) + np.kron(np.ones((nb, nb)), gb)
    full = _joint_backward(np.tile(m, nb), cov, gamma, deriv, eps)
    blocks = full.reshape(nb, p, nb, p).transpose(0, 2, 1, 3)
    same = np.mean([blocks[b, b] for b in range(nb)], axis=0)
    other = np.mean([blocks[b, c] for b in range(nb) for c in range(nb) if b != c], axis=0)
    same, other = 0.5 * (same + same.T), 0.5 * (other + other.T)
    return GradField(field_in.shape, field_in.channel_axis,
                     np.diag(same).reshape(field_in.positions), same, None, batch_cov=other)


def _joint_backward(mean: np.ndarray, cov: np.ndarray, gamma: np.ndarray, deriv: Fn | None,
                    eps: float) -> np.ndarray:
    """:func:`normalised_batch_gradient` with this layer's fixed RQMC budget and seed."""
    return normalised_batch_gradient(mean, cov, gamma, deriv, eps, points=JOINT_POINTS,
                                     scrambles=JOINT_SCRAMBLES, seed=JOINT_SEED)
