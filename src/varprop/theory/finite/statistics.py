r"""``predict_distribution``: the law across random networks of one network's statistic.

For one input :math:`x \sim N(0, v I_{n_0})` through an MLP at initialization, the per-network
statistics of layer :math:`l` -- the mean square :math:`\tfrac1{n_l}\sum_i y_i^2`, the
across-unit standard deviation (``ddof`` 0 or 1) and the log mean square, of
:math:`y = z_l` (pre-activations), :math:`a_l` (activations) or :math:`\partial\mathcal
L/\partial a_{l-1}` (gradients, from :math:`\delta_L \sim N(0, I)`) -- vary from network to
network.  Routes, the first that applies:

``"exact"``
    Gaussian weights, no bias, degree-1 homogeneous activation with :math:`\alpha^2 = \beta^2`
    (linear, ``abs``) or one zero slope (ReLU): the exact law, a sum of independent log
    chi-squares (:mod:`varprop.theory.finite.exact`; gradients: any Gaussian bias).  For very
    many distinct layer widths the numerical inversion is replaced by ``"lognormal"``: the normal
    law of :math:`\log X` with its exact mean and variance (error: the skewness of
    :math:`\log X`, of order :math:`\sum_l n_l^{-2} / (\sum_l n_l^{-1})^{3/2}`).
``"exact moments"``
    Any other linear/ReLU-class case with i.i.d. zero-mean symmetric weights (uniform weights,
    biases, leaky ReLU): exact mean and variance of the mean square (or of the pre-activations'
    across-unit variance) by the fourth-moment recursion.  Quantiles: without bias from the
    product of :math:`l + 1` i.i.d. scaled chi-squares with that mean and variance (the shape of
    the exact Gaussian-weight law; measured at width 16, depth 10, uniform weights: the
    predicted 10/50/90% quantiles fall at 13/52/90% of simulated networks, leaky ReLU 11/51/90%),
    with a bias from the log-normal law (bias floors :math:`\hat q \ge \sigma_b^2`; ReLU,
    :math:`\sigma_b^2 = 0.3`: 2/45/91% -- a rough approximation).  The activations'
    across-unit std of ReLU networks with Gaussian weights and no bias keeps the exact law of
    :math:`\hat q_l` and replaces the across-unit variance of :math:`n_l` i.i.d.
    :math:`\phi(\xi)` by the scaled chi-square with its exact mean and variance.
``"1/n"``
    Everything else (tanh, GELU, ...): mean and variance of the statistic from the law of
    :math:`\hat q_l` to :math:`O(1/n)` (:mod:`varprop.theory.finite.expansion`,
    :mod:`varprop.theory.finite.conditional`), quantiles from the matched log-normal.

For ``unit_std`` the fitted law is that of the across-unit *variance* :math:`Y`, and
:math:`\sqrt Y` is then log-normal too; its mean and variance are the fitted law's (they agree
with the delta method for :math:`\sqrt Y` to :math:`O(1/n)`).
"""

from __future__ import annotations

import math
from typing import Literal

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
from varprop.network.model import Network, refuse_with_network
from varprop.theory.finite.conditional import delta_moments
from varprop.theory.finite.distribution import Distribution
from varprop.theory.finite.exact import (
    ExactLayers,
    exact_moments,
    forward_law,
    gradient_law,
    slopes,
)
from varprop.theory.finite.expansion import finite_width_moments
from varprop.theory.finite.loglaw import (
    LogChiSquareSum,
    LogNormal,
    gamma_product,
    lognormal_matching,
)

__all__ = ["predict_distribution", "STATISTICS", "DISTRIBUTION_QUANTITIES"]

STATISTICS = ("mean_square", "unit_std", "log_mean_square")
DISTRIBUTION_QUANTITIES = ("preactivation", "activation", "gradient")
#: Above this many chi-square components (summed over distinct terms) the exact law is replaced by
#: its log-normal limit.
MAX_COMPONENTS = 50_000
#: A ReLU network's atom at X = 0 below this probability is ignored by ``log_mean_square``.
LOG_ATOM_TOLERANCE = 1e-15

