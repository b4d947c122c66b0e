r"""At which depth do values leave a floating-point format?  :func:`overflow_depth`, :func:`underflow_depth`.

The event
---------
Forward, layer :math:`l` (1-based, :math:`z_l = W_l a_{l-1} + b_l`, :math:`a_l = \phi(z_l)`):

* ``quantity="preactivation"``: some :math:`|z_{l,i}|` exceeds the largest finite number
  :math:`M` of the dtype (overflow) / every :math:`|z_{l,i}|` is below the smallest normal
  :math:`m` (underflow: the whole layer flushes to subnormals or zero);
* ``quantity="activation"``: some :math:`\phi(z_{l,i})` is not finite / every
  :math:`|\phi(z_{l,i})| < m`.

With ``criterion="rms"`` underflow means instead that the root mean square of the layer's values
is below :math:`m`: :math:`\sigma_l^2 G < m^2` with :math:`G \sim \mathrm{Gamma}(n/2, n/2)`
(:math:`\chi^2_n/n`) for Gaussian pre-activations.

Backward (``quantity="gradient"``), in a network of depth :math:`L` = ``max_depth``: the
gradient :math:`g_l = \partial\mathcal L/\partial a_{l-1} = W_l^\top\delta_l` after
back-propagating through :math:`k = L - l + 1` layers from :math:`\delta_L` (i.i.d. N(0, 1)); the
reported depth is :math:`k` (so :func:`varprop.simulate`'s ``gradient_overflow_layer`` is
:math:`L - k + 1`).

The reported depth is the ``quantile`` (default: the median) of the distribution of the first
layer at which the event happens, over random networks and inputs; ``None`` if the event has
probability below ``quantile`` within ``max_depth`` layers.  :func:`overflow_distribution` and
:func:`underflow_distribution` return the whole distribution (:class:`DepthDistribution`).

The prediction: mean-field drift plus a log-scale random walk plus the extreme-value tail
-----------------------------------------------------------------------------------------
Given layer :math:`l-1`, the entries of :math:`z_l` are i.i.d. with variance
:math:`\sigma_l^2 = s_l^2 \lVert a_{l-1}\rVert^2 + \sigma_b^2` (:math:`s_l^2 = \operatorname{Var}
W_l`, zero-mean weights), Gaussian for Gaussian weights.  For a **linear Gaussian** net
:math:`\lVert z_l\rVert^2 = \sigma_l^2 \chi^2_{n_l}` exactly, so (without bias)

.. math::

    \ln \sigma_{l+1}^2 = \ln \sigma_l^2 + \ln(s_{l+1}^2 n_l) + \ln(\chi^2_{n_l}/n_l), \qquad
    E\ln\frac{\chi^2_n}{n} = \psi(n/2) + \ln\frac{2}{n}, \quad
    \operatorname{Var}\ln\frac{\chi^2_n}{n} = \psi_1(n/2),

a random walk whose drift is the mean-field growth :math:`\ln(s^2 n)` minus about :math:`1/n`
(:math:`\psi, \psi_1` are the digamma and trigamma functions).  Given :math:`\sigma_l`, the
largest of the :math:`n_l` entries exceeds :math:`M` with probability

.. math:: p_l(\sigma_l) = 1 - \bigl(1 - 2\bar\Phi(M/\sigma_l)\bigr)^{n_l}

(its typical value is :math:`\sigma_l\sqrt{2\ln n_l}`), and the whole layer lies below
:math:`m` with probability :math:`(1 - 2\bar\Phi(m/\sigma_l))^{n_l}`.  The first-passage
distribution :math:`P(F = l) = E[p_l \prod_{j<l}(1 - p_j)]` is computed by propagating the density
of the walk on a grid (exact log-gamma increments, :func:`scipy.special.gammainc` bin masses,
FFT convolution), multiplying by the survival probability at every layer.

**General activations and schemes.**  The drift is the mean-field recursion
:math:`q_l = s_l^2 n_{l-1} E[\phi(z)^2]_{N(0, q_{l-1})} + \sigma_b^2` (the same recursion as
:func:`varprop.propagate`, evaluated here in log space so that scales beyond the float64 range,
needed for ``dtype="float64"``, stay representable), and the fluctuation of
:math:`\lVert a_l\rVert^2 / (n_l E\phi^2)` is a mean-one Gamma variable with the matched variance
:math:`V_l / n_l`,

.. math::

    V_l = \frac{\operatorname{Var}\phi(z)^2 - c\,\operatorname{Cov}(\phi(z)^2, z^2)^2/\operatorname{Var} z^2}
               {(E\phi(z)^2)^2}, \qquad z \sim N(0, q_l),

(:math:`V = 2` for linear: the :math:`\chi^2_n` above exactly; :math:`V = 5` for ReLU, whose exact law is
:math:`\chi^2_K`, :math:`K \sim \mathrm{Bin}(n, 1/2)`), with :math:`c = 1` for square orthogonal
weights (which preserve :math:`\lVert z\rVert`) and 0 otherwise.  The input is taken Gaussian.
Backward, :math:`E g_l^2` follows the mean-field backward recursion and
:math:`\lVert\delta_l\rVert^2` fluctuates with :math:`V'_l = 3E\phi'^4/(E\phi'^2)^2 - 1 - 2c`
(gradient independence).  The bias enters as :math:`\sigma_l^2 = (q_l - \sigma_b^2)e^{S_l} +
\sigma_b^2` with the walk :math:`S_l` acting on the weight part only.

Where it is exact, where approximate
------------------------------------
*Exact* in distribution (up to the grid discretisation) for linear nets with Gaussian weights
and inputs and no bias, except for one conditioning: a layer that did not overflow has a slightly
smaller norm than an unconditioned one, which the walk ignores (at the typical first-overflow
layer this shifts :math:`\ln\lVert z\rVert^2` by a few percent of one layer's drift).  For ReLU and
leaky ReLU the drift is exact and the Gamma law of the increments is matched in mean and
variance.  For other activations the mean-field drift is applied to the fluctuating scale
(:math:`E\phi^2(q e^S) \approx E\phi^2(q) e^S`), exact only for positively homogeneous
:math:`\phi`; non-Gaussian i.i.d. weights enter through the CLT (their excess kurtosis, of order
:math:`1/n` in the pre-activations, is ignored).  Pre-activations are taken zero-mean
(the biases' random offsets are folded into the variance); weights must be zero-mean.

Comparing with :func:`varprop.simulate`
--------------------------------------
``simulate(...).nonfinite_layer_per_replicate`` (its Gaussian engine computes :math:`z_l` exactly in
law, in float64, then rounds to ``dtype``) is the empirical counterpart of
:func:`overflow_distribution` for ``quantity="preactivation"`` (float32; for float64 its
statistics, sums of :math:`z^2`, overflow first, at values near :math:`10^{154}`), and
``underflow_layer_per_replicate`` of :func:`underflow_distribution` with ``criterion="all"``.

Where a NaN first appears
-------------------------
A NaN needs an infinity first.  The mean of a layer is NaN at the first overflowing layer
:math:`F` if that layer already holds :math:`+\infty` and :math:`-\infty`, else one layer later,
when the infinities meet mixed-sign weights; the norm of a vector with infinities is
:math:`+\infty`, so a norm is NaN only once the vector itself holds NaN (layer :math:`F + 1` if
layer :math:`F` holds two or more infinities, else :math:`F + 2`).  The model draws fresh weights
per layer; a loop that reuses one matrix (:math:`W^L x`) is a different process.  See
``docs/beyond.md`` for measured cases against the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from varprop._util.validation import (
    check_choice,
    check_float_range,
    check_nonnegative_real,
    check_positive_int,
    check_positive_real,
    check_probability,
    check_widths,
    fail,
)
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.network.layers.dense import Dense
from varprop.network.model import Network
from varprop.theory.firstpassage import (
    _LIMITS,
    _LOG_CLAMP,
    _expectations,
    _first_passage,
    _noise_shape,
    _rms_hazard,
    _unit_hazard,
    _unit_sets,
)

__all__ = [
    "overflow_depth",
    "underflow_depth",
    "overflow_distribution",
    "underflow_distribution",
    "DepthDistribution",
    "DTYPES",
    "dtype_limits",
]

_MAX_DEPTH = 10**6  # max_depth: the per-layer arrays are built in memory

Dtype = Literal["float16", "bfloat16", "float32", "float64"]
Quantity = Literal["preactivation", "activation", "gradient"]
DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
QUANTITIES: tuple[str, ...] = ("preactivation", "activation", "gradient")
CRITERIA: tuple[str, ...] = ("rms", "all")
Criterion = Literal["rms", "all"]


def dtype_limits(dtype: Dtype) -> tuple[float, float]:
    """``(largest finite, smallest normal)`` of ``dtype``: float16 ``(65504, 6.10e-05)``,
    bfloat16 ``(3.39e38, 1.18e-38)``, float32 ``(3.40e38, 1.18e-38)``, float64
    ``(1.80e308, 2.23e-308)``."""
    return _LIMITS[check_choice("dtype", dtype, DTYPES)]


# ----------------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DepthDistribution:
    r"""Predicted distribution of the first layer at which values leave a dtype's range.

    Attributes
    ----------
    event : {"overflow", "underflow"}
    quantity : {"preactivation", "activation", "gradient"}
    dtype : str
    threshold : float
        :math:`M` (largest finite) for overflow, :math:`m` (smallest normal) for underflow.
    widths : tuple of int
        :math:`(n_0, \dots, n_L)` of the network considered (:math:`L` = ``max_depth``).
    pmf : ndarray
        ``pmf[k - 1]`` = :math:`P(\text{first event at depth } k)`, :math:`k = 1..L` (forward:
        layer :math:`k`; gradient: :math:`k` layers back from the output).
    log_scale : ndarray
        Natural log of the mean-field second moment of the monitored values at each depth
        (:math:`E z_l^2` forward, :math:`E g^2` backward), kept as a log because it may exceed the
        float64 range.
    """

    event: str
    quantity: str
    dtype: str
    threshold: float
    widths: tuple[int, ...]
    pmf: np.ndarray = field(repr=False)
    log_scale: np.ndarray = field(repr=False)

    @property
    def depths(self) -> np.ndarray:
        """:math:`1, \\dots, L`."""
        return np.arange(1, len(self.pmf) + 1)

    @property
    def cdf(self) -> np.ndarray:
        """:math:`P(\\text{first event at depth} \\le k)`."""
        return np.minimum(np.cumsum(self.pmf), 1.0)

    @property
    def never(self) -> float:
        """Probability that no event happens within ``max_depth`` layers."""
        return float(max(0.0, 1.0 - float(np.sum(self.pmf))))

    def quantile(self, p: float) -> int | None:
        """Smallest depth :math:`k` with :math:`P(F \\le k) \\ge p`; ``None`` if never reached."""
        p = check_probability("quantile", p)
        hit = np.flatnonzero(self.cdf >= p - 1e-12)
        return int(hit[0]) + 1 if hit.size else None

    @property
    def median(self) -> int | None:
        """:meth:`quantile` at 1/2."""
        return self.quantile(0.5)

    def interval(self, mass: float = 0.95) -> tuple[int | None, int | None]:
        """Central interval holding ``mass`` of the distribution (ends may be ``None``)."""
        mass = check_probability("mass", mass)
        return self.quantile((1 - mass) / 2), self.quantile((1 + mass) / 2)

    def probability(self, depth: int) -> float:
        """:math:`P(F = k)` for ``depth`` :math:`= k`."""
        k = check_positive_int("depth", depth)
        return float(self.pmf[k - 1]) if k <= len(self.pmf) else 0.0

    def mean(self) -> float:
        """:math:`E[F \\mid F \\le L]` (``nan`` if the event has probability 0)."""
        total = float(np.sum(self.pmf))
        return float(np.dot(self.depths, self.pmf) / total) if total > 0 else math.nan


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def _mean_field_logs(act: Activation, scheme: InitScheme, widths: tuple[int, ...],
                     input_variance: float, bias_variance: float
                     ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``(ln E z_l^2, ln of the weight part of E z_l^2, ln E phi(z_l)^2)`` per layer: the layers of
    :meth:`varprop.Network.mlp` walked with the dense layer's log-space rule
    (:meth:`~varprop.layers.Dense.mean_field_log`) and :math:`\ln E\phi^2` of the nonlinearity
    from the log-space expectations."""
    L = len(widths) - 1
    lq, lw, la = np.zeros(L), np.zeros(L), []
    prev = math.log(input_variance)
    shape = (dict(fan_in=widths[0], fan_out=widths[1], depth=L) if len(set(widths[1:])) == 1
             else dict(widths=widths))  # a constant width: one run, no per-layer objects
    net = Network.mlp(act, scheme, **shape, bias_variance=bias_variance,
                      input_variance=input_variance)
    l = 0
    for block, count in net.layers.runs:
        for _ in range(count):
            for layer in block:
                if isinstance(layer, Dense):
                    lw[l], lq[l] = layer.mean_field_log(prev, widths[l], _LOG_CLAMP)
                else:
                    la.append(_expectations(act, float(lq[l]))[0])
                    prev = la[-1]
                    l += 1
    return lq, lw, la


