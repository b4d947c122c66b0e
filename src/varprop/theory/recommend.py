r"""Which weight std to use: the gain that keeps signals and gradients steady over a given depth.

For an MLP of ``depth`` layers of width :math:`n` with zero-mean weights of variance
:math:`g^2/n` (PyTorch: ``std = gain / sqrt(fan_in)``; Keras: ``VarianceScaling(scale=gain**2,
mode="fan_in")``) and :math:`N(0, \sigma_b^2)` biases, varprop's own mean-field prediction
(:func:`varprop.predict_variance`, infinite width, gradient independence) gives

.. math::

    R_{\mathrm{fw}}(g) = \frac{q_L}{q_1}, \qquad q_l = E z_l^2, \qquad
    R_{\mathrm{bw}}(g) = \frac{E(\partial\mathcal L/\partial a_0)^2}
                              {E(\partial\mathcal L/\partial a_{L-1})^2},

the forward and backward second-moment ratios over the :math:`L - 1` layers between the first and
the last (input :math:`E x^2 = 1`).  The recommended gain minimises, over :math:`\log g`,

.. math::

    J(g) = |\log R_{\mathrm{fw}}| \;(\texttt{goal="forward"}), \quad
           |\log R_{\mathrm{bw}}| \;(\texttt{"backward"}), \quad
           \max(|\log R_{\mathrm{fw}}|, |\log R_{\mathrm{bw}}|) \;(\texttt{"both"}),

by a bounded 1-D search (:func:`scipy.optimize.minimize_scalar`); the candidates of the
trade-off table (variance-preserving gain, edge of chaos) are kept when they score at least as
well, so that the closed-form answers are exact (ReLU: :math:`g = \sqrt 2`, He et al. 2015;
linear: :math:`g = 1`).  The table's phase is that of the mean-field fixed point,
:math:`\chi_1 = g^2 E\phi'(z)^2` at :math:`q^*` (:func:`varprop.theory.criticality.mean_field`;
Poole et al. 2016, Schoenholz et al. 2017).

Assumptions: infinite width (exact at every width for second moments of linear and ReLU nets),
zero-mean i.i.d. weights, fan-in = fan-out = width, gradient independence for the backward ratio.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from varprop._util.validation import (
    check_choice,
    check_float_range,
    check_nonnegative_real,
    check_positive_int,
    fail,
)
from varprop.components.activations import Activation, resolve_activation
from varprop.components.scheme import weight_moments
from varprop.components.schemes import InitScheme, init_scheme
from varprop.errors import InvalidArgument
from varprop.network.model import Network, refuse_with_network
from varprop.theory.criticality import critical_gain, edge_of_chaos, mean_field
from varprop.theory.predict import predict_variance

__all__ = ["recommend", "Recommendation", "TradeOff", "GOALS", "ratios", "ratio_curves",
           "row_scheme"]

#: the criteria :func:`recommend` optimises
GOALS = ("forward", "backward", "both")
#: the framework defaults shown in the table (varprop scheme name -> label)
_DEFAULTS = (("he_normal", "he_normal / kaiming_normal"),
             ("lecun_normal", "lecun_normal"),
             ("xavier_normal", "xavier / glorot_normal"),
             ("torch_linear_default", "torch nn.Linear default"))
_SEARCH_WIDEN = 4.0  # the search covers [min(candidates) / 4, max(candidates) * 4]
_XATOL = 1e-10  # on log g
_HUGE = 1e300  # the objective where a ratio leaves the float range


@dataclass(frozen=True)
class TradeOff:
    r"""One row of the trade-off table.

    Attributes
    ----------
    name : str
        What the row is (``"variance-preserving"``, ``"edge of chaos"``, a framework default, or
        ``"recommended"``).
    gain : float
        :math:`g`, weights of variance :math:`g^2/n` (std :math:`g/\sqrt n`).
    std : float
        :math:`g/\sqrt{n}` at fan-in :math:`n` = width (PyTorch's ``std``).
    keras_scale : float
        :math:`g^2` (Keras ``VarianceScaling(scale=..., mode="fan_in")``).
    forward_ratio, backward_ratio : float
        :math:`R_{\mathrm{fw}} = q_L/q_1` and :math:`R_{\mathrm{bw}}` (see the module).
    phase : str
        ``"ordered"``, ``"critical"``, ``"chaotic"`` or ``"unbounded"`` (:math:`\chi_1` at
        :math:`q^*`).
    """

    name: str
    gain: float
    std: float
    keras_scale: float
    forward_ratio: float
    backward_ratio: float
    phase: str

    def score(self, goal: str) -> float:
        """The objective :math:`J` of ``goal`` at this row (``inf`` off the float range)."""
        return _score(self.forward_ratio, self.backward_ratio, goal)


@dataclass(frozen=True)
class Recommendation:
    r"""The answer of :func:`recommend`: the gain, its std and Keras scale, and the table.

    Attributes
    ----------
    activation : str
    width, depth : int
    bias_variance : float
    goal : str
    gain, std, keras_scale, forward_ratio, backward_ratio, phase
        Those of the recommended row (``table[-1]``).
    source : str
        The row the optimum came from (``"search"`` or a candidate's name, kept because it scored
        at least as well as the search).
    at_bound : bool
        The search ended at an end of its range :math:`[\min g / 4, \max g \cdot 4]` over the
        table's gains: :math:`J` still decreases there (e.g. tanh with ``goal="forward"``, where
        :math:`q_L/q_1 \to 1` only as :math:`g \to \infty`, the saturated regime).
    table : tuple of TradeOff
        Variance-preserving gain, edge of chaos (when it exists), the framework defaults, and the
        recommendation last.
    """

    activation: str
    width: int
    depth: int
    bias_variance: float
    goal: str
    gain: float
    std: float
    keras_scale: float
    forward_ratio: float
    backward_ratio: float
    phase: str
    source: str
    at_bound: bool
    table: tuple[TradeOff, ...]

    @property
    def band(self) -> tuple[float, float]:
        r"""The band the recommendation keeps its end-to-end ratios in: :math:`[e^{-J}, e^{J}]`,
        :math:`J` the recommended row's objective (``goal="both"``: :math:`R_{\mathrm{fw}}` and
        :math:`R_{\mathrm{bw}}` both lie in it; the minimax, no gain has a narrower band).  The
        ratios at intermediate layers may leave it (tanh's gradients peak a few layers from the
        input); the figure of :func:`varprop.plot_recommendation` shades it."""
        j = self.table[-1].score(self.goal)
        return math.exp(-j), math.exp(j)


def _score(fw: float, bw: float, goal: str) -> float:
    parts = {"forward": (fw,), "backward": (bw,), "both": (fw, bw)}[goal]
    if not all(math.isfinite(r) and r > 0.0 for r in parts):
        return math.inf
    return max(abs(math.log(r)) for r in parts)


def ratio_curves(act: Activation, scheme: InitScheme, width: int, depth: int,
                 bias_variance: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The ratios layer by layer, :math:`l = 1, \dots, L`:
    :math:`q_l / q_1` (forward, 1 at :math:`l = 1`) and
    :math:`E(\partial\mathcal L/\partial a_{l-1})^2 / E(\partial\mathcal L/\partial a_{L-1})^2`
    (backward, 1 at :math:`l = L`), from :func:`predict_variance` (``inf``/``0`` beyond the
    float range, ``nan`` where the reference layer's moment is 0, without warnings).  The table's
    :math:`R_{\mathrm{fw}}` is the last forward entry, :math:`R_{\mathrm{bw}}` the first
    backward one."""
    shape = dict(fan_in=width, depth=depth, bias_variance=bias_variance, per_layer=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = np.asarray(predict_variance(act, scheme, quantity="preactivation", **shape))
        grad = np.asarray(predict_variance(act, scheme, quantity="gradient", **shape))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fw = q / q[0] if q[0] > 0 else np.full(q.shape, math.nan)
        bw = grad / grad[-1] if grad[-1] > 0 else np.full(grad.shape, math.nan)
    return fw, bw


def ratios(act: Activation, scheme: InitScheme, width: int, depth: int,
           bias_variance: float) -> tuple[float, float]:
    r""":math:`(R_{\mathrm{fw}}, R_{\mathrm{bw}})` of one scheme: the ends of
    :func:`ratio_curves`."""
    fw, bw = ratio_curves(act, scheme, width, depth, bias_variance)
    return float(fw[-1]), float(bw[0])


def row_scheme(row: TradeOff) -> InitScheme:
    r"""The init scheme of a table row: the framework default's own scheme for its rows,
    :math:`N(0, \mathrm{std}^2)` for the others (same ratios up to rounding of the std)."""
    names = {label: name for name, label in _DEFAULTS}
    if row.name in names:
        return init_scheme(names[row.name])
    return init_scheme("normal", std=row.std)


def _phase(act: Activation, gain: float, b2: float) -> str:
    try:
        return mean_field(act, gain * gain, bias_variance=b2).phase
    except (InvalidArgument, ArithmeticError):
        return "unknown"


def _row(name: str, act: Activation, scheme: InitScheme, width: int, depth: int,
         b2: float) -> TradeOff:
    var = weight_moments(scheme, width, width)[1]
    gain = math.sqrt(var * width)
    fw, bw = ratios(act, scheme, width, depth, b2)
    return TradeOff(name, gain, math.sqrt(var), gain * gain, fw, bw, _phase(act, gain, b2))


def _gain_row(name: str, act: Activation, gain: float, width: int, depth: int,
              b2: float) -> TradeOff:
    return _row(name, act, init_scheme("normal", std=gain / math.sqrt(width)), width, depth, b2)


def _candidates(act: Activation, width: int, depth: int, b2: float) -> list[TradeOff]:
    rows = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unstable fixed point is still a candidate
            rows.append(_gain_row("variance-preserving", act,
                                  critical_gain(act, target_variance=1.0, bias_variance=b2),
                                  width, depth, b2))
    except InvalidArgument:  # bias_variance >= 1, or E phi^2 = 0 at q = 1
        pass
    try:
        eoc = edge_of_chaos(act, b2)
        rows.append(_gain_row("edge of chaos", act, eoc.gain, width, depth, b2))
    except InvalidArgument:  # no chi_1 = 1 in range, or ReLU-like with bias
        pass
    return rows


def _from_network(net: Network, width: object, depth: object, bias_variance: object
                  ) -> tuple[Activation, int, int, float]:
    """The activation, width, depth and bias variance of a constant-width MLP ``net``."""
    refuse_with_network({"width": (width, None), "depth": (depth, None),
                         "bias_variance": (bias_variance, 0.0)})
    mlp = net.as_mlp()
    if mlp is None or mlp.explicit is not None or mlp.n0 != mlp.n:
        raise fail("activation", net, "a Network of Dense/Nonlinearity pairs of one width, "
                   "activation and bias variance (Network.mlp with fan_in == fan_out), or an "
                   "activation with width= and depth=")
    return mlp.activation, mlp.n, mlp.depth, mlp.bias_variance


def recommend(activation: Network | Activation | str, *, width: int | None = None,
              depth: int | None = None, bias_variance: float = 0.0,
              goal: str = "both") -> Recommendation:
    r"""The weight std (gain) that keeps the forward signal and/or the gradients steady.

    Minimises :math:`J(g)` (see :mod:`varprop.theory.recommend`) over the gain :math:`g` of
    zero-mean weights :math:`N(0, g^2/n)`, :math:`n` = ``width``, for an MLP of ``depth`` layers,
    every ratio computed by :func:`varprop.predict_variance` (infinite-width mean field).

    Parameters
    ----------
    activation : str, Activation or Network
        An activation, or a :class:`~varprop.Network` of one width, activation and bias
        variance (:meth:`~varprop.Network.mlp` with ``fan_in == fan_out``; its init scheme is
        the one being replaced): then ``width``, ``depth`` and ``bias_variance`` stay unset.
    width : int, keyword-only
        Fan-in = fan-out :math:`n` of every layer (required with an activation).
    depth : int, keyword-only
        Number of layers :math:`L \ge 2` (the ratios span :math:`L - 1` layers).
    bias_variance : float, keyword-only
        :math:`\sigma_b^2 \ge 0`.
    goal : {"forward", "backward", "both"}, keyword-only
        Keep :math:`q_L/q_1`, the gradient ratio, or the worse of the two closest to 1.

    Returns
    -------
    Recommendation

    Examples
    --------
    >>> r = recommend("relu", width=512, depth=20)
    >>> r.gain == 2 ** 0.5, r.source
    (True, 'variance-preserving')
    """
    if isinstance(activation, Network):
        activation, width, depth, bias_variance = _from_network(activation, width, depth,
                                                                bias_variance)
    act = resolve_activation(activation)
    width = check_positive_int("width", width)
    depth = check_positive_int("depth", depth)
    if depth < 2:
        raise fail("depth", depth, "an integer >= 2 (the ratios compare the first and the last "
                   "layer)")
    b2 = check_nonnegative_real("bias_variance", check_float_range("bias_variance", bias_variance))
    goal = check_choice("goal", goal, GOALS)
    rows = _candidates(act, width, depth, b2)
    defaults = [_row(label, act, init_scheme(name), width, depth, b2) for name, label in _DEFAULTS]
    gains = [r.gain for r in rows + defaults]
    lo, hi = math.log(min(gains) / _SEARCH_WIDEN), math.log(max(gains) * _SEARCH_WIDEN)

    def objective(log_g: float) -> float:
        g = math.exp(log_g)
        fw, bw = ratios(act, init_scheme("normal", std=g / math.sqrt(width)), width, depth, b2)
        return min(_score(fw, bw, goal), _HUGE)

    found = minimize_scalar(objective, bounds=(lo, hi), method="bounded",
                            options={"xatol": _XATOL})
    best = _gain_row("recommended", act, math.exp(float(found.x)), width, depth, b2)
    source = "search"
    at_bound = min(abs(float(found.x) - lo), abs(float(found.x) - hi)) < 1e-6
    cand = min(rows + defaults, key=lambda r: r.score(goal))  # the first of equals
    if cand.score(goal) <= best.score(goal):
        best, source, at_bound = TradeOff("recommended", *_fields(cand)), cand.name, False
    if not math.isfinite(best.score(goal)):
        raise fail("depth", depth, f"a depth over which some gain keeps the {goal} ratio of "
                   f"{act.name!r} within the float range")
    table = tuple(rows + defaults + [best])
    return Recommendation(act.name, width, depth, b2, goal, best.gain, best.std, best.keras_scale,
                          best.forward_ratio, best.backward_ratio, best.phase, source, at_bound,
                          table)


def _fields(row: TradeOff) -> tuple:
    return (row.gain, row.std, row.keras_scale, row.forward_ratio, row.backward_ratio, row.phase)