_ORDER = {
    "exact": "nothing: the exact law (quantiles by numerical inversion, to about 1e-10 relative)",
    "lognormal": "the skewness of log X: log X taken normal with its exact mean and variance "
                 "(relative quantile error of order sum_l n_l^-2 / (sum_l n_l^-1)^(3/2))",
    "exact moments": "nothing in the mean and variance (exact); the quantiles come from the "
                     "log-normal law matched to them (an approximation, error O(1/n) in the "
                     "quantiles' relative position)",
    "gamma product": "nothing in the mean and variance of the mean square (or across-unit "
                     "variance): exact; its law is taken as the product of layer + 1 i.i.d. scaled "
                     "chi-squares with that mean and variance (the shape of the Gaussian-weight "
                     "law; an approximation for the quantiles and the std's moments)",
    "1/n": "O(1/n^2) in the mean and variance (delta method); the quantiles come from the "
           "log-normal law matched to them",
}

_SATTERTHWAITE = ("the shape of the across-unit variance of phi(xi) (n i.i.d. units): the law of "
                  "qhat_l is exact, that variance is the scaled chi-square with its exact mean and "
                  "variance (Satterthwaite), so the mean and variance of the across-unit variance "
                  "are exact and its quantiles and the std's moments approximate")


def predict_distribution(
    activation: Network | Activation | str,
    init: InitScheme | str | None = None,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: list[int] | tuple[int, ...] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    statistic: Literal["mean_square", "unit_std", "log_mean_square"] = "mean_square",
    quantity: Literal["preactivation", "activation", "gradient"] = "preactivation",
    layer: int | None = None,
    ddof: int = 0,
) -> Distribution:
    r"""The law across random networks of one network's statistic at finite width.

    Parameters
    ----------
    activation, init, fan_in, fan_out, widths, depth, input_variance, bias_variance
        The MLP, as for :func:`varprop.predict_variance` (or an MLP-shaped
        :class:`~varprop.Network` as the first argument).  The input is
        :math:`x \sim N(0,\ \text{input\_variance}\cdot I)`, one input (batch of 1).
    statistic : {"mean_square", "unit_std", "log_mean_square"}
        :math:`X = \tfrac1n\sum_i y_i^2`; the across-unit standard deviation
        :math:`\sqrt{\tfrac1{n-d}\sum_i (y_i - \bar y)^2}` (``ddof`` :math:`d`); :math:`\log` of
        the mean square.
    quantity : {"preactivation", "activation", "gradient"}
        :math:`y = z_l`, :math:`a_l`, or :math:`\partial\mathcal L/\partial a_{l-1}` with
        :math:`\delta_L = \partial\mathcal L/\partial z_L \sim N(0, I)` independent of the network
        (varprop's seed; :math:`X = |\nabla|^2/n_{l-1}`).
    layer : int
        :math:`1..L`; default :math:`L`, for ``"gradient"`` 1 (the input gradient).
    ddof : {0, 1}
        For ``unit_std``.

    Returns
    -------
    Distribution
        ``.mean``, ``.variance``, ``.cv2``, ``.quantile(p)``, ``.interval(level)``, ``.cdf(x)``,
        ``.method`` (``"exact"``, ``"exact moments"``, ``"1/n"`` or ``"lognormal"``), ``.order``
        (what is neglected) and ``.assumptions``; see :mod:`varprop.theory.finite.statistics`.

    Examples
    --------
    >>> d = predict_distribution("relu", "he_normal", fan_in=16, depth=10)
    >>> d.method, round(d.mean, 12)
    ('exact', 2.0)
    >>> round(d.quantile(0.5), 4) < 2.0
    True
    """
    statistic = check_choice("statistic", statistic, STATISTICS)
    if quantity == "jacobian_entry":
        raise fail("quantity", quantity, f"one of {list(DISTRIBUTION_QUANTITIES)} (the law of one "
                   "Jacobian entry is not implemented yet)")
    quantity = check_choice("quantity", quantity, DISTRIBUTION_QUANTITIES)
    if isinstance(ddof, bool) or ddof not in (0, 1):
        raise fail("ddof", ddof, "0 or 1")
    ddof = int(ddof)
    act, scheme, ws, v_in, b2 = _model(activation, init, fan_in, fan_out, widths, depth,
                                       input_variance, bias_variance)
    L = len(ws) - 1
    if layer is None:
        layer = 1 if quantity == "gradient" else L
    layer = check_positive_int("layer", layer)
    if layer > L:
        raise fail("layer", layer, f"a layer 1..{L} of this depth-{L} network")
    if not (scheme.is_iid and scheme.is_zero_mean):
        raise fail("init", scheme, "i.i.d. zero-mean weights (normal, uniform, truncated normal "
                   "schemes): the finite-width laws do not cover orthogonal or non-zero-mean weights")
    if quantity != "gradient" and v_in == 0.0 and b2 == 0.0:
        raise fail("input_variance", input_variance, "> 0 (with no bias every forward statistic is "
                   "identically 0)")
    n = ws[layer - 1] if quantity == "gradient" else ws[layer]
    if statistic == "unit_std" and n < 2:
        raise fail("statistic", statistic, f"'mean_square' or 'log_mean_square' for a layer of "
                   f"width {n} (one unit has no across-unit spread)")
    common = (statistic, quantity, layer)
    return _route(act, scheme, ws, v_in, b2, common, ddof)