def _distribution(event: str, activation: Activation | str, init: InitScheme | str, *,
                  fan_in: int | None, fan_out: int | None, widths: object, input_variance: float,
                  bias_variance: float, dtype: str, quantity: str,
                  max_depth: int, criterion: str = "all") -> DepthDistribution:
    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    dtype = check_choice("dtype", dtype, DTYPES)
    quantity = check_choice("quantity", quantity, QUANTITIES)
    max_depth = check_positive_int("max_depth", max_depth)
    if max_depth > _MAX_DEPTH:
        raise fail("max_depth", max_depth, f"a positive integer <= {_MAX_DEPTH} (the per-layer "
                   "arrays are built in memory)")
    criterion = check_choice("criterion", criterion, CRITERIA)
    ws = check_widths(fan_in, fan_out, widths, None if widths is not None else max_depth)
    in_var = check_positive_real("input_variance",
                                 check_float_range("input_variance", input_variance))
    b_var = check_nonnegative_real("bias_variance", check_float_range("bias_variance", bias_variance))
    L = len(ws) - 1
    for l in range(L):
        mu, _ = scheme.moments(ws[l], ws[l + 1])
        if mu != 0.0:
            raise fail("init", scheme, "a zero-mean scheme: with mean weights the units of a layer "
                       f"move together and the extreme-value model does not apply (mean {mu!r} at "
                       f"layer {l + 1})")
    # square orthogonal layers preserve the norm (the only weights that are not i.i.d.)
    orth = [1.0 if not scheme.is_iid and ws[l] == ws[l + 1] else 0.0 for l in range(L)]
    lq, lw, la = _mean_field_logs(act, scheme, ws, in_var, b_var)
    log_bias = math.log(b_var) if b_var > 0 else -math.inf
    big, tiny = _LIMITS[dtype]
    if quantity != "gradient":
        lo, hi = _unit_sets(act, quantity, event, dtype)
        # noise of sigma_l^2 comes from ||a_{l-1}||^2: the input (Gaussian) for l = 1
        shapes = [ws[0] / 2.0] + [_noise_shape(act, float(lq[l]), ws[l + 1], orth[l], False)
                                  for l in range(L - 1)]
        sizes = list(ws[1:])
        if event == "underflow" and criterion == "rms":
            # mean square of the monitored values: sigma^2 G (preactivation, G ~ Gamma(n/2)) or
            # E phi^2(sigma^2) G' with E phi^2 scaled like at the mean-field q (activation)
            ratio = (np.zeros(L) if quantity == "preactivation"
                     else np.array([la[j] - lq[j] for j in range(L)]))
            ks = ([n / 2.0 for n in sizes] if quantity == "preactivation"
                  else [_noise_shape(act, float(lq[j]), sizes[j], 0.0, False) for j in range(L)])
            hazard = _rms_hazard(ratio, ks, tiny)
        else:
            hazard = _unit_hazard(lo, hi, sizes, event)
        pmf = _first_passage(lw, log_bias, shapes, hazard, event == "overflow")
        log_scale = lq
    else:
        lo, hi = (-big, big) if event == "overflow" else (-tiny, tiny)
        # E g_l^2 = s_l^2 n_l E delta_l^2, E delta_{l-1}^2 = E phi'(z_{l-1})^2 E g_l^2
        lg = np.zeros(L)
        shapes = []
        ld = 0.0  # ln E delta_L^2
        for idx, l in enumerate(range(L, 0, -1)):
            _, v = scheme.moments(ws[l - 1], ws[l])
            lg[idx] = min(max(math.log(v * ws[l]) + ld, -_LOG_CLAMP), _LOG_CLAMP)
            if idx == 0:
                shapes.append(ws[L] / 2.0)
            else:
                shapes.append(_noise_shape(act, float(lq[l - 1]), ws[l], orth[l], True))
            if l > 1:
                ld = _expectations(act, float(lq[l - 2]))[3] + lg[idx]
        sizes = [ws[l - 1] for l in range(L, 0, -1)]
        if event == "underflow" and criterion == "rms":
            hazard = _rms_hazard(np.zeros(L), [n / 2.0 for n in sizes], tiny)
        else:
            hazard = _unit_hazard(lo, hi, sizes, event)
        pmf = _first_passage(lg, -math.inf, shapes, hazard, event == "overflow")
        log_scale = lg
    return DepthDistribution(event, quantity, dtype, big if event == "overflow" else tiny, ws,
                             pmf, np.asarray(log_scale, dtype=float))


