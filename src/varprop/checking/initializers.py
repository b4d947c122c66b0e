r"""Check weights produced by any framework against an init scheme's claims.

:func:`check_initializer` takes a weight matrix (a NumPy array, anything with ``__array__`` such
as a PyTorch tensor, a stack of matrices, or a callable that draws a fresh one at every call) and
asks whether it is what the scheme claims: the entry mean :math:`\mu_w`, the entry variance
:math:`\sigma_w^2` and the shape of the entry distribution (normal, uniform, truncated normal)
or, for ``orthogonal``, the orthogonality and the Haar law.  It returns a
:class:`~varprop.checking.check.Verdict` like :func:`~varprop.checking.check.verify` (the subclass
:class:`InitializerVerdict` adds the per-test p-values), with the same semantics: ``refuted``
when the evidence excludes the claim with family-wise error at most ``alpha``, ``confirmed``
when the variance is shown to lie within :math:`\pm` ``rtol`` of the claim (two one-sided tests) and no
mean or shape test rejects, ``inconclusive`` otherwise.

Layout convention
-----------------
A weight matrix has shape ``(fan_out, fan_in)`` so that :math:`z = W a`: this is PyTorch's
``nn.Linear.weight`` (``(out_features, in_features)``) and varprop's own sampler.  The transpose
``(fan_in, fan_out)`` (Keras / JAX / Flax ``kernel``) is accepted too, and so are leading batch
dimensions ``(k, fan_out, fan_in)`` (``k`` independent matrices).  Nothing the checks compute
depends on the orientation: the i.i.d. tests pool the entries, and the orthogonality test uses the
smaller Gram matrix.  Convolution kernels ``(out, in, *kernel)`` (PyTorch's ``ConvNd.weight``)
are accepted with PyTorch's fans, ``fan_in = in * prod(kernel)`` and
``fan_out = out * prod(kernel)``, which are also the default when ``fan_in``/``fan_out`` are
omitted: ``kaiming_normal_(conv.weight, mode="fan_out")`` (torchvision's ResNet init) is checked
against ``he_normal(mode="fan_out")`` as it is.

The unit of evidence
--------------------
For the i.i.d. schemes (everything but ``orthogonal``) the entries of one matrix are independent
and identically distributed *under the claim*, so the unit of evidence is the entry: a single
:math:`256\times256` matrix holds 65,536 independent draws.  (Contrast with :func:`verify`, where
units of one network share a random scale and the replicate is the unit.)  The entries of an
orthogonal matrix are dependent; there the evidence is the Gram matrix and two exact Haar
statistics per matrix.

The tests (i.i.d. schemes), all at the claimed parameters
---------------------------------------------------------
With :math:`N` pooled entries, sample mean :math:`\bar w`, sample variance :math:`s^2` and sample
excess kurtosis :math:`\hat\kappa`:

* **mean**: :math:`t = (\bar w - \mu_w)/(s/\sqrt N)` against Student's :math:`t_{N-1}`
  (two-sided; exact for normal entries, CLT otherwise).
* **variance**: :math:`\operatorname{Var}(s^2) = \sigma^4\,(2/(N-1) + \kappa/N)`, so
  :math:`\nu s^2/\sigma^2` is approximately :math:`\chi^2_\nu` with
  :math:`\nu = 2/(2/(N-1) + \kappa/N)` (Satterthwaite); exact (:math:`\nu = N - 1`) for normal
  entries.  :math:`\kappa = \max(\kappa_{\text{claim}}, \hat\kappa)` keeps the interval valid when
  the truth has heavier tails than the claim.  The two-sided :math:`1-\alpha/m` interval for
  :math:`\sigma^2/\sigma_w^2 - 1` (:math:`m` = number of tests, Bonferroni, so it is
  simultaneous with the other tests) is the reported ``relative_interval`` (``interval`` in
  absolute units); its two ends are the two one-sided tests of the equivalence (TOST) decision.
* **shape**: one-sample Kolmogorov-Smirnov test against the fully specified claimed law
  (``scipy.stats.norm``, ``uniform`` or ``truncnorm`` at the scheme's parameters), rounded to
  the weights' storage format (bfloat16, float16, float32: a discrete law, compared through its
  exact step CDF, which makes the KS p-value conservative; :mod:`varprop._util.rounding`).
* **support** (uniform and truncated normal only): an entry outside the support of the stored
  law refutes the claim with certainty (p-value 0).  That support is the claimed interval
  widened by ``SUPPORT_ULPS`` = 4 units in the last place of float32 (float64 for float64
  weights: the computation's own error), then rounded to the storage format: a bfloat16 entry
  one step beyond the rounded bound is refuted, a correct draw rounded up to it is not.

The p-values are combined with Holm's step-down procedure: ``refuted`` iff some Holm-adjusted
p-value is at most ``alpha``, which bounds the probability of refuting a true claim by ``alpha``.

The tests (orthogonal)
----------------------
For :math:`W = g Q` with :math:`Q` Haar distributed on the matrices with orthonormal rows (wide)
or columns (tall), :math:`m = \max(n_{in}, n_{out})`:

* **orthogonality** (deterministic): :math:`\max|G/g^2 - I| \le` ``orthogonality_tol`` with
  :math:`G = W W^\top` (wide) or :math:`W^\top W` (tall); default tolerance
  :math:`8\sqrt m\,\varepsilon` of the array's dtype.  It also checks the gain.
* **sum** (exact): :math:`c = \sum_{ij} W_{ij}/(g\sqrt{n_{in} n_{out}})` is a coordinate of a
  uniform unit vector in :math:`\mathbb R^m`, so :math:`c^2 \sim \mathrm{Beta}(1/2, (m-1)/2)`;
  the matrices' p-values are combined by Fisher's method.
* **delocalization** (valid, conservative): each :math:`(W_{ij}/g)^2 \sim \mathrm{Beta}(1/2,
  (m-1)/2)`, so :math:`p = \min(1, k\,n_{in} n_{out}\, P(\mathrm{Beta} \ge \max_{ij} W_{ij}^2/g^2))`
  by the union bound.  It refutes structured orthogonal matrices (identity, permutations, sparse
  rotations) that the Gram test alone cannot tell from Haar ones.

The entry variance of an orthogonal matrix is :math:`g^2/m` exactly (up to rounding): its
``interval`` is the numerical tolerance around the realised relative error.

References
----------
Kolmogorov (1933), Smirnov (1948); Holm (1979) *A simple sequentially rejective multiple test
procedure*; Schuirmann (1987) for TOST; Satterthwaite (1946); Mezzadri (2007) *How to generate
random matrices from the classical compact groups* for the Haar law.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp
from scipy import special, stats

from varprop._math.truncnorm import truncated_normal_excess_kurtosis
from varprop._util.rounding import FORMATS, FloatFormat, format_of
from varprop._util.validation import (
    check_positive_int,
    check_positive_real,
    check_probability,
    fail,
    fail_type,
)
from varprop.checking.check import Verdict
from varprop.checking.stats import holm_adjusted
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import InvalidArgumentType, VarpropWarning

__all__ = ["check_initializer", "InitializerVerdict", "truncated_normal_kurtosis"]


@dataclass(frozen=True)
class InitializerVerdict(Verdict):
    r"""A :class:`~varprop.checking.check.Verdict` for :func:`check_initializer`, with the per-test
    p-values.

    The inherited fields read: ``predicted`` the claimed entry variance :math:`\sigma_w^2`,
    ``estimate`` the sample variance, ``interval`` / ``relative_interval`` the simultaneous
    interval for :math:`\sigma^2` / :math:`\sigma^2/\sigma_w^2 - 1`, ``p_refute`` the smallest
    Holm-adjusted p-value (refuted iff ``<= alpha``), ``p_tost_lower`` / ``p_tost_upper`` the
    Bonferroni-adjusted one-sided p-values of :math:`r \le -` ``rtol`` / :math:`r \ge` ``rtol``,
    ``replicates`` the number of matrices, ``target`` ``"initializer"``, ``quantity``
    ``"weight_variance"``, ``exact`` True and ``tol`` 0 (a scheme claims its variance exactly),
    ``seed`` 0 (nothing is random: the weights are given).

    Attributes
    ----------
    p_values : dict
        Raw p-value per test: ``mean``, ``variance``, ``shape``, ``support`` (i.i.d. schemes) or
        ``orthogonality``, ``sum``, ``delocalization`` (orthogonal).
    p_adjusted : dict
        Holm-adjusted p-values (same keys): refuted iff one is ``<= alpha``.
    """

    p_values: Mapping[str, float] = field(default_factory=dict)
    p_adjusted: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        """The :class:`~varprop.checking.check.Verdict` text, headed by what was checked: the weights (as
        recognised), their dtype, the scheme and the fans (there is no activation or width)."""
        cfg = self.config
        head = (f"{self.status.upper()}: {self.statistic} of the weights "
                f"({cfg.get('weights', 'array')}, {cfg.get('dtype')}) against {cfg.get('init')} "
                f"at fan_in={cfg.get('fan_in')}, fan_out={cfg.get('fan_out')}")
        return head + "\n" + super().__str__().split("\n", 1)[1]


#: Upper bound on calls of a callable ``weights`` when ``replicates=None``.
MAX_AUTO_REPLICATES = 1000


def check_initializer(
    weights: Any,
    scheme: InitScheme | str,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    alpha: float = 0.01,
    rtol: float = 0.05,
    replicates: int | None = None,
    orthogonality_tol: float | None = None,
) -> InitializerVerdict:
    r"""Check an initializer's weights against ``scheme``'s mean, variance and distribution.

    Parameters
    ----------
    weights : array_like or callable
        A weight matrix of shape ``(fan_out, fan_in)`` (PyTorch's ``(out_features, in_features)``;
        the transpose ``(fan_in, fan_out)`` is accepted too), a stack ``(k, fan_out, fan_in)``
        of independent matrices, or a convolution kernel ``(out, in, *kernel)`` (PyTorch's
        ``ConvNd.weight``), as a NumPy array (float16/32/64) or anything with ``__array__`` (a
        PyTorch tensor or ``nn.Parameter``, bfloat16 included, is detached and moved to the CPU
        by duck typing: torch is never imported).  Or a callable with no arguments returning a
        fresh such array at each call, e.g.
        ``lambda: torch.nn.init.kaiming_normal_(torch.empty(256, 128))``.
    scheme : InitScheme or str
        The claim, e.g. ``init_scheme("he_normal")`` or ``"xavier_uniform"``.
    fan_in, fan_out : int, optional
        The layer's fans: the claimed moments are ``scheme.moments(fan_in, fan_out)``.  Omitted
        (both): taken from the shape as PyTorch does (``_calculate_fan_in_and_fan_out``): a
        matrix is ``(fan_out, fan_in)``; a kernel ``(out, in, *kernel)`` has
        ``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)`` (for ``orthogonal``,
        whose ``orthogonal_`` makes the flattened ``(out, in * prod(kernel))`` matrix orthogonal,
        ``fan_out = out``).  With an omitted fan a 3-d array is a kernel, not a stack.
    alpha : float, default 0.01
        Family-wise error rate of the refutation (Holm over the tests).
    rtol : float, default 0.05
        Equivalence margin: ``confirmed`` needs the whole variance interval within
        :math:`\pm` ``rtol`` of the claimed variance.
    replicates : int, optional
        Only for a callable ``weights``: how many times to call it (matrices pooled).  ``None``:
        for i.i.d. schemes, enough calls to expect an interval of half-width ``rtol / 2``
        (:math:`N \approx 4 z^2 (2 + \kappa)/\text{rtol}^2` entries, at most
        ``MAX_AUTO_REPLICATES`` calls), fixed before any data is seen; for ``orthogonal``, one
        call.
    orthogonality_tol : float, optional
        Tolerance of the orthogonality test (default :math:`8\sqrt m\,\varepsilon` of the
        weights' dtype).

    Returns
    -------
    InitializerVerdict
        A :class:`~varprop.checking.check.Verdict` (subclass): ``status`` in
        ``confirmed``/``refuted``/``inconclusive``; ``predicted`` the claimed entry variance,
        ``estimate`` the sample variance, ``relative_error`` and ``relative_interval`` for
        :math:`\hat\sigma^2/\sigma_w^2 - 1` (``interval`` in absolute units), ``p_values`` per
        test (raw) and ``p_adjusted`` (Holm, used in the decision), ``replicates`` the number of
        matrices used.

    Notes
    -----
    Weights stored in a reduced format (bfloat16, float16, float32) are rounded: their law is
    discrete.  The support test uses the claimed bounds rounded to that format (after a
    computation error of ``SUPPORT_ULPS`` float32 ulps), and the KS test compares with the
    claimed law rounded to the format (:mod:`varprop._util.rounding`; conservative for a discrete
    law).  The rounding changes the variance by about :math:`\varepsilon^2/12` relatively
    (:math:`10^{-6}` for bfloat16), far below what the variance test resolves.

    All statistics are computed in units of a power of two of the claim's scale, so weights of
    std :math:`10^{\pm 200}` are checked as accurately as std 1 (absolute values beyond the
    float range come back as 0 or inf, the relative ones exact).

    Raises
    ------
    ValueError
        Wrong shape for ``(fan_in, fan_out)``, NaN or infinite entries, empty arrays, bad
        ``alpha``/``rtol``/``replicates``, or ``replicates`` with an array ``weights``.
    TypeError
        Non-numeric, complex, integer or boolean weights; wrong argument types.

    Examples
    --------
    >>> import numpy as np, varprop
    >>> he = varprop.init_scheme("he_normal")
    >>> w = he.sample(np.random.default_rng(0), 256, 256)
    >>> varprop.check_initializer(w, he, fan_in=256, fan_out=256).status
    'confirmed'
    """
    t0 = time.perf_counter()
    init = resolve_scheme(scheme, argument="scheme")
    n_in = None if fan_in is None else check_positive_int("fan_in", fan_in)
    n_out = None if fan_out is None else check_positive_int("fan_out", fan_out)
    alpha = check_probability("alpha", alpha)
    rtol = check_positive_real("rtol", rtol)
    if orthogonality_tol is not None:
        orthogonality_tol = check_positive_real("orthogonality_tol", orthogonality_tol)
    if replicates is not None:
        replicates = check_positive_int("replicates", replicates)

    if callable(weights) and not hasattr(weights, "__array__"):
        first = _as_matrices(_call(weights), init, n_in, n_out, name="weights()")
        n_in, n_out = first.fan_in, first.fan_out
        if replicates is None:
            replicates = (1 if not init.is_iid else
                          _auto_replicates(init, n_in, n_out, first.stack.size, alpha, rtol))
        mats = [first] + [_as_matrices(_call(weights), init, n_in, n_out, name="weights()")
                          for _ in range(replicates - 1)]
        if any(np.array_equal(mat.stack, first.stack) for mat in mats[1:]):
            raise fail("weights", weights, "a callable returning a fresh random draw at each "
                       "call (it returned the same matrix twice: pooling copies would fake "
                       "evidence)")
        fmt = min((m.fmt for m in mats), key=lambda f: f.precision)
        stack = np.concatenate([m.stack for m in mats], axis=0)
        layout = f"{replicates} calls, each {first.layout}"
    else:
        if replicates is not None:
            raise fail("replicates", replicates,
                       "None when weights is an array (replicates counts calls of a callable)")
        got = _as_matrices(weights, init, n_in, n_out, name="weights")
        n_in, n_out, fmt, stack, layout = got.fan_in, got.fan_out, got.fmt, got.stack, got.layout

    config: dict[str, Any] = {"init": repr(init), "fan_in": n_in, "fan_out": n_out,
                              "shape": [int(d) for d in stack.shape], "dtype": fmt.name,
                              "weights": layout}
    with np.errstate(over="ignore", under="ignore"):  # absolute values may leave the range
        if init.is_iid:
            return _check_iid(stack, fmt, init, n_in, n_out, alpha, rtol, config, t0)
        return _check_orthogonal(stack, fmt, init, n_in, n_out, alpha, rtol, orthogonality_tol,
                                 config, t0)


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------

def _call(weights: Callable[[], Any]) -> Any:
    try:
        return weights()
    except TypeError as exc:  # e.g. an nn.Module passed instead of its weight
        raise fail_type("weights", weights, "an array, or a callable taking no arguments that "
                        f"returns one (pass layer.weight, not the layer): calling it raised "
                        f"TypeError: {exc}") from exc


def _to_numpy(obj: Any, name: str) -> tuple[np.ndarray, FloatFormat | None]:
    """NumPy view of ``obj`` and its storage format (tensors are detached and moved to the CPU by
    duck typing; a bfloat16 tensor, which NumPy cannot hold, is widened with ``.float()``, exactly,
    and remembered as bfloat16)."""
    if isinstance(obj, (str, bytes, numbers.Number)) or obj is None:
        raise fail_type(name, obj,
                        "an array of shape (fan_out, fan_in) or a callable returning one")
    x = obj
    if not isinstance(x, np.ndarray):
        for method in ("detach", "cpu"):  # torch.Tensor / nn.Parameter without importing torch
            f = getattr(x, method, None)
            if callable(f):
                x = f()
    dtype_name = str(getattr(x, "dtype", "")).rsplit(".", 1)[-1]
    fmt = format_of(dtype_name)
    if fmt is None and dtype_name.startswith("float8"):
        # widening with .float() would hide the format, whose rounding the tests must model
        raise InvalidArgumentType(f"{name}: weights of dtype {dtype_name} are not supported: "
                                  "bfloat16, float16, float32 or float64 (the support and shape "
                                  "tests model the rounding of those formats only)")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        to_float = getattr(x, "float", None)  # e.g. bfloat16 tensors
        arr = None
        if callable(to_float):
            try:
                arr = np.asarray(to_float())
            except (TypeError, ValueError, RuntimeError):
                pass
        if arr is None:
            raise fail_type(name, obj, f"an array of real numbers ({exc})") from exc
    if fmt is None:
        fmt = format_of(arr.dtype)  # ml_dtypes' bfloat16 NumPy arrays are found by name too
    if fmt is not None and fmt.name == "bfloat16" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)  # exact
    return arr, fmt


@dataclass(frozen=True)
class _Weights:
    """Validated weights: ``stack`` of shape ``(k, rows, cols)`` in float64, the fans the claim
    is evaluated at, the storage format and a description of the layout that was recognised."""

    stack: np.ndarray
    fan_in: int
    fan_out: int
    fmt: FloatFormat
    layout: str


def _as_matrices(obj: Any, init: InitScheme, n_in: int | None, n_out: int | None, *,
                 name: str) -> _Weights:
    """Validate ``obj``, recognise its layout (matrix, transpose, stack, convolution kernel)."""
    arr, fmt = _to_numpy(obj, name)
    if arr.dtype == object or fmt is None or not np.issubdtype(arr.dtype, np.floating):
        raise InvalidArgumentType(f"{name}: an array of dtype {arr.dtype} (shape {arr.shape}) is "
                                  "not allowed: real floating-point weights "
                                  "(bfloat16/float16/32/64)")
    shape = tuple(int(d) for d in arr.shape)
    if arr.size == 0:
        raise fail(name, f"<empty array of shape {shape}>", "an array with at least one entry")
    if arr.ndim < 2:
        raise fail(name, f"<array of shape {shape}>",
                   "an array of shape (fan_out, fan_in), its transpose, a stack "
                   "(k, fan_out, fan_in) or a convolution kernel (out, in, *kernel)")
    rf = math.prod(shape[2:])
    # PyTorch's convolution fans (torch.nn.init._calculate_fan_in_and_fan_out); orthogonal_
    # makes the flattened (out, in * prod(kernel)) matrix orthogonal, so its fans are those
    conv_fans = ((shape[1] * rf, shape[0]) if not init.is_iid
                 else (shape[1] * rf, shape[0] * rf)) if arr.ndim >= 3 else None
    kernel = "x".join(map(str, shape[2:]))
    if n_in is None and n_out is None:
        if arr.ndim == 2:
            n_out, n_in = shape
            layout = f"matrix of shape {shape} (fan_out, fan_in), fans from the shape"
        else:
            n_in, n_out = conv_fans  # type: ignore[misc]
            layout = _conv_layout(shape, init, kernel, rf, inferred=True)
            arr = arr.reshape(1, shape[0], -1)
    elif n_in is None or n_out is None:
        raise fail("fan_in" if n_in is None else "fan_out", None,
                   "a positive integer when the other fan is given (or omit both to take the "
                   "fans from the weights' shape, as PyTorch does)")
    elif shape[-2:] == (n_out, n_in):
        layout = (f"matrix of shape {shape} (fan_out, fan_in)" if arr.ndim == 2 else
                  f"stack of {math.prod(shape[:-2])} matrices (fan_out, fan_in) = {shape[-2:]}")
    elif shape[-2:] == (n_in, n_out):
        arr = np.swapaxes(arr, -1, -2)
        layout = (f"matrix of shape {shape} (fan_in, fan_out), transposed" if arr.ndim == 2 else
                  f"stack of {math.prod(shape[:-2])} transposed matrices (fan_in, fan_out)")
    elif conv_fans == (n_in, n_out):
        layout = _conv_layout(shape, init, kernel, rf, inferred=False)
        arr = arr.reshape(1, shape[0], -1)
    else:
        conv = (f", or a convolution kernel (out, in, *kernel) with fan_in = in * prod(kernel) "
                f"and fan_out = {'out' if not init.is_iid else 'out * prod(kernel)'}"
                + (f" (this one has fans {conv_fans})" if conv_fans else ""))
        raise fail(name, f"<array of shape {shape}>",
                   f"last two dimensions (fan_out, fan_in) = ({n_out}, {n_in}) (PyTorch's "
                   f"(out_features, in_features)) or the transpose ({n_in}, {n_out}){conv}")
    stack = arr.reshape((-1,) + arr.shape[-2:]).astype(np.float64, copy=False)
    if stack.shape[0] == 0 or stack.size == 0:
        raise fail(name, f"<array of shape {shape}>", "at least one entry (empty array)")
    if not np.all(np.isfinite(stack)):
        bad = int(np.size(stack) - np.count_nonzero(np.isfinite(stack)))
        raise fail(name, f"<array with {bad} NaN/inf entries>", "finite entries only")
    return _Weights(stack, int(n_in), int(n_out), fmt, layout)  # type: ignore[arg-type]


def _conv_layout(shape: tuple[int, ...], init: InitScheme, kernel: str, rf: int, *,
                 inferred: bool) -> str:
    out, inp = shape[0], shape[1]
    fan_out = f"out = {out}" if not init.is_iid else f"out * {rf} = {out * rf}"
    how = ("the flattened (out, in * prod(kernel)) matrix that orthogonal_ makes orthogonal"
           if not init.is_iid else
           "fans from the shape, as PyTorch computes them" if inferred else "PyTorch's fans")
    return (f"convolution kernel of shape {shape} (out, in, {kernel}): fan_in = in * {rf} = "
            f"{inp * rf}, fan_out = {fan_out} ({how})")


def _claimed_kurtosis(init: InitScheme, p: dict[str, float]) -> float:
    """Excess kurtosis of the claimed entry law (0 normal, -6/5 uniform)."""
    if init.distribution == "normal":
        return 0.0
    if init.distribution == "uniform":
        return -1.2
    return truncated_normal_kurtosis(p["bound"])


def truncated_normal_kurtosis(bound: float) -> float:
    r"""Excess kurtosis of :math:`N(0, 1)` truncated to :math:`[-b, b]`.

    With :math:`Z = 2\Phi(b) - 1`, integration by parts gives
    :math:`m_2 = 1 - 2b\varphi(b)/Z` and :math:`m_4 = 3 m_2 - 2 b^3 \varphi(b)/Z`; the excess
    kurtosis is :math:`m_4/m_2^2 - 3` (:math:`\to 0` as :math:`b \to \infty`, :math:`-6/5` as
    :math:`b \to 0`).  For :math:`b \le 1` both moments come from their power series
    (:mod:`varprop._math.truncnorm`): the forms above cancel catastrophically at small :math:`b`.
    """
    return truncated_normal_excess_kurtosis(bound)


def _claimed_cdf(init: InitScheme, p: dict[str, float]) -> Callable[[np.ndarray], np.ndarray]:
    r"""CDF of the claimed entry law (the same as ``scipy.stats.norm/uniform/truncnorm`` at the
    scheme's parameters, without building frozen distributions: tested against them).

    The truncated normal's CDF is
    :math:`(\operatorname{erf}(t/\sqrt2) + \operatorname{erf}(b/\sqrt2))
    / (2\operatorname{erf}(b/\sqrt2))`
    for :math:`b \le 1` (:math:`\Phi(t) - \Phi(-b)` would cancel near 1/2), the
    difference of normal CDFs beyond (accurate in the tails)."""
    if init.distribution == "normal":
        loc, scale = p["loc"], p["scale"]
        return lambda v: special.ndtr((v - loc) / scale)
    if init.distribution == "uniform":
        low, high = p["low"], p["high"]
        return lambda v: np.clip((v - low) / (high - low), 0.0, 1.0) if math.isfinite(
            high - low) else np.clip((v / 2 - low / 2) / (high / 2 - low / 2), 0.0, 1.0)
    loc, scale, b = p["loc"], p["scale"], p["bound"]
    if b <= 1.0:
        eb = special.erf(b / math.sqrt(2.0))
        return lambda v: np.clip((special.erf((v - loc) / scale / math.sqrt(2.0)) + eb)
                                 / (2.0 * eb), 0.0, 1.0)
    lo_mass, mass = special.ndtr(-b), special.ndtr(b) - special.ndtr(-b)
    return lambda v: np.clip((special.ndtr((v - loc) / scale) - lo_mass) / mass, 0.0, 1.0)


def _n_tests(init: InitScheme, stack_shape: tuple[int, ...] | None = None) -> int:
    """Number of tests in the family: mean, variance, shape (+ support for bounded laws)
    (+ the row test of independence when the matrices are large enough for it)."""
    m = 4 if init.distribution in ("uniform", "truncated_normal") else 3
    return m + (stack_shape is not None and _rows_testable(stack_shape))


#: The row test needs rows long enough for their mean squares to be nearly normal, and enough rows.
ROW_TEST_MIN_FAN_IN, ROW_TEST_MIN_ROWS = 32, 16


def _rows_testable(shape: tuple[int, ...]) -> bool:
    k, n_out, n_in = shape
    return n_in >= ROW_TEST_MIN_FAN_IN and k * n_out >= ROW_TEST_MIN_ROWS


def _row_dispersion_p(stack: np.ndarray, kappa: float) -> float:
    r"""Two-sided p-value of independence across each row, from the spread of the row mean squares.

    For i.i.d. entries with variance :math:`v` and excess kurtosis :math:`\kappa`, the mean
    square :math:`r_i` of a row of :math:`n` centred entries has variance
    :math:`v^2(\kappa + 2)/n`; the sample variance of the :math:`R` values is compared with it by
    a scaled chi-square (Satterthwaite degrees of freedom for the rows' own kurtosis).  Rows of
    an orthogonal matrix all have the same norm (spread 0); rows sharing a random scale spread
    too much: both are refuted, which the entry-wise tests cannot see.
    """
    k, n_out, n_in = stack.shape
    rows = stack.reshape(k * n_out, n_in)
    dev = rows - rows.mean()
    r = np.mean(dev * dev, axis=1)
    R, v = r.size, float(r.mean())
    if v == 0.0:
        return 1.0
    expected = v * v * (kappa + 2.0) / n_in
    s2 = float(r.var(ddof=1))
    kurt_r = max(float(stats.kurtosis(r)), 0.0) if s2 > 0 else 0.0
    nu = 2.0 / (2.0 / (R - 1) + kurt_r / R)
    stat = nu * s2 / expected
    return float(min(1.0, 2.0 * min(stats.chi2.cdf(stat, nu), stats.chi2.sf(stat, nu))))


def _auto_replicates(init: InitScheme, n_in: int, n_out: int, per_call: int, alpha: float,
                     rtol: float) -> int:
    """Calls needed so that the variance interval is expected to have half-width rtol/2."""
    kappa = _claimed_kurtosis(init, init.parameters(n_in, n_out))
    z = stats.norm.isf(alpha / (2 * _n_tests(init)))
    target = 4.0 * z * z * (2.0 + kappa) / (rtol * rtol)
    return int(min(MAX_AUTO_REPLICATES, max(1, math.ceil(target / per_call))))


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------

#: The weights are taken to be computed to within this many units in the last place of float32
#: (of float64 for float64 weights) before they are rounded to their storage format.
SUPPORT_ULPS = 4.0


def _exponent(x: float) -> int:
    r""":math:`e` with :math:`2^{e-1} \le |x| < 2^e` (0 for 0): dividing by :math:`2^e` with
    ``np.ldexp`` is exact and brings ``x`` to :math:`[1/2, 1)`."""
    return int(np.frexp(x)[1]) if x != 0 else 0


def _claim_scale(init: InitScheme, p: dict[str, float]) -> int:
    """Power-of-two exponent of the claim's scale (std, half-width or gain)."""
    if init.distribution == "uniform":
        return _exponent(max(abs(p["low"]), abs(p["high"])))
    return _exponent(p["gain"] if init.distribution == "orthogonal" else p["scale"])


def _claim_in_units(init: InitScheme, n_in: int, n_out: int, e: int) -> tuple[float, float]:
    r"""The claimed :math:`(\mu_w / 2^e, \sigma_w^2 / 4^e)`: from the float moments when they are
    normal numbers, else from the exact SymPy moments (:math:`\sigma_w^2` may lie beyond the
    float range, e.g. std :math:`10^{\pm 200}`, while the scaled value does not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VarpropWarning)
        mu0, var0 = init.moments(n_in, n_out)
    tiny = float(np.finfo(np.float64).tiny)
    normal_var = math.isfinite(var0) and var0 >= tiny
    normal_mean = math.isfinite(mu0) and (abs(mu0) >= tiny or (mu0 == 0 and init.is_zero_mean))
    if normal_var and normal_mean:
        return float(np.ldexp(mu0, -e)), float(np.ldexp(var0, -2 * e))
    unit = sp.Integer(2) ** (-e)
    return (float(sp.N(init.weight_mean(n_in, n_out) * unit, 20)),
            float(sp.N(init.weight_variance(n_in, n_out) * unit**2, 20)))


def _in_units(p: dict[str, float], e: int) -> dict[str, float]:
    """The claim's parameters divided by :math:`2^e` (``bound`` is in units of std already)."""
    return {k: (v if k == "bound" else float(np.ldexp(v, -e))) for k, v in p.items()}


def _ks_pvalue(x: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray], fmt: FloatFormat,
               e: int) -> float:
    r"""Two-sided one-sample Kolmogorov-Smirnov p-value of ``x`` (absolute units) against the
    claimed CDF ``cdf`` (in units of :math:`2^e`), rounded to the storage format ``fmt``.

    For the rounded law :math:`G` (see :mod:`varprop._util.rounding`),
    :math:`D = \max_i \max(i/N - G(x_{(i)}),\ G(x_{(i)}^-) - (i-1)/N)` is the exact
    :math:`\sup|F_N - G|`; the p-value is ``scipy.stats.kstwo.sf(D, N)``, exact for a continuous
    law and conservative for a discrete one (Noether 1963).  For float64 weights
    :math:`G = F` and this is ``scipy.stats.kstest``.
    """
    xs = np.sort(x)
    n = xs.size
    lower, upper = fmt.midpoints(xs)
    g_hi = cdf(np.ldexp(upper, -e))
    g_lo = g_hi if fmt.exact_in_float64 else cdf(np.ldexp(lower, -e))
    i = np.arange(1, n + 1) / n
    d = max(float(np.max(i - g_hi)), float(np.max(g_lo - (i - 1.0 / n))))
    return float(stats.kstwo.sf(d, n))


def _decide(
    init: InitScheme,
    *,
    p_values: dict[str, float],
    alpha: float,
    rtol: float,
    units: int,
    predicted: float,
    estimate: float,
    rel_interval: tuple[float, float],
    p_tost: tuple[float, float],
    replicates: int,
    description: str,
    assumptions: tuple[str, ...],
    details: str,
    config: dict[str, Any],
    t0: float,
) -> InitializerVerdict:
    """The verdict; ``predicted`` and ``estimate`` are in units of :math:`4^{units}` (converted
    to absolute values at the end, where they may over- or underflow: the relative values and
    the decision never do)."""
    keys = list(p_values)
    adjusted = dict(zip(keys, map(float, holm_adjusted([p_values[k] for k in keys]))))
    rel = estimate / predicted - 1.0
    rejected = sorted((k for k, p in adjusted.items() if p <= alpha), key=lambda k: adjusted[k])
    lo, hi = rel_interval
    if rejected:
        status = "refuted"
        reason = ("rejected at family-wise alpha={:g} (Holm): ".format(alpha)
                  + ", ".join(f"{k} (p={p_values[k]:.3g}, adjusted {adjusted[k]:.3g})"
                              for k in rejected))
    elif -rtol <= lo and hi <= rtol:
        status = "confirmed"
        reason = (f"variance within +-{rtol:g} of the claim (interval [{lo:+.4f}, {hi:+.4f}]) "
                  "and no mean/shape test rejects")
    else:
        status = "inconclusive"
        reason = (f"no test rejects, but the variance interval [{lo:+.4f}, {hi:+.4f}] is not "
                  f"within +-{rtol:g}: more entries (replicates) needed")

    def absolute(v: float) -> float:
        return float(np.ldexp(v, 2 * units))

    predicted_abs = absolute(predicted)
    if not (math.isfinite(predicted_abs) and predicted_abs >= np.finfo(np.float64).tiny):
        details += (f"; the claimed variance {predicted:.6g} * 2^{2 * units} lies beyond the "
                    "float range: the absolute values are rounded to 0/inf, the relative ones "
                    "are exact")
    return InitializerVerdict(
        status=status,  # type: ignore[arg-type]
        reason=f"{reason}; {details}",
        predicted=predicted_abs,
        estimate=absolute(estimate),
        interval=(absolute(predicted * (1.0 + lo)), absolute(predicted * (1.0 + hi))),
        relative_interval=(float(lo), float(hi)),
        relative_error=float(rel),
        p_refute=float(min(adjusted.values())),
        p_tost_lower=float(p_tost[0]),
        p_tost_upper=float(p_tost[1]),
        replicates=int(replicates),
        looks=1,
        target="initializer",
        statistic="Var(W_ij)",
        description=description,
        assumptions="; ".join(assumptions),
        exact=True,
        tol=0.0,
        rtol=float(rtol),
        atol=None,
        alpha=float(alpha),
        seed=0,
        quantity="weight_variance",
        layer=1,
        config=config,
        elapsed=time.perf_counter() - t0,
        p_values=dict(p_values),
        p_adjusted=adjusted,
    )


def _sample_moments(x: np.ndarray) -> tuple[float, float, float, int]:
    r"""``(mean, variance (ddof 1), excess kurtosis, e)`` of ``x`` in units of :math:`2^e`,
    :math:`e` the exponent of :math:`\max|x|` (no overflow for any finite ``x``)."""
    e = _exponent(float(np.max(np.abs(x))))
    y = np.ldexp(x, -e)
    n = y.size
    mean = float(y.mean())
    dev = y - mean
    m2 = float(np.mean(dev * dev))
    var = m2 * n / (n - 1) if n > 1 else 0.0
    kurt = float(np.mean(dev**4) / (m2 * m2) - 3.0) if m2 > 0 else math.nan
    return mean, var, kurt, e


def _check_iid(stack: np.ndarray, fmt: FloatFormat, init: InitScheme, n_in: int, n_out: int,
               alpha: float, rtol: float, config: dict[str, Any], t0: float
               ) -> InitializerVerdict:
    p = init.parameters(n_in, n_out)
    e = _claim_scale(init, p)  # everything below is in units of 2^e (variances 4^e)
    mu0, var0 = _claim_in_units(init, n_in, n_out, e)
    pu = _in_units(p, e)
    x = stack.ravel()
    n = x.size
    m = _n_tests(init, stack.shape)
    mean_d, var_d, kappa_hat, ed = _sample_moments(x)  # in units of 2^ed
    mean = float(np.ldexp(mean_d, ed - e))
    var = float(np.ldexp(var_d, 2 * (ed - e)))  # 0 or inf only when hopelessly off the claim
    kappa_claim = _claimed_kurtosis(init, p)
    if math.isnan(kappa_hat):
        kappa_hat = kappa_claim

    p_values: dict[str, float] = {}
    # mean: t-test against the claimed mean, with the sample variance (in the data's units)
    if n < 2:
        p_values["mean"] = 1.0
    elif var_d == 0.0:
        p_values["mean"] = 1.0 if mean == mu0 else 0.0
    else:
        t = (mean_d - float(np.ldexp(mu0, e - ed))) / math.sqrt(var_d / n)
        p_values["mean"] = float(2.0 * stats.t.sf(abs(t), n - 1))

    # variance: scaled chi-square with Satterthwaite degrees of freedom
    a = alpha / m
    if n < 2:
        p_values["variance"] = 1.0
        lo, hi = -1.0, math.inf
        p_tost = (1.0, 1.0)
    else:
        kappa = max(kappa_claim, kappa_hat)
        nu = 2.0 / (2.0 / (n - 1) + kappa / n)
        ratio = var / var0
        stat = nu * ratio
        p_values["variance"] = float(min(1.0, 2.0 * min(stats.chi2.cdf(stat, nu),
                                                         stats.chi2.sf(stat, nu))))
        lo = nu * ratio / stats.chi2.isf(a / 2, nu) - 1.0
        hi = nu * ratio / stats.chi2.ppf(a / 2, nu) - 1.0
        # TOST: H0 r <= -rtol (small stat is evidence against it) and H0 r >= rtol, one-sided,
        # Bonferroni-adjusted like the interval (each side at a/2): confirmed iff both <= alpha
        p_lo = stats.chi2.sf(nu * ratio / (1.0 - rtol), nu) if rtol < 1 else 0.0
        p_hi = stats.chi2.cdf(nu * ratio / (1.0 + rtol), nu)
        p_tost = (float(min(1.0, 2 * m * p_lo)), float(min(1.0, 2 * m * p_hi)))

    # shape: KS against the fully specified claimed law, rounded to the storage format
    cdf = _claimed_cdf(init, pu)
    if init.distribution == "normal":
        shape = f"N({p['loc']:.6g}, {p['scale']:.6g}^2)"
        support = None
    elif init.distribution == "uniform":
        shape = f"U[{p['low']:.6g}, {p['high']:.6g}]"
        support = (p["low"], p["high"])
    else:
        b = p["bound"]
        shape = f"N({p['loc']:.6g}, {p['scale']:.6g}^2) truncated at +-{b:.6g} std"
        support = (p["loc"] - b * p["scale"], p["loc"] + b * p["scale"])
    p_values["shape"] = _ks_pvalue(x, cdf, fmt, e)
    outside = 0
    if support is not None:
        # computed to within SUPPORT_ULPS ulps of float32 (float64 weights: of float64), then
        # rounded to the storage format: the support of the stored law
        ulp = FORMATS["float64" if fmt.exact_in_float64 else "float32"].eps
        slack = SUPPORT_ULPS * ulp * max(abs(support[0]), abs(support[1]))
        low, high = fmt.round(support[0] - slack), fmt.round(support[1] + slack)
        outside = int(np.count_nonzero((x < low) | (x > high)))
        p_values["support"] = 0.0 if outside else 1.0

    if _rows_testable(stack.shape):
        p_values["rows"] = _row_dispersion_p(np.ldexp(stack, -ed), kappa_claim)
    k = stack.shape[0]
    rounding = "" if fmt.exact_in_float64 else f", rounded to {fmt.name}"
    details = (f"{n} entries of {config.get('weights', 'the weights')}, claimed {shape}"
               f"{rounding}; sample mean {float(np.ldexp(mean_d, ed)):.4g} (claim "
               f"{float(np.ldexp(mu0, e)):.4g}), excess kurtosis {kappa_hat:.3g} "
               f"(claim {kappa_claim:.3g})")
    if outside:
        details += f"; {outside} entries outside the claimed support"
    return _decide(
        init, p_values=p_values, alpha=alpha, rtol=rtol, units=e, predicted=var0, estimate=var,
        rel_interval=(lo, hi), p_tost=p_tost, replicates=k,
        description=f"entry variance Var(W_ij) of the weights ({config.get('weights')}, "
                    f"{fmt.name}) against {init!r} at fan_in={n_in}, fan_out={n_out}, with the "
                    f"entry mean and the {init.distribution} shape",
        config=config, t0=t0,
        assumptions=(
            "entries i.i.d. under the claim: the unit of evidence is the entry",
            f"variance interval: scaled chi-square, nu = 2/(2/(N-1) + kappa/N), "
            f"kappa = max(claimed, sample) excess kurtosis, level 1 - alpha/{m} (Bonferroni)",
            "shape: one-sample Kolmogorov-Smirnov at the claimed parameters"
            + ("" if fmt.exact_in_float64 else
               f", against the claimed law rounded to {fmt.name} (discrete: conservative)"),
            "rows (fan_in >= 32, >= 16 rows): independence within rows, from the spread of the "
            "row mean squares against v^2 (kappa + 2) / fan_in",
            f"refutation: Holm over {m} tests at family-wise alpha",
        ),
        details=details,
    )


def _check_orthogonal(stack: np.ndarray, fmt: FloatFormat, init: InitScheme, n_in: int,
                      n_out: int, alpha: float, rtol: float, tol: float | None,
                      config: dict[str, Any], t0: float) -> InitializerVerdict:
    g = init.parameters(n_in, n_out)["gain"]
    e = _exponent(g)
    _, var0 = _claim_in_units(init, n_in, n_out, e)
    rows, cols = stack.shape[-2:]
    big, small = max(rows, cols), min(rows, cols)
    if tol is None:
        tol = 8.0 * math.sqrt(big) * fmt.eps
    k = stack.shape[0]
    q = np.ldexp(stack, -e) / np.ldexp(g, -e)
    gram = q @ np.swapaxes(q, -1, -2) if rows <= cols else np.swapaxes(q, -1, -2) @ q
    deviation = float(np.max(np.abs(gram - np.eye(small))))
    p_values = {"orthogonality": 0.0 if deviation > tol else 1.0}
    if big >= 2:
        c2 = (q.sum(axis=(-2, -1)) ** 2) / (rows * cols)
        beta = stats.beta(0.5, (big - 1) / 2.0)
        per = beta.sf(np.minimum(c2, 1.0))
        p_values["sum"] = float(stats.combine_pvalues(per, method="fisher").pvalue) if k > 1 \
            else float(per[0])
        q2max = float(min(1.0, np.max(q * q)))
        p_values["delocalization"] = float(min(1.0, k * rows * cols * beta.sf(q2max)))
    rel = float(np.mean(q * q)) * big - 1.0  # mean(W^2) / (g^2 / m) - 1
    estimate = var0 * (1.0 + rel)
    details = (f"{config.get('weights', 'the weights')}; max |G/g^2 - I| = {deviation:.3g} "
               f"(tolerance {tol:.3g}) with G the {small}x{small} Gram matrix, gain {g:g}")
    return _decide(
        init, p_values=p_values, alpha=alpha, rtol=rtol, units=e, predicted=var0,
        estimate=estimate, rel_interval=(rel - tol, rel + tol), replicates=k,
        p_tost=(0.0, 0.0) if abs(rel) + tol <= rtol else (1.0, 1.0),
        description=f"orthogonality W W^T = g^2 I (or W^T W) and entry variance "
                    f"g^2/max(fan_in, fan_out) of the weights ({config.get('weights')}, "
                    f"{fmt.name}) against {init!r} at fan_in={n_in}, fan_out={n_out}",
        config=config, t0=t0,
        assumptions=(
            "entries are dependent: the evidence is the Gram matrix (deterministic, to "
            "numerical tolerance) plus exact Haar statistics per matrix",
            "sum test: c^2 ~ Beta(1/2, (m-1)/2) under Haar, Fisher over matrices; "
            "delocalization: union bound over entries",
            "interval: realised relative error +- the orthogonality tolerance",
            "refutation: Holm at family-wise alpha",
        ),
        details=details,
    )
