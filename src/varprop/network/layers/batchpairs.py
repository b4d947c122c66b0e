r"""Train-mode ``BatchNorm`` over positions when the engine tracks the between-sample moments
across positions (``Field.batch_cov``, because a pooling layer mixes positions): the output's
second moments between positions and samples and the backward pass over the
whole batch of a channel by randomized quasi-Monte Carlo (:func:`centred_pairs`,
:func:`joint_gradient`; declared approximations of the engine's ``BatchNorm`` over positions).

Assumptions: infinite width (a channel's batch of :math:`B \times P` entries Gaussian with the
tracked covariances -- for a non-Gaussian input, the Gaussian closure), zero-mean weights,
gradient independence (the gradient arriving above the activation independent of this layer's
forward pass).  Source of the normalisation's law: Yang et al. (2019), "A mean field theory of
batch normalization" (ICLR); here the entries are not exchangeable (positions differ).

Measured against ``simulate`` (batches of 4, 16 channels, he_normal; tests/test_layer_batchcov.py):
``Conv -> BN -> relu -> MaxPool(2) -> Conv -> BN -> relu -> GlobalAvgPool -> Dense`` on
``(3, 6, 6)``: every per-layer forward and gradient second moment within 5 standard errors
(300 replicates) except the BatchNorm outputs' (exact up to an :math:`\epsilon`-sized term).
Without the joint activation-Jacobian rule (gradient independence between :math:`\phi'(y)` and
the normalisation), the gradient below the second BatchNorm was 58% too large on ``(3, 8, 8)``.
With a residual basic block ``Residual(Conv -> BN -> relu -> Conv -> BN) -> relu``: gradients
within 4 standard errors; forward -0.8% at the MaxPool and -1.4% after the residual relu (both
Gaussian closures of non-Gaussian fields, declared).
"""

from __future__ import annotations

import numpy as np

from varprop._math.batch_backward import (
    normalised_batch_gradient,
    normalised_batch_second,
)
from varprop.errors import VarpropError
from varprop.network.field import Field, GradField
from varprop.network.layers.batchlaw import vectorised

__all__ = ["centred_pairs", "joint_gradient"]

#: RQMC budget over one channel's whole batch (:func:`centred_pairs`, :func:`joint_gradient`).
JOINT_POINTS, JOINT_SCRAMBLES, JOINT_SEED = 2048, 8, 20261204
#: Largest batch x positions of one channel (the cost grows as points x N^2: about 1 s at 256).
MAX_ENTRIES = 1024


def centred_pairs(field: Field, ey2: float, batch_size: int, eps: float,
                  approx: tuple[str, ...]) -> Field:
    r"""Train mode over positions with ``batch_cov`` tracked: the output's same-sample ``cov``
    :math:`E y_{b,t} y_{b,t'}` and ``batch_cov`` :math:`E y_{b,t} y_{b',t'}` from
    :math:`E\,yy^\top` over the channel's :math:`N = BP` entries
    (:func:`~varprop._math.batch_backward.normalised_batch_second`, randomized quasi-Monte Carlo
    over the Gaussian closure of the input batch, whose covariance is :math:`I_B \otimes (K -
    K^\times) + \mathbf 1\mathbf 1^\top \otimes K^\times`), rescaled so that the average
    :math:`E y^2` is ``ey2`` (the sphere law's, :math:`E\,v/(v + \eta)`: the points give the
    shape between positions, the one-number law the level that the normalisation fixes)."""
    if field.cov is None:
        raise VarpropError("BatchNorm (train): Field.batch_cov is tracked without Field.cov")
    cov, m = _batch_law(field, batch_size)
    full = normalised_batch_second(m, cov, eps, points=JOINT_POINTS, scrambles=JOINT_SCRAMBLES,
                                   seed=JOINT_SEED)
    same, other = _blocks(full, batch_size, field.size)
    unit = ey2 / float(np.mean(np.diag(same)))
    return Field(field.shape, field.channel_axis, np.zeros(field.positions),
                 (unit * np.diag(same)).reshape(field.positions), unit * same, None,
                 gaussian=False, approximations=approx, batch_cov=unit * other)


def _batch_law(field: Field, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """The covariance (``(BP, BP)``, sample-major) and mean of one channel's batch."""
    if nb * field.size > MAX_ENTRIES:
        raise VarpropError(
            f"BatchNorm (train) with pooling downstream: {nb} samples x {field.size} positions "
            f"= {nb * field.size} entries per channel; the joint rule supports at most "
            f"{MAX_ENTRIES}: use a smaller input or batch")
    m = np.ravel(field.mean)
    mm = np.outer(m, m)
    k, kb = np.asarray(field.cov) - mm, np.asarray(field.batch_cov) - mm
    return np.kron(np.eye(nb), k - kb) + np.kron(np.ones((nb, nb)), kb), np.tile(m, nb)


def _blocks(full: np.ndarray, nb: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """The same-sample and the between-sample ``(P, P)`` blocks of a ``(BP, BP)`` matrix,
    averaged over the samples and symmetrised."""
    blocks = full.reshape(nb, p, nb, p).transpose(0, 2, 1, 3)
    same = np.mean([blocks[b, b] for b in range(nb)], axis=0)
    other = np.mean([blocks[b, c] for b in range(nb) for c in range(nb) if b != c], axis=0)
    return 0.5 * (same + same.T), 0.5 * (other + other.T)


def joint_gradient(grad: GradField, field_in: Field, field_out: Field, batch_size: int,
                   eps: float) -> GradField:
    r"""Train mode with ``batch_cov`` tracked (pooling in the network): the gradient over the
    whole batch of one channel, :math:`N = BP` entries, by randomized quasi-Monte Carlo
    (:func:`varprop._math.batch_backward.normalised_batch_gradient`) over the Gaussian
    closure of the input batch (covariance from ``cov`` and ``batch_cov``).  An activation
    directly above (acting on this layer's output ``field_out`` itself, not on a sum with it as
    after a residual branch) passes its factor (``GradField.factor``): :math:`\phi'(y)` is then taken
    jointly with the Jacobian (a ``GlobalAvgPool`` above makes a sample's gradient nearly
    constant over positions, where treating them as independent overestimated the gradient
    by 58% in the test network).  Returns the same-sample and between-sample blocks averaged
    over samples."""
    nb, p = batch_size, field_in.size
    factor = grad.factor
    deriv = None
    base = grad
    if (factor is not None and factor[2] is field_out and factor[1].cov is not None
            and factor[1].batch_cov is not None):
        base = factor[1]
        deriv = vectorised(factor[0].derivative_function)
    cov, m = _batch_law(field_in, nb)
    g, gb = np.asarray(base.cov), np.asarray(base.batch_cov)
    gamma = np.kron(np.eye(nb), g - gb) + np.kron(np.ones((nb, nb)), gb)
    full = normalised_batch_gradient(m, cov, gamma, deriv, eps, points=JOINT_POINTS,
                                     scrambles=JOINT_SCRAMBLES, seed=JOINT_SEED)
    same, other = _blocks(full, nb, p)
    return GradField(field_in.shape, field_in.channel_axis,
                     np.diag(same).reshape(field_in.positions), same, None, batch_cov=other)