_DOC_PARAMS = r"""
    Parameters
    ----------
    activation : str or Activation
        Name, :class:`~varprop.Activation` or custom expression in ``x``.
    init : str or InitScheme
        A zero-mean scheme (``"standard_normal"``, ``"he_normal"``, ...).
    fan_in, fan_out, widths
        :math:`n_0 =` ``fan_in``, :math:`n_1 = \dots = n_L =` ``fan_out`` (default ``fan_in``),
        :math:`L` = ``max_depth``; or ``widths=[n_0, ..., n_L]`` (then :math:`L = ` len - 1).
    input_variance : float
        :math:`E x_j^2` of the (Gaussian, zero-mean) input entries.
    bias_variance : float
        :math:`\sigma_b^2`.
    dtype : {"float16", "bfloat16", "float32", "float64"}
        The format whose range is checked (:func:`dtype_limits`).
    quantity : {"preactivation", "activation", "gradient"}
        What is monitored (see the module docstring); ``gradient`` counts layers back from the
        output of a network of depth :math:`L`.
    max_depth : int
        Number of layers considered.
    criterion : {"all", "rms"}, underflow only
        ``"all"`` (default, as :func:`varprop.simulate` flags it): every value of the layer is
        below the smallest normal :math:`m`; ``"rms"``: their root mean square is (the typical
        value is subnormal: precision is being lost), which happens earlier.
"""