def _route(act: Activation, scheme: InitScheme, ws: tuple[int, ...], v_in: float, b2: float,
           common: tuple[str, str, int], ddof: int) -> Distribution:
    statistic, quantity, layer = common
    L = len(ws) - 1
    sigma2 = tuple(scheme.moments(ws[l - 1], ws[l])[1] for l in range(1, L + 1))
    ab = slopes(act)
    homogeneous = ab is not None and (scheme.is_symmetric or ab[0] ** 2 == ab[1] ** 2)
    kind = "variance" if statistic == "unit_std" else "mean_square"
    assumptions = _assumptions(scheme, quantity)
    if homogeneous and scheme.is_gaussian:
        lay = ExactLayers(ws, sigma2, ab[0], ab[1], v_in, act)
        law = gradient_law(lay, layer) if quantity == "gradient" else (
            forward_law(lay, quantity, kind, layer, ddof) if b2 == 0.0 else None)
        if law is not None:
            fitted = quantity == "activation" and kind == "variance"
            return _from_exact(law, common, assumptions, "exact moments" if fitted else "exact")
    if quantity == "gradient":
        raise fail("quantity", quantity, "'preactivation' or 'activation' here: the law of the "
                   "gradient norm is implemented for linear and ReLU-class activations with "
                   "Gaussian weights (exact); other activations or weight laws are not covered yet")
    if homogeneous and (quantity == "preactivation" or kind == "mean_square"):
        kurt = tuple(scheme.law(ws[l - 1], ws[l]).kurtosis() for l in range(1, L + 1))
        mom = exact_moments(ws, sigma2, kurt, ab[0], ab[1], v_in, b2, quantity, kind, layer, ddof)
        return _from_moments(mom.mean, mom.variance, "exact moments", common, assumptions,
                             factors=layer + 1 if b2 == 0.0 else None)
    fw = finite_width_moments(act, scheme, widths=ws, input_variance=v_in, bias_variance=b2)
    i = layer - 1
    mean, var = delta_moments(act if quantity == "activation" else None, kind, ws[layer], ddof,
                              float(fw.q_mean[i]), float(fw.q_var[i]), float(fw.q_kurtosis[i]))
    return _from_moments(mean, var, "1/n", common, assumptions)


