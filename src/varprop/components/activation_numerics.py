r"""NumPy implementations of the named activations and their derivatives (the Monte Carlo
engine's and the quadrature's :math:`\phi` and :math:`\phi'`).

They are module-level functions, parameters first (the factories of
:mod:`varprop.components.activations` and :mod:`~varprop.components.activations_extra` bind
them with :func:`functools.partial`), so that the generated catalogue
:mod:`varprop.components._compiled_activations` can import the very functions the factories
use: a catalogued activation evaluates the same code without building its SymPy expression.
Each guards the float pitfalls its docstring names (cancellation, spurious overflow).
"""

from __future__ import annotations

import math

import numpy as np

from varprop._util.lazy import lazy_module

#: scipy.special, imported at first use (:mod:`varprop._util.lazy`)
special = lazy_module("scipy.special")

_SQRT_PI = math.sqrt(math.pi)
_GELU_TANH_SLOPE = math.sqrt(2.0 / math.pi)
#: The cubic coefficient of PyTorch's tanh-approximate GELU (as a decimal string: the SymPy
#: expression uses it exactly).
GELU_TANH_CUBIC = "0.044715"
_GELU_TANH_B = float(GELU_TANH_CUBIC)


def _as_float(x: np.ndarray) -> np.dtype:
    return np.result_type(x, np.float32)


def identity(x: np.ndarray) -> np.ndarray:
    """:math:`x`."""
    return x


def ones(x: np.ndarray) -> np.ndarray:
    """:math:`1` (the identity's derivative), shaped like ``x``."""
    return np.ones_like(x)


def relu(x: np.ndarray) -> np.ndarray:
    r""":math:`\max(x, 0)`."""
    return np.maximum(x, 0.0)


def step(x: np.ndarray) -> np.ndarray:
    r""":math:`1\{x > 0\}` in ``x``'s floating dtype (at least float32)."""
    return (x > 0).astype(_as_float(x))


def leaky_relu(negative_slope: float, x: np.ndarray) -> np.ndarray:
    r""":math:`x` for :math:`x > 0`, :math:`\alpha x` below."""
    return np.where(x > 0, x, negative_slope * x)


def leaky_step(negative_slope: float, x: np.ndarray) -> np.ndarray:
    r""":math:`1` for :math:`x > 0`, :math:`\alpha` below."""
    return np.where(x > 0, 1.0, negative_slope).astype(_as_float(x))


def sigmoid(x: np.ndarray) -> np.ndarray:
    r""":math:`\sigma(x) = (1 + \tanh(x/2))/2`."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def sech2(x: np.ndarray) -> np.ndarray:
    r""":math:`\tanh'(x) = \operatorname{sech}^2 x = 4t/(1+t)^2`, :math:`t = e^{-2|x|}`: no
    cancellation (``1 - tanh(x)**2`` is exactly 0 for :math:`|x| > 19` in float64, where the true
    value is still :math:`\approx 4e^{-2|x|} > 10^{-17}`); 0 only below the subnormal range."""
    t = np.exp(-2.0 * np.abs(x))
    return 4.0 * t / ((1.0 + t) * (1.0 + t))


def sigmoid_slope(x: np.ndarray) -> np.ndarray:
    r""":math:`\sigma'(x) = \sigma(x)(1-\sigma(x)) = t/(1+t)^2`, :math:`t = e^{-|x|}`, without the
    cancellation of ``s * (1 - s)`` (exactly 0 for :math:`x > 37` in float64)."""
    t = np.exp(-np.abs(x))
    return t / ((1.0 + t) * (1.0 + t))


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    r""":math:`\sigma(x)`, accurate relatively in the lower tail (``expit``: :math:`e^{x}/(1+e^{x})`
    there, where ``(1 + tanh(x/2))/2`` is 0 below :math:`x \approx -37`)."""
    return special.expit(x)


def erf(x: np.ndarray) -> np.ndarray:
    r""":math:`\operatorname{erf}(x)`."""
    return special.erf(x)


def erf_slope(x: np.ndarray) -> np.ndarray:
    r""":math:`\operatorname{erf}'(x) = 2e^{-x^2}/\sqrt\pi`."""
    return (2.0 / _SQRT_PI) * np.exp(-(x**2))


def exponential_linear(scale: float, alpha: float, c_inverse: float, x: np.ndarray) -> np.ndarray:
    r""":math:`\lambda x` for :math:`x > 0`, :math:`\lambda\alpha(e^{x/\gamma} - 1)` below
    (:math:`\gamma` = ``c_inverse``; ``expm1``, and no overflow warning above 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0) / c_inverse))