def overflow_distribution(activation: Activation | str, init: InitScheme | str, *,
                          fan_in: int | None = None, fan_out: int | None = None,
                          widths: list[int] | tuple[int, ...] | None = None,
                          input_variance: float = 1.0, bias_variance: float = 0.0,
                          dtype: Dtype = "float32", quantity: Quantity = "preactivation",
                          max_depth: int = 1000) -> DepthDistribution:
    return _distribution("overflow", activation, init, fan_in=fan_in, fan_out=fan_out,
                         widths=widths, input_variance=input_variance,
                         bias_variance=bias_variance, dtype=dtype, quantity=quantity,
                         max_depth=max_depth)


def underflow_distribution(activation: Activation | str, init: InitScheme | str, *,
                           fan_in: int | None = None, fan_out: int | None = None,
                           widths: list[int] | tuple[int, ...] | None = None,
                           input_variance: float = 1.0, bias_variance: float = 0.0,
                           dtype: Dtype = "float32", quantity: Quantity = "preactivation",
                           max_depth: int = 1000, criterion: Criterion = "all") -> DepthDistribution:
    return _distribution("underflow", activation, init, fan_in=fan_in, fan_out=fan_out,
                         widths=widths, input_variance=input_variance,
                         bias_variance=bias_variance, dtype=dtype, quantity=quantity,
                         max_depth=max_depth, criterion=criterion)


