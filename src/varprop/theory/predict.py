r"""Fast numerical predictions: :func:`propagate` and :func:`predict_variance`.

The model (issue 2, stated identically in the docs)
--------------------------------------------------
A network of depth :math:`L` maps an input :math:`x = a_0` (i.i.d. zero-mean entries with second
moment ``input_variance``) through

.. math:: z_l = W_l a_{l-1} + b_l, \qquad a_l = \phi(z_l), \qquad l = 1, \dots, L,

with widths :math:`n_0 = ` ``fan_in``, :math:`n_1 = \dots = n_L = ` ``fan_out`` (default
``fan_in``) or explicit ``widths``.  Weights are i.i.d. from the init scheme (mean
:math:`\mu_w`, variance :math:`\sigma_w^2`), biases i.i.d. :math:`N(0, \sigma_b^2)`.  The backward
pass starts from :math:`\delta_L = \partial\mathcal L/\partial z_L` with i.i.d. zero-mean
unit-variance entries, independent of the forward pass.

Recursions
----------
**Zero-mean weights** (:math:`\mu_w = 0`): one variance per layer,

.. math::

    q_l = n_{l-1}\sigma_w^2 E[\phi(z)^2]_{z\sim N(0, q_{l-1})} + \sigma_b^2, \qquad
    E g_j^2 = \sigma_w^2 n_l E\delta_{l,i}^2, \qquad
    E\delta_{l-1,j}^2 = E[\phi'(z_{l-1})^2]\, E g_j^2

(with :math:`E[x^2]` for the first layer), :math:`g = W_l^\top \delta_l`, and
:math:`E(\partial\mathcal L/\partial W_l)_{ij}^2 = E\delta_{l,i}^2\, E a_{l-1,j}^2`.

**Non-zero-mean weights, linear layers**: with :math:`A_m = E a_i`, :math:`A_D = E a_i^2`,
:math:`A_C = E a_i a_k` (:math:`i \ne k`) of layer :math:`l-1` (for the input :math:`A_m = A_C = 0`,
:math:`A_D = ` ``input_variance``) and :math:`S_2 = n A_D + n(n-1) A_C = E(\sum_j a_j)^2`,

.. math::

    m_l = \mu_w n A_m, \quad
    D_l = E z_i^2 = \sigma_w^2 n A_D + \mu_w^2 S_2 + \sigma_b^2, \quad
    C_l = E z_i z_k = \mu_w^2 S_2 ,

and backward, with :math:`G_D = E\delta_i^2`, :math:`G_C = E\delta_i\delta_k`,
:math:`E g_j^2 = \sigma_w^2 n_l G_D + \mu_w^2 (n_l G_D + n_l(n_l-1) G_C)`: exact at every width
(second moments of linear maps need no Gaussianity).

**Non-zero-mean weights, nonlinear activations**: every unit of a layer carries the same shift
:math:`s_l = \mu_w \sum_j a_{l-1,j}`, which after a nonlinearity is *not* Gaussian, so the
:math:`(m, D, C)` closure with jointly Gaussian units fails from layer 3 on.  The recursion is
instead conditional on the layer-1 shift :math:`s_1 = \mu_w\sum_j x_j` (exactly Gaussian):
given it, each layer's shift :math:`m_l` and within-layer variance :math:`q_l` are deterministic,
:math:`m_{l+1} = \mu_w n_l E\phi`, :math:`q_{l+1} = \sigma_w^2 n_l E\phi^2 + \sigma_b^2` with
:math:`z \sim N(m_l, q_l)`, and the moments are averages over :math:`s_1` (numerical quadrature);
see :mod:`varprop.theory.shifted` for the full statement, the backward pass and the measured accuracy.

Assumptions: infinite-width mean field (pre-activations Gaussian given the shared shift) and the
gradient-independence assumption (:math:`\phi'(z_{l-1})` independent of :math:`g`).  For
zero-mean symmetric i.i.d. weights the second moments of **linear and ReLU** nets are exact at
every finite width, and for linear nets with any i.i.d. weights; everything else is exact only
as the widths grow.  Orthogonal weights enter through their entry variance
:math:`g^2/\max(n_{in}, n_{out})` (exact for the second moments of linear layers).

Sizes
-----
The recursion stops as soon as the state entering a layer is bitwise the state entering the
identical layer before it (every later layer then computes the same numbers), and the last
layer's value needs memory independent of depth (``per_layer=False``; zero-mean weights and
linear layers).  Per-layer arrays that cannot fit in the available memory are refused with a
:class:`~varprop.VarpropError` stating the bytes they would need.  A predicted variance beyond
the float range is returned as ``inf`` and one that underflows to exactly 0.0 (from a positive
input or bias variance) as 0.0, each with a :class:`~varprop.VarpropWarning`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import (
    check_choice,
    check_nonnegative_real,
    check_positive_int,
    check_widths,
    fail,
    fail_type,
)
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import VarpropError, VarpropWarning
from varprop.network.model import (
    Network,
    default_quantity,
    refuse_stacked_nonlinearities,
    refuse_with_network,
)
from varprop.network.quantities import (
    MLP_QUANTITIES,
    NETWORK_QUANTITIES,
    QUANTITIES,
    spec,
)
from varprop.network.state import NAN_MESSAGE
from varprop.theory.fields import general_values, is_general
from varprop.theory.meanfield import walk_backward
from varprop.theory.sizes import check_fits, underflowed
from varprop.theory.walks import (
    _SHIFTED_ARRAYS,
    _forward,
    _mlp,
    _network_values,
    _Prepared,
    _prepared,
    _readonly,
    _Shape,
    _walks,
)

#: finite-width corrections and the walk conditional on the layer-1 shift, imported at first use
finite = lazy_module("varprop.theory.finite.quantities")
_shifted = lazy_module("varprop.theory.shifted")

__all__ = ["predict_variance", "propagate", "Propagation", "QUANTITIES", "METHODS"]

Quantity = Literal["preactivation", "activation", "activation_second_moment", "gradient",
                   "weight_gradient", "output", "output_gradient"]
Method = Literal["auto", "exact", "closed_form", "quadrature"]

METHODS: tuple[str, ...] = ("auto", "exact", "closed_form", "quadrature")

@dataclass(frozen=True)
class Propagation:
    r"""Per-layer moments of a network, forward and backward (arrays over :math:`l = 1..L`).

    Attributes
    ----------
    widths : tuple of int
        :math:`(n_0, \dots, n_L)`.
    method : str
        How activation moments were computed (``exact``, ``closed_form`` or ``quadrature``).
    preact_mean, preact_second, preact_cross : ndarray
        :math:`E z_{l,i}`, :math:`E z_{l,i}^2`, :math:`E z_{l,i} z_{l,k}` (:math:`i \ne k`).
    act_mean, act_second, act_cross : ndarray
        The same for :math:`a_l = \phi(z_l)`.
    grad_second : ndarray
        :math:`E(\partial\mathcal L/\partial a_{l-1})^2`, the gradient at layer :math:`l`'s input
        (element 0 is the gradient at the network input).
    delta_second : ndarray
        :math:`E(\partial\mathcal L/\partial z_l)^2` (the last element is 1).
    weight_grad_second : ndarray
        :math:`E(\partial\mathcal L/\partial W_l)_{ij}^2`.

    An entry is NaN only where it is indeterminate in floating point (:math:`0\cdot\infty`, e.g.
    a saturated activation's vanishing derivative times an overflowing gradient);
    :meth:`variance` (and so :func:`predict_variance`) raises :class:`~varprop.VarpropError` rather
    than returning it.
    """

    widths: tuple[int, ...]
    method: str
    preact_mean: np.ndarray
    preact_second: np.ndarray
    preact_cross: np.ndarray
    act_mean: np.ndarray
    act_second: np.ndarray
    act_cross: np.ndarray
    grad_second: np.ndarray
    delta_second: np.ndarray
    weight_grad_second: np.ndarray

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    def variance(self, quantity: Quantity) -> np.ndarray:
        """Per-layer values of ``quantity`` (see :func:`predict_variance`)."""
        quantity = check_choice("quantity", quantity, MLP_QUANTITIES)
        out = self._values(quantity)
        if np.isnan(out).any():
            raise VarpropError(f"{quantity}: {NAN_MESSAGE}")
        return out

    def _values(self, quantity: str) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            if quantity == "preactivation":
                out = _variance(self.preact_second, self.preact_mean)
            elif quantity == "activation":
                out = _variance(self.act_second, self.act_mean)
            elif quantity == "activation_second_moment":
                out = self.act_second.copy()
            elif quantity == "gradient":
                out = self.grad_second.copy()
            else:
                out = self.weight_grad_second.copy()
        return out


def _variance(second: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``second - mean**2``, keeping ``inf`` where the second moment is beyond the float range."""
    out = second - mean * mean
    out = np.where(np.isinf(second), np.inf, out)
    return np.maximum(out, 0.0)


def _propagation(prep: _Prepared, method: str, widths: tuple[int, ...]) -> Propagation:
    """The per-layer moments of an MLP-shaped network with widths ``widths`` (the backward pass
    started at ``z_L``)."""
    fw, bw = _walks(prep, method, prep.net.layers.size - 2)
    mean, second, cross = (fw.expand(c) for c in (fw.mean, fw.second, fw.cross))
    assert bw.out_second is not None and bw.weight_second is not None
    grad = np.concatenate([[bw.input_second], bw.out_second[1:-2:2]])
    forward = [x[k::2] for k in (0, 1) for x in (mean, second, cross)]
    return Propagation(widths, method, *map(_readonly, forward),
                       *map(_readonly, (grad, bw.out_second[0::2], bw.weight_second[0::2])))


@lru_cache(maxsize=1024)
def _propagate_cached(act: Activation, scheme: InitScheme, shape: _Shape, input_variance: float,
                      bias_variance: float, method: str) -> Propagation:
    return _propagation(_mlp(act, scheme, shape, input_variance, bias_variance), method,
                        shape.widths())


@lru_cache(maxsize=256)
def _propagate_network(prep: _Prepared, method: str) -> Propagation:
    mlp = prep.net.as_mlp()
    assert mlp is not None
    return _propagation(prep, method, mlp.widths())


def _resolve_method(method: object) -> str:
    method = check_choice("method", method, METHODS)
    return "exact" if method == "auto" else method


# ----- public functions -----------------------------------------------------------------------

def propagate(
    activation: Network | Activation | str,
    init: InitScheme | str | None = None,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: list[int] | tuple[int, ...] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    method: Method = "auto",
) -> Propagation:
    r"""All per-layer moments of the model, forward and backward (see the module docstring).

    Parameters are those of :func:`predict_variance`; the first may be an MLP-shaped
    :class:`~varprop.Network` (:meth:`~varprop.Network.as_mlp`).  Results are cached (the returned
    arrays are read-only).

    >>> p = propagate("relu", "he_normal", fan_in=100, depth=3)
    >>> p.preact_second.tolist()
    [2.0, 2.0, 2.0]
    """
    if isinstance(activation, Network):
        net = _network_argument(activation, init, fan_in, fan_out, widths, depth, input_variance,
                                bias_variance)
        method = _resolve_method(method)
        prep = _prepared(net)
        if not prep.is_mlp:
            raise fail("network", net, "an MLP-shaped network (alternating Dense and Nonlinearity "
                       "layers, one activation, init and bias): for any other network use "
                       "predict_variance(net, quantity='output' or 'output_gradient', per_layer=True)")
        check_fits(net.layers.size // 2)
        return _propagate_network(prep, method)
    act, scheme, shape, in_var, b_var, method = _arguments(
        activation, init, fan_in, fan_out, widths, depth, input_variance, bias_variance, method)
    check_fits(shape.L)  # before allocating: the per-layer arrays grow with depth
    return _propagate_cached(act, scheme, shape, in_var, b_var, method)


def predict_variance(
    activation: Network | Activation | str,
    init: InitScheme | str | None = None,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: list[int] | tuple[int, ...] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    quantity: Quantity | None = None,
    method: Method = "auto",
    per_layer: bool = False,
    finite_width: bool = False,
) -> float | np.ndarray:
    r"""Predict the variance of a quantity in a randomly initialised network.

    Parameters
    ----------
    activation : Network, str or Activation
        A :class:`~varprop.Network` (then no other shape argument is given: the network describes
        itself), or the activation of the MLP described by the keyword arguments
        (:meth:`varprop.Network.mlp`): ``"relu"``, ``"tanh"``, ... or
        :func:`varprop.activation` (a custom expression in ``x`` where supported).
    init : str or InitScheme
        ``"he_normal"``, ... or :func:`varprop.init_scheme` (keyword form only).
    fan_in, fan_out, widths, depth
        Network shape: :math:`n_0 = ` ``fan_in``, :math:`n_1..n_L = ` ``fan_out`` (default
        ``fan_in``), :math:`L = ` ``depth``; or ``widths=[n_0, ..., n_L]``.
    input_variance : float
        :math:`E[x_j^2]` of the zero-mean input entries.
    bias_variance : float
        :math:`\sigma_b^2`.
    quantity : {"preactivation", "activation", "activation_second_moment", "gradient", "weight_gradient", "output", "output_gradient"}
        Default ``"activation"`` for the keyword form and MLP-shaped networks, ``"output"`` for
        any other network.
        The MLP quantities ("layer :math:`l`" is the :math:`l`-th dense layer; an error for a
        network that is not MLP-shaped): ``preactivation``: :math:`\operatorname{Var} z_L`;
        ``activation``: :math:`\operatorname{Var} a_L = E a_L^2 - (E a_L)^2`;
        ``activation_second_moment``: :math:`E a_L^2` (what feeds the next layer); ``gradient``:
        :math:`\operatorname{Var}\partial\mathcal L/\partial x` after back-propagating through all
        :math:`L` layers from :math:`\delta_L = \partial\mathcal L/\partial z_L`;
        ``weight_gradient``: :math:`\operatorname{Var}\partial\mathcal L/\partial W_1`.  For any
        network, per layer position :math:`p` (every layer counts): ``output``: :math:`E y_p^2`
        of layer :math:`p`'s output; ``output_gradient``: :math:`E(\partial\mathcal L/\partial
        y_p)^2` with i.i.d. zero-mean unit-variance gradients at the last layer's output.
        With ``per_layer=False`` each quantity is reported where its propagation ends: forward
        quantities at the last layer, backward ones (``gradient``, ``weight_gradient``,
        ``output_gradient``) at the first layer, the last one the backward pass reaches (the
        last layer's ``output_gradient`` is the unit-variance seed itself).
    method : {"auto", "exact", "closed_form", "quadrature"}
        ``exact``: infinite-width mean field, closed forms where exact, quadrature otherwise
        (zero-mean weights: through a table in :math:`\log q` verified against quadrature to
        :math:`10^{-11}` per panel, ~1.5 µs a layer); ``auto``: the same; ``closed_form``: the
        derived formulas with the activation's stated approximation (tanh, sigmoid);
        ``quadrature``: direct numerical integration everywhere (~50 µs a layer).
    per_layer : bool
        Return an array over layers :math:`1..L` in forward order (for ``gradient``:
        :math:`\operatorname{Var}\partial\mathcal L/\partial a_{l-1}`, the gradient at layer
        :math:`l`'s input; for ``weight_gradient``: :math:`\partial\mathcal L/\partial W_l`), or
        over layer positions for ``output`` and ``output_gradient``.
    finite_width : bool
        Add the :math:`O(1/n)` correction (:mod:`varprop.theory.finite`, Yaida 2020): MLP
        quantities, zero-mean symmetric i.i.d. weights; exact where the mean field is.

    Returns
    -------
    float or ndarray
        Values beyond the float range come back as ``inf`` with a :class:`VarpropWarning`.

    Notes
    -----
    Ensemble variance of one unit over networks and inputs.  Exact at finite width for second
    moments of linear and ReLU nets with zero-mean symmetric i.i.d. weights; otherwise the
    infinite-width limit (see :mod:`varprop.theory.predict`).  A network with layers other than ``Dense`` and
    ``Nonlinearity`` (or a non-vector input) is walked by the general engine
    (:func:`varprop.predict_fields`, zero-mean weights; ``method`` does not apply there: closed
    forms where exact, quadrature otherwise), each value :math:`E x^2` averaged over every entry
    of the layer's output.  A nonlinearity acting on the
    network input treats the input as Gaussian.

    Examples
    --------
    >>> predict_variance("linear", "standard_normal", fan_in=512, quantity="preactivation")
    512.0
    >>> round(float(predict_variance("tanh", "lecun_normal", fan_in=512)), 4)
    0.3943
    >>> predict_variance("relu", "he_normal", fan_in=64, depth=10, quantity="preactivation")
    2.0
    >>> from varprop import Network, layers
    >>> net = Network([layers.Dense(64, "he_normal"), "relu", layers.Dense(10, "lecun_normal")],
    ...               input_shape=(32,))
    >>> predict_variance(net, quantity="output", per_layer=True).tolist()
    [2.0, 1.0, 1.0]
    """
    if quantity is None:
        quantity = default_quantity(activation)
    quantity = check_choice("quantity", quantity, QUANTITIES)
    if not isinstance(per_layer, bool):
        raise fail("per_layer", per_layer, "True or False")
    if not isinstance(finite_width, bool):
        raise fail("finite_width", finite_width, "True or False")
    if finite_width:
        return _finite_width(activation, init, (fan_in, fan_out, widths, depth, input_variance,
                                                bias_variance), quantity, method, per_layer)
    if isinstance(activation, Network):
        net = _network_argument(activation, init, fan_in, fan_out, widths, depth, input_variance,
                                bias_variance)
        method = _resolve_method(method)
        if is_general(net):  # layers beyond Dense/Nonlinearity: the general engine
            if quantity not in NETWORK_QUANTITIES:
                raise fail("quantity", quantity, f"one of {list(NETWORK_QUANTITIES)} for a network "
                           "that is not MLP-shaped")
            values, under = general_values(net, quantity), False
        elif quantity in NETWORK_QUANTITIES:
            refuse_stacked_nonlinearities(net)
            values, under = _network_values(_prepared(net), quantity, method, per_layer)
        else:
            refuse_stacked_nonlinearities(net)
            prep = _prepared(net)
            if not prep.is_mlp:
                raise fail("quantity", quantity, f"one of {list(NETWORK_QUANTITIES)} for a network "
                           f"that is not MLP-shaped (the MLP quantities {list(MLP_QUANTITIES)} "
                           "count dense layers of a Dense/Nonlinearity chain)")
            values, under = _mlp_values(prep, quantity, method, per_layer,
                                        lambda: _propagate_network(prep, method))
    else:
        act, scheme, shape, in_var, b_var, method = _arguments(
            activation, init, fan_in, fan_out, widths, depth, input_variance, bias_variance, method)
        prep = _mlp(act, scheme, shape, in_var, b_var)
        if quantity in NETWORK_QUANTITIES:
            values, under = _network_values(prep, quantity, method, per_layer)
        else:
            values, under = _mlp_values(prep, quantity, method, per_layer, lambda: _propagate_cached(
                act, scheme, shape, in_var, b_var, method))
    if np.isinf(values).any():
        warnings.warn(f"predicted {quantity} variance exceeds the float range at some layer; "
                      "returned as inf", VarpropWarning, stacklevel=2)
    if under:
        warnings.warn(f"predicted {quantity} variance underflows to 0.0 at some layer (the exact "
                      "value is positive but below the float range); returned as 0.0",
                      VarpropWarning, stacklevel=2)
    if per_layer:
        return values
    return float(values[0] if spec(quantity).backward or values.size == 1 else values[-1])


def _finite_width(activation: object, init: object, shape: tuple, quantity: str, method: object,
                  per_layer: bool) -> float | np.ndarray:
    """``predict_variance(..., finite_width=True)``: :mod:`varprop.theory.finite.quantities`."""
    if _resolve_method(method) != "exact":
        raise fail("method", method, "'auto' or 'exact' with finite_width=True")
    if isinstance(activation, Network):
        net = _network_argument(activation, init, *shape)
        return finite.network_finite_width_values(net, quantity, per_layer)
    a, s, shp, v, b, _ = _arguments(activation, init, *shape, method)  # depth checked first:
    return finite.finite_width_values(a, s, finite.shape_widths(a, shp), v, b, quantity, per_layer)


def _mlp_values(prep: _Prepared, quantity: str, method: str, per_layer: bool,
                propagation) -> tuple[np.ndarray, bool]:
    """The MLP quantities (with ``propagation()`` the cached per-layer moments) and whether one
    underflowed."""
    backward = spec(quantity).backward
    net = prep.net
    L = net.layers.size // 2
    conditional = prep.conditional
    if per_layer or conditional:
        check_fits(L, *((_shifted.BYTES_PER_LAYER, _SHIFTED_ARRAYS, "") if conditional else ()))
        prop = propagation()
        values = prop.variance(quantity)
        seconds = {"preactivation": prop.preact_second, "activation": prop.act_second,
                   "activation_second_moment": prop.act_second, "gradient": prop.grad_second,
                   "weight_gradient": prop.weight_grad_second}[quantity]
        source = prep.source_positive(backward)
        return values, (source or not backward) and underflowed(seconds[::-1] if backward else seconds, source)
    fw = _forward(prep, method, "backward" if backward else "last")
    if backward:
        bw = walk_backward(fw, net.layers.size - 2, source_positive=prep.source_positive(True))
        name = "dense_input" if quantity == "gradient" else "weight"
        values = np.array([bw.dense_input if quantity == "gradient" else bw.weight])
        under = bw.under[name].under
    else:
        offset, kind = (2, "dense") if quantity == "preactivation" else (1, "nonlinearity")
        mean, second, _ = fw.last_reported(offset)
        with np.errstate(invalid="ignore", over="ignore"):
            values = np.array([second]) if quantity == "activation_second_moment" else \
                _variance(np.array([second]), np.array([mean]))
        under = fw.under[kind].under
    if np.isnan(values).any():
        raise VarpropError(f"{quantity}: {NAN_MESSAGE}")
    return values, under


def _network_argument(net: Network, init: object, fan_in: object, fan_out: object, widths: object,
                      depth: object, input_variance: object, bias_variance: object) -> Network:
    """A :class:`Network` first argument: the keyword shape arguments must be left out."""
    refuse_with_network({"init": (init, None), "fan_in": (fan_in, None), "fan_out": (fan_out, None),
                         "widths": (widths, None), "depth": (depth, 1),
                         "input_variance": (input_variance, 1.0),
                         "bias_variance": (bias_variance, 0.0)})
    return net


def _arguments(activation: object, init: object, fan_in: object, fan_out: object, widths: object,
               depth: object, input_variance: object, bias_variance: object, method: object
               ) -> tuple[Activation, InitScheme, _Shape, float, float, str]:
    """The public arguments of :func:`propagate` and :func:`predict_variance`, validated once."""
    if init is None:
        raise fail_type("init", init, "an init scheme name such as 'he_normal' or "
                        "varprop.init_scheme(...) (or a Network as the first argument)")
    return (resolve_activation(activation), resolve_scheme(init),
            _shape(fan_in, fan_out, widths, depth),
            check_nonnegative_real("input_variance", input_variance),
            check_nonnegative_real("bias_variance", bias_variance), _resolve_method(method))


def _shape(fan_in: object, fan_out: object, widths: object, depth: object) -> _Shape:
    """Validated network shape; a constant-width one without materialising its widths."""
    if widths is not None:
        return _Shape.of(check_widths(fan_in, fan_out, widths, depth))
    n0, n = check_widths(fan_in, fan_out, None, 1)
    return _Shape(None, n0, n, check_positive_int("depth", depth))