def exponential_linear_slope(scale: float, alpha: float, c_inverse: float,
                             x: np.ndarray) -> np.ndarray:
    r"""The derivative of :func:`exponential_linear`: :math:`\lambda` for :math:`x > 0`,
    :math:`\lambda\alpha\gamma^{-1} e^{x/\gamma}` below."""
    with np.errstate(over="ignore", invalid="ignore"):
        return (scale * np.where(x > 0, 1.0, alpha / c_inverse
                                 * np.exp(np.minimum(x, 0.0) / c_inverse))).astype(_as_float(x))


def clipped(low: float, high: float, x: np.ndarray) -> np.ndarray:
    r""":math:`\min(\max(x, l), h)`."""
    return np.clip(x, low, high)


def clipped_slope(low: float, high: float, x: np.ndarray) -> np.ndarray:
    r""":math:`1\{l < x < h\}`."""
    return ((x > low) & (x < high)).astype(_as_float(x))


def gelu(x: np.ndarray) -> np.ndarray:
    r""":math:`x\Phi(x)`."""
    return x * special.ndtr(x)


def gelu_slope(x: np.ndarray) -> np.ndarray:
    r""":math:`\Phi(x) + x\varphi(x)`."""
    return special.ndtr(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    r""":math:`\tfrac x2(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))`."""
    k, b = _GELU_TANH_SLOPE, _GELU_TANH_B
    return 0.5 * x * (1.0 + np.tanh(k * (x + b * x**3)))


def gelu_tanh_slope(x: np.ndarray) -> np.ndarray:
    r"""The derivative of :func:`gelu_tanh` (with :func:`sech2`, no cancellation)."""
    k, b = _GELU_TANH_SLOPE, _GELU_TANH_B
    u = k * (x + b * x**3)
    return 0.5 * (1.0 + np.tanh(u)) + 0.5 * x * sech2(u) * k * (1.0 + 3.0 * b * x * x)


def silu(x: np.ndarray) -> np.ndarray:
    r""":math:`x\sigma(x)`."""
    return x * stable_sigmoid(x)


def silu_slope(x: np.ndarray) -> np.ndarray:
    r""":math:`\sigma(x)(1 + x(1 - \sigma(x)))`."""
    return stable_sigmoid(x) + x * sigmoid_slope(x)


def mish(x: np.ndarray) -> np.ndarray:
    r""":math:`x\tanh(\operatorname{softplus}(x))`."""
    return x * np.tanh(np.logaddexp(0.0, x))


def mish_slope(x: np.ndarray) -> np.ndarray:
    r""":math:`\tanh(s) + x\,\operatorname{sech}^2(s)\,\sigma(x)`, :math:`s =
    \operatorname{softplus}(x)`."""
    s = np.logaddexp(0.0, x)
    return np.tanh(s) + x * sech2(s) * stable_sigmoid(x)


def softplus(beta: float, x: np.ndarray) -> np.ndarray:
    r""":math:`\beta^{-1}\log(1 + e^{\beta x})` (``logaddexp``: no overflow)."""
    return np.logaddexp(0.0, beta * x) / beta


def softplus_slope(beta: float, x: np.ndarray) -> np.ndarray:
    r""":math:`\sigma(\beta x)`."""
    return stable_sigmoid(beta * x)


def softsign(x: np.ndarray) -> np.ndarray:
    r""":math:`x/(1 + |x|)`."""
    return x / (1.0 + np.abs(x))


def softsign_slope(x: np.ndarray) -> np.ndarray:
    r""":math:`(1 + |x|)^{-2}`."""
    return 1.0 / (1.0 + np.abs(x)) ** 2