overflow_distribution.__doc__ = r"""The predicted distribution of the first layer at which values overflow ``dtype``.

    See :mod:`varprop.theory.overflow` for the model (mean-field drift, log-gamma random walk,
    extreme-value tail of the widest unit) and where it is exact.
""" + _DOC_PARAMS + r"""
    Returns
    -------
    DepthDistribution
    """

underflow_distribution.__doc__ = r"""The predicted distribution of the first layer at which a whole
    layer falls below the smallest normal number of ``dtype`` (see :func:`overflow_distribution`).
""" + _DOC_PARAMS + r"""
    Returns
    -------
    DepthDistribution
    """


def overflow_depth(activation: Activation | str, init: InitScheme | str, *,
                   fan_in: int | None = None, fan_out: int | None = None,
                   widths: list[int] | tuple[int, ...] | None = None,
                   input_variance: float = 1.0, bias_variance: float = 0.0,
                   dtype: Dtype = "float32", quantity: Quantity = "preactivation",
                   max_depth: int = 1000, quantile: float = 0.5) -> int | None:
    return overflow_distribution(activation, init, fan_in=fan_in, fan_out=fan_out, widths=widths,
                                 input_variance=input_variance, bias_variance=bias_variance,
                                 dtype=dtype, quantity=quantity,
                                 max_depth=max_depth).quantile(quantile)