def _from_exact(law: LogChiSquareSum, common: tuple[str, str, int],
                assumptions: tuple[str, ...], method: str) -> Distribution:
    statistic = common[0]
    components = sum(len(term.dofs) for term, _ in law.terms)
    order = _SATTERTHWAITE if method == "exact moments" else _ORDER["exact"]
    if components > MAX_COMPONENTS:
        method = "lognormal"
        order = _ORDER[method]
    if statistic == "log_mean_square":
        p0 = law.zero_probability
        if p0 > LOG_ATOM_TOLERANCE:
            raise fail("statistic", statistic, f"'mean_square' here: the mean square is exactly 0 "
                       f"(every unit of some layer off) with probability {p0:.3g}, so its log is "
                       f"-inf with that probability")
        mean, var = law.log_mean, law.log_variance
        used = LogNormal(mean, math.sqrt(var)) if method == "lognormal" else law
        return Distribution(*common, method, order, assumptions, mean, var, used, None)
    s = 1.0 if statistic == "mean_square" else 0.5
    lm1, lm2 = law.log_moment(s), law.log_moment(2 * s)
    mean = math.exp(lm1)
    var = mean * mean * math.expm1(lm2 - 2 * lm1)
    used = law
    if method == "lognormal":
        used = LogNormal(law.log_mean, math.sqrt(law.log_variance))
    return Distribution(*common, method, order, assumptions, mean, var, used, s)


def _from_moments(mean: float, var: float, method: str, common: tuple[str, str, int],
                  assumptions: tuple[str, ...], factors: int | None = None) -> Distribution:
    """The law of the mean square or the across-unit variance with these moments: log-normal, or
    with ``factors`` the product of that many i.i.d. scaled chi-squares (module docstring)."""
    statistic = common[0]
    law = lognormal_matching(mean, var) if factors is None else gamma_product(mean, var, factors)
    order = _ORDER[method] if factors is None else _ORDER["gamma product"]
    if statistic == "mean_square":
        return Distribution(*common, method, order, assumptions, mean, var, law, 1.0)
    if statistic == "log_mean_square":
        return Distribution(*common, method, order, assumptions, law.log_mean, law.log_variance,
                            law, None)
    lm1 = law.log_moment(0.5)
    m = math.exp(lm1)
    std_var = m * m * math.expm1(law.log_moment(1.0) - 2 * lm1)
    return Distribution(*common, method, order, assumptions, m, std_var, law, 0.5)


def _assumptions(scheme: InitScheme, quantity: str) -> tuple[str, ...]:
    out = ["one input x ~ N(0, input_variance I) (batch of 1), drawn afresh with each network",
           f"i.i.d. zero-mean weights from {scheme.name}, biases N(0, bias_variance)"]
    if quantity == "gradient":
        out.append("delta_L = dL/dz_L ~ N(0, I) independent of the network; the same weights "
                   "forward and backward")
    return tuple(out)


def _model(activation: object, init: object, fan_in: object, fan_out: object, widths: object,
           depth: object, input_variance: object, bias_variance: object
           ) -> tuple[Activation, InitScheme, tuple[int, ...], float, float]:
    """The validated MLP: activation, scheme, widths, input and bias variances."""
    if isinstance(activation, Network):
        refuse_with_network({"init": (init, None), "fan_in": (fan_in, None),
                             "fan_out": (fan_out, None), "widths": (widths, None),
                             "depth": (depth, 1), "input_variance": (input_variance, 1.0),
                             "bias_variance": (bias_variance, 0.0)})
        mlp = activation.as_mlp()
        if mlp is None:
            raise fail("network", activation, "an MLP-shaped network (alternating Dense and "
                       "Nonlinearity layers, one activation, init and bias variance)")
        return (mlp.activation, mlp.init, mlp.widths(), float(mlp.input_variance),
                float(mlp.bias_variance))
    if init is None:
        raise fail_type("init", init, "an init scheme name such as 'he_normal' or "
                        "varprop.init_scheme(...) (or a Network as the first argument)")
    return (resolve_activation(activation), resolve_scheme(init),
            check_widths(fan_in, fan_out, widths, depth),
            check_nonnegative_real("input_variance", input_variance),
            check_nonnegative_real("bias_variance", bias_variance))
