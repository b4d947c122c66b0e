r"""``predict_variance(..., finite_width=True)``: the MLP quantities from the :math:`1/n` expansion
(:mod:`varprop.theory.finite.expansion`).

=============================== ================================================================
quantity                        value (per layer :math:`l`)
=============================== ================================================================
``preactivation``               :math:`E z_l^2 = m_l` (zero mean)
``activation``                  :math:`E a_l^2 - (E a_l)^2`; exact for degree-1 homogeneous
                                activations with Gaussian weights and no bias
                                (:math:`E a_l` from the exact law of :math:`\hat q_l`), else
                                :math:`E a_l` to :math:`1/n` (refused where it is impossible)
``activation_second_moment``    :math:`E a_l^2`
``gradient``                    :math:`E(\partial\mathcal L/\partial a_{l-1})^2` (weight reuse
                                included, :mod:`varprop.theory.finite.backward`)
``weight_gradient``             :math:`E(\partial\mathcal L/\partial W_l)_{ij}^2`
=============================== ================================================================

Outside the expansion's range (:attr:`FiniteWidthMoments.expansion_parameter` above
:data:`~varprop.theory.finite.expansion.EXPANSION_LIMIT`, the rule of
:func:`varprop.predict_distribution`) a value that is not exact comes with a
:class:`~varprop.VarpropWarning`.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from varprop._util.validation import fail
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import VarpropError, VarpropWarning
from varprop.network.model import Network
from varprop.network.quantities import MLP_QUANTITIES
from varprop.theory.finite.expansion import (
    EXPANSION_LIMIT,
    FiniteWidthMoments,
    _moments,
    check_finite_width_init,
    outside_range_consequence,
)
from varprop.theory.finite.limits import check_finite_width_depth
from varprop.theory.sizes import check_fits

__all__ = ["finite_width_values", "network_finite_width_values", "shape_widths"]

_BACKWARD = ("gradient", "weight_gradient")


@lru_cache(maxsize=256)
def _cached(act: Activation, scheme: InitScheme, widths: tuple[int, ...], s_x: float, b2: float
            ) -> FiniteWidthMoments:
    return _moments(act, scheme, widths, s_x, b2)


def shape_widths(act: Activation, shape) -> tuple[int, ...]:
    """``shape.widths()`` after refusing, before building it, a depth beyond the expansion's limit
    (:func:`~varprop.theory.finite.expansion.check_finite_width_depth`) or the memory."""
    check_finite_width_depth(act, shape.L)
    check_fits(shape.L)
    return shape.widths()


def finite_width_values(act: Activation, scheme: InitScheme, widths: tuple[int, ...],
                        input_variance: float, bias_variance: float, quantity: str,
                        per_layer: bool) -> float | np.ndarray:
    """The value(s) of ``quantity`` with the :math:`1/n` correction (validated arguments)."""
    if quantity not in MLP_QUANTITIES:
        raise fail("quantity", quantity, f"one of {list(MLP_QUANTITIES)} with finite_width=True "
                   "(the 1/n expansion covers the MLP quantities)")
    check_finite_width_init(scheme)
    check_finite_width_depth(act, len(widths) - 1)
    check_fits(len(widths) - 1)
    # Degree-1 homogeneous activations: a_l scales like sqrt(s) when input and bias variances
    # scale by s, gradients not at all; so evaluate at unit scale and rescale exactly (this keeps
    # 1e-300 or 1e300 variances, and Var(q) ~ s^2, inside the float range).
    scale = 1.0
    if act.traits.exact_at_finite_width and max(input_variance, bias_variance) > 0.0:
        scale = max(input_variance, bias_variance)
        input_variance, bias_variance = input_variance / scale, bias_variance / scale
    fw = _cached(act, scheme, widths, input_variance, bias_variance)
    if quantity == "preactivation":
        values = fw.preact_second
    elif quantity == "activation":
        values = fw.act_second - fw.act_mean * fw.act_mean
        if fw.act_mean_order != "exact":
            _refuse_impossible(act, fw, values)
        values = np.maximum(values, 0.0)  # exact route: only rounding can make it negative
    elif quantity == "activation_second_moment":
        values = fw.act_second
    elif quantity == "gradient":
        values = fw.grad_second
    else:
        values = fw.weight_grad_second
    values = np.array(values, dtype=float)
    if scale != 1.0 and quantity != "gradient":
        with np.errstate(over="ignore"):
            values = values * scale
        if not np.all(np.isfinite(values)):
            raise VarpropError(f"{quantity} with finite_width=True is beyond the float range: "
                               f"{float(np.max(values / scale)):.6g} * {scale:.6g} (input or bias "
                               "variance) overflows")
    approximate = not fw.exact or (quantity == "activation" and fw.act_mean_order != "exact")
    eps = float(np.max(fw.expansion_parameter))
    if approximate and eps > EXPANSION_LIMIT:
        warnings.warn(f"predict_variance(finite_width=True): the 1/n expansion is outside its "
                      f"range (Var qhat / (E qhat)^2 up to {eps:.3g} > {EXPANSION_LIMIT}; depth "
                      f"not small against width): the {quantity} {outside_range_consequence(eps)}",
                      VarpropWarning, stacklevel=4)
    if per_layer:
        return values
    return float(values[0] if quantity in _BACKWARD else values[-1])


def _refuse_impossible(act: Activation, fw: FiniteWidthMoments, variance: np.ndarray) -> None:
    r"""Refuse a 1/n activation variance that is negative, or built on a negative mean of a
    non-negative activation (the delta method for :math:`E\phi` has broken down)."""
    grid = np.linspace(-30.0, 30.0, 601)
    nonnegative = bool(np.all(np.asarray(act.function(grid), dtype=float) >= 0.0))
    bad = variance < 0.0
    if nonnegative:
        bad = bad | (fw.act_mean < 0.0)
    if np.any(bad):
        l = int(np.argmax(bad))
        raise VarpropError(
            f"the 1/n expansion of E a breaks down at layer {l + 1}: E a = {fw.act_mean[l]:.3g}, "
            f"Var a = {variance[l]:.3g} (Var qhat / (E qhat)^2 = "
            f"{fw.expansion_parameter[l]:.3g}); no exact value exists here (biases or non-Gaussian "
            "weights): use a wider or shallower network, or simulate")


def network_finite_width_values(net: Network, quantity: str, per_layer: bool
                                ) -> float | np.ndarray:
    """:func:`finite_width_values` for an MLP-shaped :class:`~varprop.Network`."""
    mlp = net.as_mlp()
    if mlp is None:
        raise fail("finite_width", True, "False for this network: the 1/n expansion covers "
                   "MLP-shaped networks (alternating Dense and Nonlinearity layers with one "
                   "activation, init and bias variance) with zero-mean symmetric i.i.d. weights")
    return finite_width_values(mlp.activation, mlp.init, mlp.widths(), mlp.input_variance,
                               mlp.bias_variance, quantity, per_layer)
