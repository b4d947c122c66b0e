r"""Check weights produced by any framework against an init scheme's claims.

:func:`check_initializer` takes a weight matrix (a NumPy array, anything with ``__array__`` such
as a PyTorch tensor, a stack of matrices, a callable that draws a fresh one at every call, or a
PyTorch ``nn.Linear``/``nn.Conv*``/``nn.RNN`` module, whose weights it checks) and
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

import time
from dataclasses import replace
from typing import Any

import numpy as np

from varprop._math.truncnorm import truncated_normal_excess_kurtosis
from varprop._util.validation import (
    check_positive_int,
    check_positive_real,
    check_probability,
    fail,
)
from varprop.checking.initializer_input import (
    _as_matrices,
    _call,
    _torch_module_weights,
)
from varprop.checking.initializer_stats import (
    MAX_AUTO_REPLICATES,
    SUPPORT_ULPS,
    InitializerVerdict,
    _auto_replicates,
    _check_iid,
    _check_orthogonal,
)
from varprop.components.laws import Orthogonal
from varprop.components.schemes import InitScheme, resolve_scheme

__all__ = ["check_initializer", "InitializerVerdict", "truncated_normal_kurtosis",
           "MAX_AUTO_REPLICATES", "SUPPORT_ULPS"]


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
    weights : array_like, callable or torch.nn.Module
        A PyTorch ``nn.Linear``, ``nn.Conv1d/2d/3d`` (its ``weight``, fans from its shape) or
        ``nn.RNN`` (each of its :math:`m` matrices ``weight_ih_l{k}``/``weight_hh_l{k}`` with
        the fans of its own shape, at level ``alpha/m``: refuted if one is, confirmed if all
        are, every matrix's status in ``config["parameters"]``; PyTorch's default RNN init is
        :math:`U[\pm 1/\sqrt{\text{hidden}}]` for every matrix, which is
        ``variance_scaling(scale=1/3, mode="fan_out", distribution="uniform")`` -- not
        ``torch_linear_default``, whose bound uses the fan-in, unless input and hidden sizes
        agree); torch is imported only for an object from ``torch.nn``.  Or a weight matrix of
        shape ``(fan_out, fan_in)`` (PyTorch's ``(out_features, in_features)``; the transpose
        ``(fan_in, fan_out)`` is accepted too), a stack ``(k, fan_out, fan_in)`` of independent
        matrices, or a convolution kernel ``(out, in, *kernel)`` (PyTorch's
        ``ConvNd.weight``), as a NumPy array (float16/32/64) or anything with ``__array__`` (a
        PyTorch tensor or ``nn.Parameter``, bfloat16 included, is detached and moved to the CPU
        by duck typing: torch is not imported for them).  Or a callable with no arguments
        returning a fresh such array at each call, e.g.
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
    module = _torch_module_weights(weights)
    if module is not None:
        if replicates is not None:
            raise fail("replicates", replicates, "None for a PyTorch module (its weights are "
                       "given, not drawn by calls)")
        return _check_module(weights, module, init, n_in, n_out, alpha, rtol, orthogonality_tol)

    if callable(weights) and not hasattr(weights, "__array__"):
        first = _as_matrices(_call(weights), init, n_in, n_out, name="weights()")
        n_in, n_out = first.fan_in, first.fan_out
        if replicates is None:
            replicates = (1 if not init.is_iid else
                          _auto_replicates(init.law(n_in, n_out), first.stack.size, alpha, rtol))
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
        law = init.law(n_in, n_out)
        if law.iid:
            return _check_iid(stack, fmt, init, n_in, n_out, alpha, rtol, config, t0)
        if isinstance(law, Orthogonal):  # the orthogonality tests are specific to the Haar law
            return _check_orthogonal(stack, fmt, init, n_in, n_out, alpha, rtol,
                                     orthogonality_tol, config, t0)
        raise fail("scheme", init, "a scheme whose entries are i.i.d. or Haar orthogonal (no "
                   f"check is defined for the dependent entries of a {law.family} law)")


def _check_module(module: Any, weights: list[tuple[str, Any]], init: InitScheme,
                  n_in: int | None, n_out: int | None, alpha: float, rtol: float,
                  orthogonality_tol: float | None) -> InitializerVerdict:
    r"""A PyTorch module's weight matrices (:func:`_torch_module_weights`) against ``init``.

    One matrix (``nn.Linear``, ``nn.ConvNd``): its verdict, with the module named in ``config``.
    Several (``nn.RNN``: ``weight_ih_l0``, ``weight_hh_l0``, ...): each is checked with the fans
    of its own shape at level :math:`\alpha/m` (Bonferroni over the :math:`m` matrices, so the
    module's family-wise error stays at most ``alpha``); the module is ``refuted`` if one matrix
    is, ``confirmed`` if all are, ``inconclusive`` otherwise.  The verdict returned is the deciding
    matrix's (the first refuted, else the first inconclusive, else the one with the largest
    relative error), with every matrix's status in ``config["parameters"]``."""
    kind = type(module).__name__
    m = len(weights)
    if m > 1 and (n_in is not None or n_out is not None):
        raise fail("fan_in" if n_in is not None else "fan_out", n_in if n_in is not None else n_out,
                   f"None for an nn.{kind}: each of its {m} weight matrices is checked with the "
                   "fans of its own shape (or pass one matrix, e.g. module.weight_hh_l0)")
    verdicts = [(name, check_initializer(w, init, fan_in=n_in, fan_out=n_out, alpha=alpha / m,
                                         rtol=rtol, orthogonality_tol=orthogonality_tol))
                for name, w in weights]
    parameters = {name: {"status": v.status, "fan_in": v.config["fan_in"],
                         "fan_out": v.config["fan_out"], "relative_error": v.relative_error}
                  for name, v in verdicts}
    statuses = [v.status for _, v in verdicts]
    status = ("refuted" if "refuted" in statuses else
              "confirmed" if all(s == "confirmed" for s in statuses) else "inconclusive")
    name, pick = (next(nv for nv in verdicts if nv[1].status == status) if status != "confirmed"
                  else max(verdicts, key=lambda nv: abs(nv[1].relative_error or 0.0)))
    config = {**pick.config, "module": kind, "parameter": name, "parameters": parameters,
              "weights": f"nn.{kind}.{name}: {pick.config['weights']}"}
    if m == 1:
        return replace(pick, config=config)
    reason = (f"{name} decides (nn.{kind}: {m} weight matrices, each checked at alpha/{m}; "
              + ", ".join(f"{n} {v.status}" for n, v in verdicts) + f"): {pick.reason}")
    return replace(pick, status=status, reason=reason, alpha=alpha, config=config,
                   p_refute=min(1.0, m * min(v.p_refute for _, v in verdicts)))


def truncated_normal_kurtosis(bound: float) -> float:
    r"""Excess kurtosis of :math:`N(0, 1)` truncated to :math:`[-b, b]`.

    With :math:`Z = 2\Phi(b) - 1`, integration by parts gives
    :math:`m_2 = 1 - 2b\varphi(b)/Z` and :math:`m_4 = 3 m_2 - 2 b^3 \varphi(b)/Z`; the excess
    kurtosis is :math:`m_4/m_2^2 - 3` (:math:`\to 0` as :math:`b \to \infty`, :math:`-6/5` as
    :math:`b \to 0`).  For :math:`b \le 1` both moments come from their power series
    (:mod:`varprop._math.truncnorm`): the forms above cancel catastrophically at small :math:`b`.
    """
    return truncated_normal_excess_kurtosis(bound)
