r"""The one-step check of a single layer of any network (the general engine's layers).

At layer position :math:`p` the walk predicts the field :math:`F_{p-1}` entering the layer
(:func:`varprop.predict_fields`).  The check draws, per replicate, the layer's parameters
(``mc_draw``) and a batch of inputs that are **Gaussian with exactly the moments of**
:math:`F_{p-1}` -- per-position means, the covariance between positions when it is tracked, the
between-sample moment when it is tracked, channels independent -- applies the layer
(``mc_forward``) and records :math:`\overline{y^2}` over the output's entries.  Its replicate
mean is what ``layer.field_forward`` claims for a Gaussian input with those moments.  Backward
(``"output_gradient"``), the gradient arriving at the layer's output is drawn Gaussian with the
predicted gradient field, independent of the forward pass (gradient independence), and the
recorded statistic is :math:`\overline{(\partial L/\partial x)^2}` from ``mc_backward``,
compared with ``layer.field_backward``.

So the check isolates the layer's own rule; whether its real input is Gaussian (a nonlinearity
after a residual sum) is what :func:`varprop.verify` on the whole network tests.  The claim is
exact (tolerance 0 plus the float floor) where ``layer.field_exact`` says so for a Gaussian input,
else within :math:`c/n` (:data:`~varprop.checking.allowance.FINITE_WIDTH_CONSTANT` over the
layer's width or channels, or over the input's entries for a layer without weights).
"""

from __future__ import annotations

import math
import time

import numpy as np

from varprop._util.validation import check_nonnegative_real
from varprop.checking.allowance import (
    _FLOAT_FLOOR,
    FINITE_WIDTH_CONSTANT,
    _weight_width,
)
from varprop.checking.plan import (
    _check_layer,
    _look_seed,
    _look_sizes,
    _margins,
    _sequential,
    _verdict_from,
)
from varprop.checking.verdict import Verdict
from varprop.network.field import Field, GradField
from varprop.network.layout import channel_axes
from varprop.network.model import Network
from varprop.simulation.engines import network_batch
from varprop.theory.fields import walk_fields

__all__ = ["gaussian_draw", "verify_step_general"]

#: Replicates simulated at once (memory).
_CHUNK = 256


def _joint_cov(field: Field | GradField, batch: int) -> np.ndarray:
    """Covariance ``(B P, B P)`` of one channel's entries over the batch and the positions."""
    P = field.size
    mean = np.ravel(getattr(field, "mean", np.zeros(field.positions)))
    second = np.ravel(field.second)
    within = (np.asarray(field.cov) if field.cov is not None else np.diag(second)) - np.outer(mean, mean)
    bc = getattr(field, "batch_cross", None)
    across = np.diag(np.ravel(bc) - mean * mean) if bc is not None else np.zeros((P, P))
    big = np.kron(np.ones((batch, batch)) - np.eye(batch), across) + np.kron(np.eye(batch), within)
    return (big + big.T) / 2


def _factor(cov: np.ndarray) -> np.ndarray:
    """A square root ``L`` with ``L L^T = cov`` (eigenvalues clipped at 0: rounding)."""
    w, v = np.linalg.eigh(cov)
    return v * np.sqrt(np.maximum(w, 0.0))


def gaussian_draw(rng: np.random.Generator, field: Field | GradField, replicates: int,
                  batch: int, dtype: np.dtype) -> np.ndarray:
    """Entries ``(R, B, *shape)`` Gaussian with the moments of ``field``: channels independent,
    per channel the joint covariance over batch and positions of :func:`_joint_cov`."""
    shape, axis = field.shape, field.channel_axis % len(field.shape)
    C, P = shape[axis], field.size
    root = _factor(_joint_cov(field, batch))
    e = rng.standard_normal((replicates, C, batch * P))
    x = np.einsum("ij,rcj->rci", root, e).reshape(replicates, C, batch, *field.positions)
    mean = np.asarray(getattr(field, "mean", np.zeros(field.positions)))
    x = x + mean
    x = np.moveaxis(x, 2, 1)  # (R, B, C, *positions)
    x = np.moveaxis(x, 2, 2 + axis)  # channels back to their axis
    return x.astype(dtype)