def underflow_depth(activation: Activation | str, init: InitScheme | str, *,
                    fan_in: int | None = None, fan_out: int | None = None,
                    widths: list[int] | tuple[int, ...] | None = None,
                    input_variance: float = 1.0, bias_variance: float = 0.0,
                    dtype: Dtype = "float32", quantity: Quantity = "preactivation",
                    max_depth: int = 1000, quantile: float = 0.5,
                    criterion: Criterion = "all") -> int | None:
    return underflow_distribution(activation, init, fan_in=fan_in, fan_out=fan_out, widths=widths,
                                  input_variance=input_variance, bias_variance=bias_variance,
                                  dtype=dtype, quantity=quantity, max_depth=max_depth,
                                  criterion=criterion).quantile(quantile)


overflow_depth.__doc__ = r"""The first layer (1-based) at which values overflow ``dtype``.

    Returns the ``quantile`` (default the median) of the predicted distribution of the first
    layer :math:`F` with a value beyond the largest finite number :math:`M` of ``dtype``
    (:func:`overflow_distribution`), or ``None`` if :math:`P(F \le` ``max_depth``:math:`)` is
    below ``quantile``.

    A linear net of width :math:`n` with N(0, 1) weights multiplies the scale of its
    pre-activations by about :math:`\sqrt n` per layer, and the largest of :math:`n` entries is
    about :math:`\sqrt{2\ln n}` times that scale, so :math:`F \approx
    (\ln M - \tfrac12\ln(2\ln n)) / \ln\sqrt n` layers; the full distribution comes from the
    random walk of :math:`\ln\lVert a_l\rVert^2` (increments :math:`\ln(s^2\chi^2_n)`) and the
    extreme-value tail of the widest unit (:mod:`varprop.theory.overflow`).

    For width 100 the predicted first non-finite layer is 38 (18 %) or 39 (82 %), median 39; for
    width 256 it is 32 (> 99.9 %).  In float32 the NaN of a mean or a matrix product appears when
    partial sums meet :math:`+\infty` and :math:`-\infty`, at the first overflowing layer or one
    earlier (a sum of :math:`n` entries is :math:`\sqrt n` times larger than the entries), so a
    loop that checks for NaN usually reports :math:`F - 1` (see ``docs/beyond.md``).
""" + _DOC_PARAMS + r"""    quantile : float
        Which quantile of the first-overflow layer's distribution to report (0 < quantile < 1).

    Returns
    -------
    int or None

    Examples
    --------
    >>> overflow_depth("linear", "standard_normal", fan_in=100)
    39
    >>> overflow_depth("relu", "he_normal", fan_in=100) is None
    True
    """

underflow_depth.__doc__ = r"""The first layer (1-based) at which a whole layer falls below the
    smallest normal number of ``dtype`` (every :math:`|z_{l,i}| < m`; for ``gradient``, every
    entry of :math:`\partial\mathcal L/\partial a_{l-1}`); ``None`` if not within ``max_depth``
    at probability ``quantile``.  Same model as :func:`overflow_depth` (the walk drifts down
    instead of up).
""" + _DOC_PARAMS + r"""    quantile : float
        Which quantile of the first-underflow layer's distribution to report.

    Returns
    -------
    int or None

    Examples
    --------
    >>> underflow_depth("linear", "lecun_normal", fan_in=100) is None
    True
    """