def verify_step_general(net: Network, *, quantity: str, layer: object, rtol_f: float,
                        alpha_f: float, reps: int | None, seed_i: int, tol: object,
                        bud: int | None, dt: str, t0: float | None = None) -> Verdict:
    """The one-step check of layer position ``layer`` of ``net`` (module docstring)."""
    t0 = time.perf_counter() if t0 is None else t0
    fp = walk_fields(net)
    P = len(fp.forward)
    pos = _check_layer(layer, P)
    backward = quantity == "output_gradient"
    if pos is None:
        pos = 1 if backward else P
    lay = net.layers[pos - 1]
    f_in = fp.input if pos == 1 else fp.forward[pos - 2]
    # drawn Gaussian: the rule's own claim for a Gaussian input is tested (an exact law carried
    # by the field, a pre-activation source or a gradient factor would describe other draws)
    f_in = f_in.with_(gaussian=True, law=None)
    f_out = lay.field_forward(f_in)
    g_out = fp.backward[pos - 1].with_()
    if backward:
        theta0 = lay.field_backward(g_out, f_in, f_out).average_second()
    else:
        theta0 = f_out.average_second()
    layout = channel_axes(net)  # tensor shapes (a flattened field keeps its tensor layout)
    t_in, t_out = layout[pos - 1][0], layout[pos][0]
    batch = network_batch(net)
    exact = bool(lay.field_exact(f_in))
    width = _weight_width(lay) or math.prod(f_in.shape)
    if tol is None:
        tol_f = _FLOAT_FLOOR[dt] + (0.0 if exact else FINITE_WIDTH_CONSTANT / width)
        tol_reason = ("the layer's rule is exact for a Gaussian input: tol = 0 (+ float floor)"
                      if exact else f"one-step allowance {FINITE_WIDTH_CONSTANT:g}/{width}")
    else:
        tol_f, tol_reason = check_nonnegative_real("tol", tol), "tol given by the caller"
    zero_pred, atol_f, scale, margin = _margins(theta0, rtol_f, None)
    dtype = np.dtype(dt)

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        rng = np.random.default_rng(_look_seed(seed_i, look, 2))
        out = []
        for start in range(0, n_new, _CHUNK):
            R = min(_CHUNK, n_new - start)
            params = lay.mc_draw(rng, t_in, R, dtype)
            x = gaussian_draw(rng, f_in, R, batch, dtype).reshape((R, batch) + t_in)
            y, cache = lay.mc_forward(params, x)
            if backward:
                g = gaussian_draw(rng, g_out, R, batch, dtype).reshape((R, batch) + t_out)
                y = lay.mc_backward(params, cache, g)
            out.append(np.mean(np.square(y.reshape(R, -1), dtype=np.float64), axis=1))
        col = np.concatenate(out)
        if not np.all(np.isfinite(col)):
            return [], "a simulated value left the float range: no estimate"
        return [col], None

    sizes = _look_sizes(reps, bud if bud is not None else 16_384)
    res = _sequential(draw, "mean", theta0, scale, tol_f, margin, alpha_f, sizes, seed_i + 2,
                      relative=not zero_pred)
    sym = "dL/dx" if backward else "y"
    name = f"E[({sym}_{pos})^2 | Gaussian input]"
    description = (f"second moment of the {'input gradient' if backward else 'output'} of layer "
                   f"position {pos} ({lay!r}) for inputs drawn Gaussian with the predicted moments "
                   "of its input field")
    assumptions = ("the layer's own rule for a Gaussian input with the predicted moments"
                   + ("; gradient drawn independent of the forward pass" if backward else "")
                   + ("; exact here" if exact else "; approximate here (allowance c/n)"))
    config = {"network": repr(net), "dtype": dt, "engine": "general", "batch": batch,
              "tol_reason": tol_reason}
    return _verdict_from(res, theta0=theta0, scale=scale, zero_pred=zero_pred, tol=tol_f,
                         rtol=rtol_f, atol=atol_f, alpha=alpha_f, seed=seed_i, quantity=quantity,
                         layer=pos, target="one_step", name=name, description=description,
                         assumptions=assumptions, exact=exact, config=config, t0=t0)
