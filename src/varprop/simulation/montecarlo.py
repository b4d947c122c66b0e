r"""Monte Carlo engine: simulate random networks, forward and backward, and record per-replicate statistics.

The model is the one of :mod:`varprop.theory.predict` (issue 2).  For layers :math:`l = 1, \dots, L` with
widths :math:`n_0, \dots, n_L`,

.. math::

    a_0 = x, \qquad z_l = W_l a_{l-1} + b_l, \qquad a_l = \phi(z_l),

with input entries :math:`x_j \overset{iid}{\sim} N(0, \sigma_x^2)` (``input_variance``; zero mean),
weights :math:`W_l \in \mathbb{R}^{n_l \times n_{l-1}}` drawn from the init scheme, biases
:math:`b_{l,i} \overset{iid}{\sim} N(0, \sigma_b^2)` (``bias_variance``; one bias vector per
network, shared by the samples of a batch).  The backward pass starts from
:math:`\delta_L = \partial L / \partial z_L` with i.i.d. :math:`N(0, 1)` entries independent of the
forward pass, and runs

.. math::

    g_l = \frac{\partial L}{\partial a_{l-1}} = W_l^\top \delta_l, \qquad
    \delta_{l-1} = \phi'(z_{l-1}) \odot g_l, \qquad
    \frac{\partial L}{\partial W_l} = \delta_l a_{l-1}^\top .

A **replicate** is one independent network (fresh weights and biases in every layer) fed a fresh
batch of ``batch`` inputs.  Per replicate and layer :func:`simulate` records the averages over
units *and* batch samples of :math:`z_l, z_l^2, a_l, a_l^2, g_l^2, \delta_l^2` and of the squared
entries of the per-example weight gradient :math:`\delta_{l,b} a_{l-1,b}^\top` (for a batch the
per-example gradients are averaged in square, not summed first), plus the across-unit standard
deviation (``ddof=0``, as ``tf.math.reduce_std``) of :math:`z_l` and :math:`a_l` for the first
sample of the batch.  See :data:`QUANTITIES`.

Engines
-------
``engine="dense"`` draws every weight matrix with :meth:`varprop.components.schemes.InitScheme.sample`
(any scheme: uniform, truncated, orthogonal, non-zero mean) and multiplies; cost
:math:`O(n_l n_{l-1})` random numbers per layer and replicate.

``engine="gaussian"`` (chosen by ``"auto"`` for Gaussian schemes when the batch is small against
the widths) is exact in distribution and costs :math:`O((n_l + n_{l-1}) B)` random numbers per layer.
Write :math:`W = \mu_w \mathbf 1 \mathbf 1^\top + s W_0` with :math:`W_0` standard normal, and let
:math:`A = a_{l-1} \in \mathbb{R}^{n_{in} \times B}` (the batch as columns) have the thin QR
decomposition :math:`A = Q R`, :math:`Q \in \mathbb{R}^{n_{in} \times k}` with orthonormal columns,
:math:`k = \min(n_{in}, B)`.  Because :math:`W_0` is independent of :math:`A` and its rows are
isotropic,

.. math::

    W_0 = W_0 Q Q^\top + W_0 (I - Q Q^\top) \overset{d}{=} E Q^\top + G (I - Q Q^\top),

with :math:`E = W_0 Q \in \mathbb{R}^{n_{out}\times k}` and :math:`G \in \mathbb{R}^{n_{out}\times
n_{in}}` independent standard normal matrices (:math:`E` and :math:`W_0(I - QQ^\top)` are jointly
Gaussian and uncorrelated, hence independent, and :math:`W_0 (I-QQ^\top) \overset{d}{=} G(I -
QQ^\top)`).  Therefore, jointly for the forward and the backward pass,

.. math::

    Z = W A = s\, E R + \mu_w \mathbf 1 (\mathbf 1^\top A),

(for :math:`B = 1`: :math:`z = s \|a\| e`, i.e. :math:`z \sim N(0, s^2\|a\|^2 I)` given
:math:`a`), and, for the backward signal :math:`\Delta = \delta_l \in \mathbb{R}^{n_{out} \times
B}`,

.. math::

    W^\top \Delta = s \bigl[ Q (E^\top \Delta) + (I - Q Q^\top) G^\top \Delta \bigr]
    + \mu_w \mathbf 1 (\mathbf 1^\top \Delta).

:math:`G` appears only through :math:`G^\top \Delta`, whose rows are i.i.d.
:math:`N(0, \Delta^\top \Delta)` (a :math:`B \times B` covariance): with the thin QR
:math:`\Delta = P C`, :math:`C \in \mathbb{R}^{k' \times B}`, :math:`k' = \min(n_{out}, B)`,
:math:`G^\top \Delta = (G^\top P) C \overset{d}{=} F C` with :math:`F \in \mathbb{R}^{n_{in} \times
k'}` standard normal, independent of everything else (:math:`\Delta` depends on :math:`W` only
through the layers above and through :math:`Z`, i.e. through :math:`E`, never through :math:`G`).
For :math:`B = 1`: :math:`W_0^\top \delta = q (e^\top \delta) + \|\delta\| (I - q q^\top) f`
with :math:`q = a/\|a\|` and :math:`f \sim N(0, I)`.  The rank-deficient case (:math:`a = 0`,
dead ReLU layers, :math:`B > n_{in}`) is covered: any orthonormal :math:`Q` with
:math:`A = QR` works.  Biases are added independently in both engines.

Reproducibility and memory
--------------------------
Replicates are grouped in fixed **blocks** of ``block_size`` replicates (64 for the Gaussian
engine; for the dense engine at most 64 and small enough that one block's weights fit in
:data:`DENSE_BLOCK_BYTES`) -- a function of the configuration only.  Block :math:`j` draws all its
random numbers, in a fixed order, from its own stream
``numpy.random.SeedSequence(seed).spawn(n_blocks)[j]``.  Chunks of whole blocks (sized from
:data:`MEMORY_BUDGET`, or ``chunk_size``) are processed one after the other; every per-replicate
reduction runs along the last axis of a contiguous per-replicate row, so the same ``seed`` gives
bit-identical results for every chunking.

Parallelism: none inside :func:`simulate`; NumPy's OpenBLAS is limited to one thread while it
runs (:mod:`varprop.simulation.blas`): the products are small and per replicate, and OpenBLAS threads
make them many times slower on a loaded machine.  Run independent seeds in separate processes to
use several cores.

Overflow and underflow
----------------------
Values are computed in ``dtype``; statistics are accumulated in float64.  A replicate's forward pass
becomes **invalid** at the first layer where a value of :math:`z_l` or :math:`a_l` is not finite in
``dtype`` (detected through the float64 sums, which a non-finite value always makes non-finite;
a float64 statistic that overflows counts too), or where the signal **underflows**: every
:math:`|z_{l,i}|` is below the smallest normal number of ``dtype`` (``finfo(dtype).tiny``: the
whole layer is subnormal or zero, as in :mod:`varprop.theory.overflow`) -- or the float64 mean square
:math:`\overline{z_l^2}` is below float64's smallest normal number, so that the statistic itself
flushes -- although the layer's input was not identically zero (:math:`\overline{a_{l-1}^2} > 0`;
dead ReLU layers are not underflow).  That layer and all later ones are masked.  The backward
pass runs from :math:`L` down to 1; it becomes invalid at the first layer (in that order) where a
backward statistic is not finite or :math:`g_l` underflows (same rule) while
:math:`\delta_l \ne 0`, or -- for activations whose derivative vanishes only on a null set (no
kinks and :math:`\phi' \not\equiv 0`: tanh, sigmoid, erf, ...) -- where
:math:`\delta_{l-1} = \phi'(z_{l-1}) \odot g_l` underflows while :math:`g_l \ne 0` (its exact
zeros would be artefacts, e.g. :math:`\tanh'(z)` below :math:`10^{-308}` at :math:`|z| > 355`;
the derivatives themselves are computed without cancellation), and all its statistics are invalid if the forward pass was invalid
anywhere.  Invalid entries are stored as 0 behind the masks, never NaN: see
:meth:`SimulationResult.per_replicate` and :meth:`SimulationResult.masked`.

References
----------
Poole et al. (2016), *Exponential expressivity in deep neural networks through transient chaos*;
Schoenholz et al. (2017), *Deep information propagation*; Hanin & Rolnick (2018), *How to start
training: the effect of initialization and architecture* (finite-width fluctuations of
:math:`\|a_L\|^2`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from varprop._util.validation import (
    check_choice,
    check_nonnegative_int,
    check_nonnegative_real,
    check_positive_int,
    check_widths,
    did_you_mean,
    fail,
    fail_type,
)
from varprop.components.activations import Activation, is_odd, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.errors import InvalidArgument, SimulationOverflowError, VarpropError
from varprop.network.quantities import QUANTITIES as _PREDICTED
from varprop.network.quantities import spec as _quantity_spec
from varprop.simulation.blas import single_threaded_blas

__all__ = [
    "simulate",
    "SimulationResult",
    "SimulationOverflowError",
    "QUANTITIES",
    "FORWARD_QUANTITIES",
    "BACKWARD_QUANTITIES",
    "ESTIMATES",
    "ENGINES",
    "DTYPES",
    "DEFAULT_REPLICATES",
    "BLOCK_SIZE",
    "MEMORY_BUDGET",
    "DENSE_BLOCK_BYTES",
    "MEMORY_LIMIT",
    "TIME_LIMIT",
    "WORK_RATE",
    "resource_estimate",
]

#: Default number of replicates (independent networks).
DEFAULT_REPLICATES = 1000
#: Replicates per random stream (Gaussian engine; the dense engine may use fewer).
BLOCK_SIZE = 64
#: Bytes of working memory a chunk may use (approximately), when ``chunk_size`` is not given
#: (the dense engine uses :data:`DENSE_BLOCK_BYTES`, or one block if that is larger).
MEMORY_BUDGET = 256 * 2**20
#: Bytes of weights one dense block may hold (fixes the dense engine's block size).
DENSE_BLOCK_BYTES = 64 * 2**20
#: Largest memory a simulation may need (bytes): the smallest working set (one block of
#: replicates) plus the per-replicate results.  Beyond it :func:`simulate` refuses up front.
MEMORY_LIMIT = 4 * 2**30
#: Longest estimated run time (seconds) :func:`simulate` accepts; beyond it, it refuses up front.
TIME_LIMIT = 3600.0
#: Work units per second assumed by the time estimate (one work unit ~ one random number or one
#: multiply-add; about one core's speed, measured 0.5-2e8/s on the development machine).
WORK_RATE = 2.0e8

ENGINES = ("auto", "dense", "gaussian")
DTYPES = ("float32", "float64")

#: Forward statistics (mask :attr:`SimulationResult.valid`).
FORWARD_QUANTITIES: tuple[str, ...] = (
    "preactivation_mean",
    "preactivation_second",
    "activation_mean",
    "activation_second",
    "preactivation_unit_std",
    "activation_unit_std",
)
#: Backward statistics (mask :attr:`SimulationResult.gradient_valid`).
BACKWARD_QUANTITIES: tuple[str, ...] = ("gradient_second", "delta_second", "weight_gradient_second")
#: Every recorded per-replicate statistic.
QUANTITIES: tuple[str, ...] = FORWARD_QUANTITIES + BACKWARD_QUANTITIES
#: Quantities of :meth:`SimulationResult.estimate` (the vocabulary of ``predict_variance``,
#: defined once in :mod:`varprop.network.quantities`); :meth:`SimulationResult.per_replicate` and the
#: other accessors accept them too, as aliases of the statistic that estimates them.
ESTIMATES: tuple[str, ...] = _PREDICTED

Engine = Literal["auto", "dense", "gaussian"]
DType = Literal["float32", "float64"]


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class SimulationResult:
    r"""Per-replicate statistics of a simulation (returned by :func:`simulate`).

    Layers are numbered :math:`1, \dots, L` (``depth``); column ``l - 1`` of every per-replicate
    array is layer ``l``.  The recorded quantities (:data:`QUANTITIES`) are, per replicate and layer,
    averages over the units and the batch samples:

    ==========================  ===================================================================
    ``preactivation_mean``      :math:`\overline{z_l}`
    ``preactivation_second``    :math:`\overline{z_l^2}` (estimates ``Propagation.preact_second``)
    ``activation_mean``         :math:`\overline{a_l}` (``act_mean``)
    ``activation_second``       :math:`\overline{a_l^2}` (``act_second``)
    ``preactivation_unit_std``  std over units (``ddof=0``) of :math:`z_l` of the first sample
    ``activation_unit_std``     std over units (``ddof=0``) of :math:`a_l` of the first sample
    ``gradient_second``         :math:`\overline{(\partial L/\partial a_{l-1})^2}` (``grad_second``)
    ``delta_second``            :math:`\overline{(\partial L/\partial z_l)^2}` (``delta_second``)
    ``weight_gradient_second``  :math:`\overline{(\partial L/\partial W_l)^2}`, per example (``weight_grad_second``)
    ==========================  ===================================================================

    The unit standard deviations are :math:`\sqrt{\overline{x^2} - \bar x^2}` from float64 sums
    (``tf.math.reduce_std`` of one row).  Ensemble quantities over networks and inputs are
    :meth:`mean` and :meth:`estimate`; the spread inside one network is the ``*_unit_std``.

    Attributes
    ----------
    activation, init : Activation, InitScheme
    widths : tuple of int
        :math:`(n_0, \dots, n_L)`.
    depth, replicates, batch, seed : int
    input_variance, bias_variance : float
    dtype : {"float32", "float64"}
    engine : {"gaussian", "dense"}
        The engine used; ``engine_requested`` is what was asked for.
    chunk_size, block_size : int
        Replicates per chunk (memory) and per random stream (reproducibility).
    elapsed : float
        Wall-clock seconds.
    valid, gradient_valid : ndarray of bool, shape (replicates, depth)
        Where forward / backward statistics are valid.
    input_second : ndarray, shape (replicates,)
        The realised input's :math:`\overline{x^2}` per replicate (units and batch): what layer 1's
        one-step map is conditioned on.
    nonfinite_layer_per_replicate, underflow_layer_per_replicate : ndarray of int
        First forward layer (1-based) with a non-finite value / an underflow; 0 = never.
    gradient_nonfinite_layer_per_replicate, gradient_underflow_layer_per_replicate : ndarray of int
        First layer *in backward order* (the largest ``l``) where a backward statistic
        (:math:`g_l`, :math:`\delta_l`, :math:`\partial L/\partial W_l`) stopped being finite /
        :math:`g_l` flushed to zero; 0 = never; -1 = not assessed because the replicate's forward
        pass was invalid (then all its backward statistics are invalid).
    overflow_layer, underflow_layer, gradient_overflow_layer, gradient_underflow_layer : int or None
        The same over all replicates (forward: smallest; backward: largest); ``None`` if never.
    """

    activation: Activation
    init: InitScheme
    widths: tuple[int, ...]
    input_variance: float
    bias_variance: float
    replicates: int
    batch: int
    seed: int
    dtype: str
    engine: str
    engine_requested: str
    chunk_size: int
    block_size: int
    elapsed: float
    _stats: dict[str, np.ndarray] = field(repr=False)
    nonfinite_layer_per_replicate: np.ndarray = field(repr=False)
    underflow_layer_per_replicate: np.ndarray = field(repr=False)
    gradient_nonfinite_layer_per_replicate: np.ndarray = field(repr=False)
    gradient_underflow_layer_per_replicate: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    gradient_valid: np.ndarray = field(repr=False)
    input_second: np.ndarray = field(repr=False)

    QUANTITIES = QUANTITIES
    ESTIMATES = ESTIMATES

    # ----- summary attributes ---------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of layers :math:`L`."""
        return len(self.widths) - 1

    @property
    def overflow_layer(self) -> int | None:
        """First layer (1-based) where any forward value stopped being finite, or ``None``."""
        return _first(self.nonfinite_layer_per_replicate, min)

    @property
    def underflow_layer(self) -> int | None:
        """First layer where the pre-activations of some replicate underflowed (see module doc)."""
        return _first(self.underflow_layer_per_replicate, min)

    @property
    def gradient_overflow_layer(self) -> int | None:
        """First layer of the backward pass (largest ``l``) with a non-finite gradient, or ``None``."""
        return _first(self.gradient_nonfinite_layer_per_replicate, max)

    @property
    def gradient_underflow_layer(self) -> int | None:
        """First layer of the backward pass (largest ``l``) where a gradient flushed to zero."""
        return _first(self.gradient_underflow_layer_per_replicate, max)

    @property
    def scheme(self) -> InitScheme:
        """Alias of :attr:`init`."""
        return self.init

    # ----- access ---------------------------------------------------------------------------
    def _check_quantity(self, quantity: object) -> str:
        """A raw statistic name (:data:`QUANTITIES`), or a ``predict_variance`` quantity
        (:data:`ESTIMATES`) mapped to the statistic whose replicate mean is its second moment."""
        if isinstance(quantity, str) and quantity in _PREDICTED:
            return _quantity_spec(quantity).second
        return check_choice("quantity", quantity, QUANTITIES + _PREDICTED)

    def _per_replicate_name(self, quantity: object) -> str:
        r""":meth:`_check_quantity`, refusing a variance quantity (``preactivation``,
        ``activation``) whose mean is not zero by symmetry: then the replicate mean of
        :math:`\overline{x^2}` is :math:`E x^2`, not the variance ``predict_variance`` means by
        that name (ReLU: 1.0 against 0.68), and a silent mismatch is worse than an error."""
        if quantity in ("preactivation", "activation"):
            zero_mean = self.init.is_zero_mean and (
                quantity == "preactivation" or is_odd(self.activation))
            if not zero_mean:
                other = "activation_second_moment" if quantity == "activation" else "preactivation_second"
                raise fail("quantity", quantity, f"a quantity whose replicate mean is what "
                           f"predict_variance predicts: with {self.activation.name} and "
                           f"{self.init.name} E[x] != 0, so Var is not a per-replicate mean; use "
                           f"{other!r} for E[x^2], or estimate({quantity!r}) for the variance")
        return self._check_quantity(quantity)

    def _layer_index(self, layer: object) -> int | None:
        if layer is None:
            return None
        if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
            raise fail_type("layer", layer, f"an integer 1..{self.depth} (or -1 for the last layer)")
        L = self.depth
        if 1 <= layer <= L:
            return int(layer) - 1
        if -L <= layer <= -1:
            return L + int(layer)
        raise fail("layer", layer, f"a layer 1..{L} (1-based) or -{L}..-1 (from the end)")

    def valid_mask(self, quantity: str) -> np.ndarray:
        """Boolean array ``(replicates, depth)``: where ``quantity`` is valid."""
        q = self._check_quantity(quantity)
        return self.gradient_valid if q in BACKWARD_QUANTITIES else self.valid

    def count(self, quantity: str) -> np.ndarray:
        """Number of valid replicates per layer, shape ``(depth,)``."""
        return self.valid_mask(quantity).sum(axis=0)

    def per_replicate(
        self, quantity: str, layer: int | None = None, *, valid_only: bool = False
    ) -> np.ndarray:
        r"""The per-replicate statistic ``quantity``: float64 array ``(replicates, depth)``.

        Parameters
        ----------
        quantity : str
            One of :data:`QUANTITIES` (the raw statistics), or a quantity name of
            :func:`~varprop.predict_variance` (:data:`ESTIMATES`), which selects the statistic
            :math:`\overline{x^2}` whose replicate mean is that quantity's second moment
            :math:`E x^2`: ``"preactivation"`` -> ``preactivation_second``, ``"activation"`` and
            ``"activation_second_moment"`` -> ``activation_second``, ``"gradient"`` ->
            ``gradient_second``, ``"weight_gradient"`` -> ``weight_gradient_second``
            (:mod:`varprop.network.quantities`).  ``preactivation``/``activation`` are accepted only
            where their mean is zero by symmetry (zero-mean weights; for ``activation`` also an odd
            activation), so that the replicate mean is the variance ``predict_variance`` predicts;
            otherwise :class:`~varprop.InvalidArgument` points to the second-moment statistic and
            to :meth:`estimate`.
        layer : int, optional
            1-based layer (negative counts from the end); then the result has shape ``(replicates,)``.
        valid_only : bool
            ``False`` (default): every requested entry must be valid, else
            :class:`SimulationOverflowError` is raised (use :meth:`masked` to see everything).
            ``True``: with ``layer`` given, only the replicates valid at that layer (note: the
            survivors of an overflow are a biased sample); with ``layer=None``, only the replicates
            valid at every layer.
        """
        q = self._per_replicate_name(quantity)
        j = self._layer_index(layer)
        values = self._stats[q]
        mask = self.valid_mask(q)
        if j is not None:
            values, mask = values[:, j], mask[:, j]
        if valid_only:
            keep = mask if j is not None else mask.all(axis=1)
            return values[keep].copy()
        if not mask.all():
            bad = np.argwhere(~mask)
            r, l = bad[0][0], (bad[0][-1] + 1 if j is None else j + 1)
            raise SimulationOverflowError(
                f"{q}: {int((~mask).sum())} requested entries are invalid (first: replicate {r}, "
                f"layer {l}; overflow_layer={self.overflow_layer}, underflow_layer="
                f"{self.underflow_layer}, gradient_overflow_layer={self.gradient_overflow_layer}); "
                f"pass valid_only=True or use masked()")
        return values.copy()

    def masked(self, quantity: str, layer: int | None = None) -> np.ma.MaskedArray:
        """``quantity`` as a masked array (invalid entries masked; their data set to 0)."""
        q = self._per_replicate_name(quantity)
        j = self._layer_index(layer)
        values, mask = self._stats[q], self.valid_mask(q)
        if j is not None:
            values, mask = values[:, j], mask[:, j]
        return np.ma.MaskedArray(np.where(mask, values, 0.0), mask=~mask)

    def _columns(self, quantity: str, layer: int | None, valid_only: bool) -> list[np.ndarray]:
        q = self._check_quantity(quantity)
        j = self._layer_index(layer)
        if not valid_only:
            arr = self.per_replicate(q, layer)
            return [arr] if j is not None else [arr[:, i] for i in range(self.depth)]
        cols = [j] if j is not None else range(self.depth)
        mask = self.valid_mask(q)
        return [self._stats[q][mask[:, i], i] for i in cols]

    def _reduce(self, quantity: str, layer: int | None, valid_only: bool,
                fn: Callable[[np.ndarray], float]) -> np.ndarray | float:
        out = np.array([fn(c) if c.size else math.nan
                        for c in self._columns(quantity, layer, valid_only)])
        return float(out[0]) if layer is not None else out

    def mean(self, quantity: str, layer: int | None = None, *,
             valid_only: bool = False) -> np.ndarray | float:
        """Mean over replicates (per layer, or at ``layer``).

        With ``valid_only=True`` the mean is over the replicates valid at each layer (``nan``
        only where no replicate is valid; see :meth:`count`).
        """
        return self._reduce(quantity, layer, valid_only, lambda c: float(np.mean(c)))

    def sem(self, quantity: str, layer: int | None = None, *,
            valid_only: bool = False) -> np.ndarray | float:
        """Standard error of :meth:`mean` (sample std with ``ddof=1`` over sqrt of the count)."""
        return self._reduce(quantity, layer, valid_only,
                            lambda c: float(np.std(c, ddof=1) / math.sqrt(c.size)) if c.size > 1
                            else math.nan)

    def estimate(self, quantity: str = "activation", layer: int | None = None, *,
                 valid_only: bool = False) -> np.ndarray | float:
        r"""Monte Carlo estimate of what ``predict_variance(quantity=...)`` predicts.

        ``"preactivation"``: ensemble variance of one unit, :math:`\widehat{E z^2} -
        \widehat{E z}^2` from the replicate averages (units are exchangeable, so the unit average
        estimates the one-unit moment); ``"activation"``: likewise for :math:`a_l`;
        ``"activation_second_moment"``: :math:`\widehat{E a_l^2}`; ``"gradient"``:
        :math:`\widehat{E g_l^2}` (:math:`E g_l = 0` exactly, the backward seed being zero-mean
        and independent); ``"weight_gradient"``: :math:`\widehat{E (\partial L/\partial W_l)^2}`.
        """
        q = check_choice("quantity", quantity, ESTIMATES)
        if q in ("preactivation", "activation"):
            second = np.asarray(self.mean(f"{q}_second", layer, valid_only=valid_only))
            first = np.asarray(self.mean(f"{q}_mean", layer, valid_only=valid_only))
            out = second - first**2
        else:
            name = {"activation_second_moment": "activation_second", "gradient": "gradient_second",
                    "weight_gradient": "weight_gradient_second"}[q]
            out = np.asarray(self.mean(name, layer, valid_only=valid_only))
        return float(out) if layer is not None else out

    def __repr__(self) -> str:
        return (f"SimulationResult({self.activation!r}, {self.init!r}, widths={self.widths!r}, "
                f"replicates={self.replicates}, batch={self.batch}, dtype={self.dtype!r}, "
                f"engine={self.engine!r}, seed={self.seed}, overflow_layer={self.overflow_layer}, "
                f"underflow_layer={self.underflow_layer}, elapsed={self.elapsed:.3g}s)")


def _first(per_replicate: np.ndarray, pick: Callable[..., int]) -> int | None:
    hit = per_replicate[per_replicate > 0]
    return int(pick(hit)) if hit.size else None


# ----------------------------------------------------------------------------------------------
# The engines
# ----------------------------------------------------------------------------------------------

_STAT_KEYS = QUANTITIES


@dataclass(frozen=True)
class _Plan:
    act: Activation
    scheme: InitScheme
    widths: tuple[int, ...]
    batch: int
    dt: np.dtype
    engine: str
    input_std: float
    bias_std: float
    loc: tuple[float, ...]  # Gaussian engine: per-layer weight mean and std
    scale: tuple[float, ...]
    derivative_never_zero: bool = False  # phi' > 0 a.e.: an all-zero delta is an underflow


def _rows(x: np.ndarray) -> np.ndarray:
    """Contiguous ``(C, m)`` view/copy: one row per replicate."""
    return np.ascontiguousarray(x).reshape(x.shape[0], -1)


def _sum(x: np.ndarray) -> np.ndarray:
    """Per-row float64 sum of a contiguous ``(C, m)`` array (reduction along the last axis only,
    so every row is summed the same way whatever ``C`` is)."""
    return np.add.reduce(x, axis=-1, dtype=np.float64)


def _sumsq(x: np.ndarray) -> np.ndarray:
    """Per-row float64 sum of squares of a contiguous ``(C, m)`` array."""
    return np.einsum("ij,ij->i", x, x, dtype=np.float64)


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y, dtype=np.float64)


def _spread(total: np.ndarray, total_sq: np.ndarray, m: int) -> np.ndarray:
    """Std over ``m`` values (``ddof=0``) from their float64 sum and sum of squares."""
    mean = total / m
    return np.sqrt(np.maximum(total_sq / m - mean * mean, 0.0))


def _draw(gens: list[tuple[np.random.Generator, slice]], shape: tuple[int, ...], dt: np.dtype,
          ) -> np.ndarray:
    """Standard normals of shape ``(C,) + shape``, block ``j`` from its own stream."""
    total = gens[-1][1].stop
    out = np.empty((total,) + shape, dtype=dt)
    for g, sl in gens:
        g.standard_normal(dtype=dt, out=out[sl])
    return out


def _draw_weights(plan: _Plan, gens: list[tuple[np.random.Generator, slice]], n_in: int,
                  n_out: int) -> tuple[np.ndarray, float, float]:
    """``(W0, scale, loc)`` with ``W = loc + scale * W0`` in law.

    Normal schemes: ``W0`` standard normal (the numbers ``InitScheme.sample`` would draw before
    scaling), the affine map being applied to the products instead of the matrix (saves a pass
    over the weights).  Other schemes: ``W0 = InitScheme.sample(...)``, ``scale = 1``, ``loc = 0``.
    """
    dt = plan.dt
    total = gens[-1][1].stop
    if plan.scheme.distribution == "normal":
        p = plan.scheme.parameters(n_in, n_out)
        return _draw(gens, (n_out, n_in), dt), float(p["scale"]), float(p["loc"])
    w = np.empty((total, n_out, n_in), dtype=dt)
    for g, sl in gens:
        w[sl] = plan.scheme.sample(g, n_in, n_out, size=(sl.stop - sl.start,), dtype=dt)
    return w, 1.0, 0.0


def _affine(prod: np.ndarray, x: np.ndarray, scale: float, loc: float) -> np.ndarray:
    """``scale * (W0 x) + loc * (1^T x) 1`` given ``prod = W0 x`` (in place)."""
    if scale != 1.0:
        prod *= prod.dtype.type(scale)
    if loc != 0.0:
        prod += (loc * np.add.reduce(x, axis=1, dtype=np.float64, keepdims=True)).astype(prod.dtype)
    return prod


def _norm64(a: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of a ``(C, m)`` array in float64, safe against overflow."""
    nrm = np.sqrt(_sumsq(a))
    big = ~np.isfinite(nrm)
    if big.any():
        sub = a[big].astype(np.float64)
        m = np.max(np.abs(sub), axis=-1)
        nrm[big] = np.sqrt(np.sum((sub / m[:, None]) ** 2, axis=-1)) * m
    return nrm


def _phi(plan: _Plan, z: np.ndarray) -> np.ndarray:
    return np.asarray(plan.act.function(z), dtype=plan.dt)


def _dphi(plan: _Plan, z: np.ndarray) -> np.ndarray:
    return np.asarray(plan.act.derivative_function(z), dtype=plan.dt)


def _new_stats(C: int, L: int) -> dict[str, np.ndarray]:
    stats = {k: np.zeros((C, L)) for k in _STAT_KEYS}
    stats["_input_second"] = np.zeros(C)
    stats["_flush"] = np.zeros((C, L), dtype=bool)
    stats["_gflush"] = np.zeros((C, L), dtype=bool)
    stats["_dflush"] = np.zeros((C, L), dtype=bool)
    return stats


_TINY64 = float(np.finfo(np.float64).tiny)


def _flushed(x: np.ndarray, sq: np.ndarray) -> np.ndarray:
    r"""Rows of the contiguous ``(C, m)`` array ``x`` (with float64 sums of squares ``sq``) whose
    every entry is below the smallest normal number of ``x.dtype``, or whose float64 mean square
    is below float64's smallest normal.  Only candidate rows (mean square below the larger of
    the two thresholds, as :math:`\max_i x_i^2 \ge \overline{x^2}`) are scanned."""
    tiny = float(np.finfo(x.dtype).tiny)
    m = x.shape[1]
    out = np.zeros(x.shape[0], dtype=bool)
    cand = sq / m < max(tiny * tiny, _TINY64)
    if cand.any():
        sub = x[cand]
        out[cand] = (np.max(np.abs(sub), axis=-1) < tiny) | (sq[cand] / m < _TINY64)
    return out


def _forward_stats(out: dict[str, np.ndarray], j: int, z: np.ndarray, a: np.ndarray) -> None:
    """Record layer ``j + 1``'s forward statistics; ``z``, ``a`` have shape ``(C, n)`` (batch 1)
    or ``(C, n, B)``."""
    n = z.shape[1]
    zr = _rows(z)
    m = zr.shape[1]
    zs, zq = _sum(zr), _sumsq(zr)
    out["_flush"][:, j] = _flushed(zr, zq)
    if a is z:
        as_, aq = zs, zq
    else:
        ar = _rows(a)
        as_, aq = _sum(ar), _sumsq(ar)
    out["preactivation_mean"][:, j] = zs / m
    out["preactivation_second"][:, j] = zq / m
    out["activation_mean"][:, j] = as_ / m
    out["activation_second"][:, j] = aq / m
    if z.ndim == 2 or z.shape[2] == 1:
        out["preactivation_unit_std"][:, j] = _spread(zs, zq, m)
        out["activation_unit_std"][:, j] = _spread(as_, aq, m)
    else:
        z0 = np.ascontiguousarray(z[:, :, 0])
        a0 = z0 if a is z else np.ascontiguousarray(a[:, :, 0])
        out["preactivation_unit_std"][:, j] = _spread(_sum(z0), _sumsq(z0), n)
        out["activation_unit_std"][:, j] = _spread(_sum(a0), _sumsq(a0), n)


def _previous_second(stats: dict[str, np.ndarray], l: int) -> np.ndarray:
    """Per-replicate average of a_{l-1}^2 (the input's for l = 1)."""
    return stats["_input_second"] if l == 1 else stats["activation_second"][:, l - 2]


def _run_chunk(plan: _Plan, gens: list[tuple[np.random.Generator, slice]]) -> dict[str, np.ndarray]:
    """Simulate one chunk (consecutive whole blocks) and return its per-replicate statistics.

    Random numbers are drawn per block in this order: the inputs; per layer the weights (dense)
    or E (Gaussian), then the biases; the backward seed; per layer, top down, F (Gaussian).
    """
    if plan.engine == "gaussian" and plan.batch == 1:
        return _run_chunk_gaussian_vector(plan, gens)
    dt, B, widths = plan.dt, plan.batch, plan.widths
    L = len(widths) - 1
    C = gens[-1][1].stop
    stats = _new_stats(C, L)
    dense = plan.engine == "dense"
    a = _draw(gens, (widths[0], B), dt)
    if plan.input_std != 1.0:
        a *= dt.type(plan.input_std)
    stats["_input_second"][:] = _sumsq(_rows(a)) / (widths[0] * B)
    saved: list[tuple] = []  # per layer, what the backward pass needs
    dead = np.zeros(C, dtype=bool)  # replicates whose forward values stopped being finite
    for l in range(1, L + 1):
        n_in, n_out = widths[l - 1], widths[l]
        if dense:
            w, scale, loc = _draw_weights(plan, gens, n_in, n_out)
            z = _affine(np.matmul(w, a), a, scale, loc)
            back: tuple = (w, scale, loc)
        else:
            z, back = _gaussian_forward(plan, gens, l, a, dead)
        if plan.bias_std > 0.0:
            b = _draw(gens, (n_out, 1), dt)
            b *= dt.type(plan.bias_std)
            z += b
        a_next = _phi(plan, z)
        _forward_stats(stats, l - 1, z, a_next)
        dead |= ~(np.isfinite(stats["preactivation_second"][:, l - 1])
                  & np.isfinite(stats["activation_second"][:, l - 1]))
        saved.append(back + (a, z))
        a = a_next
    delta = _draw(gens, (widths[L], B), dt)
    for l in range(L, 0, -1):
        back = saved[l - 1]
        a_prev = back[-2]
        if dense:
            g = _affine(np.matmul(np.swapaxes(back[0], -1, -2), delta), delta, back[1], back[2])
        else:
            g = _gaussian_backward(plan, gens, l, back[:-2], delta)
        n_in, n_out = widths[l - 1], widths[l]
        stats["delta_second"][:, l - 1] = _sumsq(_rows(delta)) / (n_out * B)
        gr = _rows(g)
        gq = _sumsq(gr)
        stats["gradient_second"][:, l - 1] = gq / (n_in * B)
        stats["_gflush"][:, l - 1] = _flushed(gr, gq)
        if B == 1:
            wg = stats["delta_second"][:, l - 1] * _previous_second(stats, l)
        else:  # per example b: mean_i delta_ib^2 * mean_j a_jb^2, then the batch average
            dsq = _sumsq(_rows(np.swapaxes(delta, 1, 2)).reshape(C * B, n_out)) / n_out
            asq = _sumsq(_rows(np.swapaxes(a_prev, 1, 2)).reshape(C * B, n_in)) / n_in
            wg = _sum(np.ascontiguousarray((dsq * asq).reshape(C, B))) / B
        stats["weight_gradient_second"][:, l - 1] = wg
        del saved[l - 1:]
        if l > 1:
            delta = _dphi(plan, saved[l - 2][-1]) * g
            dr = _rows(delta)
            stats["_dflush"][:, l - 2] = _flushed(dr, _sumsq(dr)) & (gq > 0)
    return stats


def _run_chunk_gaussian_vector(plan: _Plan, gens: list[tuple[np.random.Generator, slice]],
                               ) -> dict[str, np.ndarray]:
    r"""The Gaussian shortcut for batch 1 on ``(C, n)`` arrays, :math:`O(n)` per layer.

    Forward :math:`z = s\|a\| e + \mu_w (\mathbf 1^\top a)\mathbf 1`; backward
    :math:`W^\top\delta = s[q (e^\top\delta) + \|\delta\|(f - q (q^\top f))] + \mu_w(\mathbf
    1^\top\delta)\mathbf 1` with :math:`q = a/\|a\|` (:math:`e_1` if :math:`a = 0`).  Norms and
    coefficients are computed in float64 from float64 sums; vectors stay in ``dtype``.
    """
    dt, widths = plan.dt, plan.widths
    L = len(widths) - 1
    C = gens[-1][1].stop
    big, tiny = float(np.finfo(dt).max), float(np.finfo(dt).tiny)
    stats = _new_stats(C, L)
    a = _draw(gens, (widths[0],), dt)
    if plan.input_std != 1.0:
        a *= dt.type(plan.input_std)
    sq = _sumsq(a)
    stats["_input_second"][:] = sq / widths[0]
    saved: list[tuple] = []
    for l in range(1, L + 1):
        n_out = widths[l]
        s, mu = plan.scale[l - 1], plan.loc[l - 1]
        nrm = np.sqrt(sq)
        redo = ~np.isfinite(nrm)
        if redo.any():
            nrm[redo] = _norm64(a[redo])
        e = _draw(gens, (n_out,), dt)
        fac = s * nrm
        z = e * fac.astype(dt)[:, None]
        over = (fac > big) & np.isfinite(fac)  # beyond dtype: decide entry by entry
        if over.any():
            z[over] = (e[over].astype(np.float64) * fac[over, None]).astype(dt)
        if mu != 0.0:
            z += (mu * _sum(a)).astype(dt)[:, None]
        if plan.bias_std > 0.0:
            b = _draw(gens, (n_out, 1), dt)[:, :, 0]
            b *= dt.type(plan.bias_std)
            z += b
        a_next = _phi(plan, z)
        _forward_stats(stats, l - 1, z, a_next)
        sq = stats["activation_second"][:, l - 1] * n_out
        saved.append((a, nrm, e, z))
        a = a_next
    delta = _draw(gens, (widths[L],), dt)
    dq = _sumsq(delta)
    for l in range(L, 0, -1):
        a_prev, nrm, e, _ = saved[l - 1]
        n_in, n_out = widths[l - 1], widths[l]
        s, mu = plan.scale[l - 1], plan.loc[l - 1]
        stats["delta_second"][:, l - 1] = dq / n_out
        stats["weight_gradient_second"][:, l - 1] = dq / n_out * _previous_second(stats, l)
        t = _dot(e, delta)
        dn = np.sqrt(dq)
        f = _draw(gens, (n_in,), dt)
        pos = nrm > 0
        safe = np.where(pos, nrm, 1.0)
        c = np.where(pos, s * (t - dn * _dot(a_prev, f) / safe), 0.0)  # g = s dn f + c q
        coef = c / safe
        g = f * (s * dn).astype(dt)[:, None]
        g += a_prev * coef.astype(dt)[:, None]
        mag = np.abs(coef)
        odd = (mag > big) | ((mag < tiny) & (mag > 0))  # c/|a| outside dtype's normal range
        if odd.any():  # form q = a/|a| first, in float64
            g[odd] = (f[odd] * (s * dn[odd])[:, None]
                      + a_prev[odd].astype(np.float64) / safe[odd, None] * c[odd, None]).astype(dt)
        if not pos.all():  # a = 0: q = e_1
            g[~pos, 0] = (s * t[~pos]).astype(dt)
        if mu != 0.0:
            g += (mu * _sum(delta)).astype(dt)[:, None]
        gq = _sumsq(g)
        stats["gradient_second"][:, l - 1] = gq / n_in
        stats["_gflush"][:, l - 1] = _flushed(g, gq)
        del saved[l - 1:]
        if l > 1:
            delta = _dphi(plan, saved[l - 2][-1]) * g
            dq = _sumsq(delta)
            stats["_dflush"][:, l - 2] = _flushed(delta, dq) & (gq > 0)
    return stats


def _gaussian_forward(plan: _Plan, gens: list[tuple[np.random.Generator, slice]], l: int,
                      a: np.ndarray, dead: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``Z = W A`` for Gaussian ``W`` and a batch ``A`` (C, n_in, B) via ``A = Q R``."""
    dt = plan.dt
    n_out = plan.widths[l]
    s, mu = plan.scale[l - 1], plan.loc[l - 1]
    a64 = a.astype(np.float64)
    if dead.any():  # values are garbage already; keep the linear algebra finite
        a64[dead] = 0.0
    qmat, r = np.linalg.qr(a64)  # (C, n_in, k), (C, k, B)
    k = qmat.shape[-1]
    e = _draw(gens, (n_out, k), dt)
    z64 = s * np.matmul(e.astype(np.float64), r)
    if mu != 0.0:
        z64 += mu * a64.sum(axis=1, keepdims=True)
    return z64.astype(dt), (qmat, e)


def _gaussian_backward(plan: _Plan, gens: list[tuple[np.random.Generator, slice]], l: int,
                       back: tuple, delta: np.ndarray) -> np.ndarray:
    r""":math:`W^\top \Delta` from the conditional law of ``W`` given the forward pass (batch)."""
    dt = plan.dt
    s, mu = plan.scale[l - 1], plan.loc[l - 1]
    n_in = plan.widths[l - 1]
    qmat, e = back
    d64 = delta.astype(np.float64)
    bad = ~np.isfinite(d64).reshape(d64.shape[0], -1).all(axis=-1)
    if bad.any():
        d64[bad] = 0.0
    _, cmat = np.linalg.qr(d64)                             # Delta = P C, C: (C, k', B)
    kp = cmat.shape[-2]
    f = _draw(gens, (n_in, kp), dt).astype(np.float64)
    y = np.matmul(f, cmat)                                  # G^T Delta in law, (C, n_in, B)
    y -= np.matmul(qmat, np.matmul(np.swapaxes(qmat, -1, -2), y))
    y += np.matmul(qmat, np.matmul(np.swapaxes(e.astype(np.float64), -1, -2), d64))
    g64 = s * y
    if mu != 0.0:
        g64 += mu * d64.sum(axis=1, keepdims=True)
    g = g64.astype(dt)
    if bad.any():
        g[bad] = np.nan  # keep the backward pass of those replicates marked non-finite
    return g


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------


def _check_dtype(dtype: object) -> str:
    if isinstance(dtype, str):
        return check_choice("dtype", dtype, DTYPES)
    try:
        name = np.dtype(dtype).name  # type: ignore[arg-type]
    except TypeError:
        raise fail_type("dtype", dtype, f"one of {list(DTYPES)} (or the NumPy dtype)") from None
    if name not in DTYPES:
        raise fail("dtype", dtype, f"one of {list(DTYPES)}{did_you_mean(name, DTYPES)}")
    return name


def _gaussian_pays(widths: tuple[int, ...], batch: int) -> bool:
    """The shortcut draws ``k n_out + k' n_in`` normals instead of ``n_out n_in``."""
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        if 2 * (min(batch, n_in) * n_out + min(batch, n_out) * n_in) > n_in * n_out:
            return False
    return True


def _block_size(engine: str, widths: tuple[int, ...], itemsize: int) -> int:
    if engine != "dense":
        return BLOCK_SIZE
    per_replicate = itemsize * sum(i * o for i, o in zip(widths[:-1], widths[1:]))
    return int(min(BLOCK_SIZE, max(1, DENSE_BLOCK_BYTES // per_replicate)))


def _bytes_per_replicate(engine: str, widths: tuple[int, ...], batch: int, itemsize: int) -> int:
    acts = sum(widths) * batch * (3 * itemsize + 3 * 8)  # a, z, delta + float64 temporaries
    if engine == "dense":
        return acts + itemsize * sum(i * o for i, o in zip(widths[:-1], widths[1:]))
    k = min(batch, max(widths))
    return acts + 8 * 2 * k * sum(widths)


def _work_per_replicate(engine: str, widths: tuple[int, ...], batch: int) -> float:
    """Work units (random numbers and multiply-adds) of one replicate, forward and backward."""
    pairs = list(zip(widths[:-1], widths[1:]))
    if engine == "dense":
        return float(sum(i * o for i, o in pairs)) * (1.0 + 2.0 * batch) + 8.0 * batch * sum(widths)
    if batch == 1:
        return 8.0 * sum(widths)
    total = 0.0
    for i, o in pairs:  # draws, two thin QRs and the products of the conditional law
        k, kp = min(batch, i), min(batch, o)
        total += (k * o + kp * i) + 2.0 * (i * k * k + o * kp * kp) + 4.0 * batch * (i * k + o * k)
    return total + 8.0 * batch * sum(widths)


def resource_estimate(engine: str, widths: tuple[int, ...], batch: int, replicates: int,
                      itemsize: int = 8) -> tuple[float, float]:
    r"""``(bytes, seconds)`` a simulation needs at least, before anything is allocated.

    Bytes: the smallest working set -- one block of replicates
    (:math:`\approx` ``block * (sum(widths) * batch * (3 * itemsize + 24) + weights)``, the dense
    engine's weights :math:`\sum_l n_{l-1} n_l` entries per replicate, the Gaussian engine's
    :math:`16 k \sum_l n_l`, :math:`k = \min(B, \max_l n_l)`) -- plus the results,
    about 232 bytes per replicate and layer (statistics, masks and their concatenation).
    Seconds: work units (random numbers and multiply-adds, :func:`_work_per_replicate`) over
    :data:`WORK_RATE`.  Both are estimates (exact up to a small factor), computed in floating
    point so that no size overflows.
    """
    ws = tuple(int(w) for w in widths)
    L = len(ws) - 1
    if engine == "dense":
        weights = float(itemsize) * sum(float(i) * o for i, o in zip(ws[:-1], ws[1:]))
        block = float(min(BLOCK_SIZE, max(1.0, DENSE_BLOCK_BYTES // max(weights, 1.0))))
        per = float(sum(ws)) * batch * (3 * itemsize + 24) + weights
    else:
        block = float(BLOCK_SIZE)
        per = float(sum(ws)) * batch * (3 * itemsize + 24) + 16.0 * min(batch, max(ws)) * sum(ws)
    results = float(replicates) * (232.0 * L + 64.0)
    work = float(replicates) * _work_per_replicate(engine, ws, batch)
    return min(float(replicates), block) * per + results, work / WORK_RATE


def _check_resources(engine: str, widths: tuple[int, ...], batch: int, replicates: int,
                     itemsize: int, name: str = "replicates") -> None:
    """Refuse (before allocating) a run beyond :data:`MEMORY_LIMIT` or :data:`TIME_LIMIT`."""
    need, seconds = resource_estimate(engine, widths, batch, replicates, itemsize)
    shape = f"widths {_describe_widths(widths)}, batch {batch}, {replicates} replicates"
    if need > MEMORY_LIMIT:
        raise InvalidArgument(
            f"{name}={replicates} is not allowed: the simulation ({shape}, {engine} engine) would "
            f"need about {_bytes(need)} of memory, "
            f"more than varprop.simulation.montecarlo.MEMORY_LIMIT = {_bytes(MEMORY_LIMIT)}: reduce the "
            f"widths, batch or {name} (or raise the limit if the machine has the memory)")
    if seconds > TIME_LIMIT:
        raise InvalidArgument(
            f"{name}={replicates} is not allowed: the simulation ({shape}, {engine} engine) "
            f"would take about {seconds:.3g} s ({seconds / 3600:.3g} h at "
            f"{WORK_RATE:.2g} work units/s), more than varprop.simulation.montecarlo.TIME_LIMIT = "
            f"{TIME_LIMIT:g} s: use fewer replicates, or run several seeds separately")


def _describe_widths(ws: tuple[int, ...]) -> str:
    if len(ws) > 2 and len(set(ws[1:])) == 1:
        return f"{ws[0]}->{ws[1]} x {len(ws) - 1}"
    return str(list(ws))


def _bytes(n: float) -> str:
    for unit, size in (("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.3g} bytes"


def simulate(
    activation: str | Activation,
    init: str | InitScheme,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: list[int] | tuple[int, ...] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    replicates: int = DEFAULT_REPLICATES,
    batch: int = 1,
    seed: int | None = 0,
    dtype: DType = "float64",
    engine: Engine = "auto",
    chunk_size: int | None = None,
    progress: bool | Callable[[int, int], object] = False,
) -> SimulationResult:
    r"""Simulate ``replicates`` independent random networks, forward and backward.

    Parameters
    ----------
    activation : str or Activation
        :math:`\phi` (``varprop.activation_names()``).
    init : str or InitScheme
        The weight scheme (``varprop.scheme_names()``).
    fan_in, fan_out, widths, depth
        Network shape: ``widths = [n_0, ..., n_L]``, or ``n_0 = fan_in`` and
        ``n_1 = ... = n_L = fan_out`` (default ``fan_in``) with ``depth = L``.
    input_variance : float
        Inputs :math:`x_j \sim N(0, \text{input\_variance})` i.i.d. (zero mean).
    bias_variance : float
        Biases :math:`b_{l,i} \sim N(0, \text{bias\_variance})` i.i.d., one vector per network.
    replicates : int
        Number of independent networks (default :data:`DEFAULT_REPLICATES` = 1000).
    batch : int
        Inputs per network; statistics average over them (per-example weight gradients).
    seed : int or None
        Seed of ``numpy.random.SeedSequence``; ``None`` draws fresh entropy (recorded in
        ``result.seed``).  The same seed gives bit-identical results for any ``chunk_size``.
    dtype : {"float64", "float32"}
        Arithmetic precision of the network (statistics are accumulated in float64).
    engine : {"auto", "dense", "gaussian"}
        ``"dense"`` samples full weight matrices (any scheme); ``"gaussian"`` the exact
        :math:`O(n)` shortcut for normal weights (any mean); ``"auto"``: ``"gaussian"`` when the
        scheme is normal and the batch is small against the widths, else ``"dense"``.
    chunk_size : int, optional
        Replicates processed at once (rounded up to a multiple of ``block_size``); default from
        :data:`MEMORY_BUDGET`.  Does not change the result.
    progress : bool or callable
        ``True`` shows a ``tqdm`` bar (if installed); a callable is called as
        ``progress(done, total)`` after every chunk.

    Returns
    -------
    SimulationResult
        See :data:`QUANTITIES` and :meth:`SimulationResult.per_replicate`.

    Raises
    ------
    InvalidArgument, InvalidArgumentType
        For a bad argument (named in the message, with the allowed values), including
        ``engine="gaussian"`` with a non-normal scheme, and -- before anything is allocated --
        for a run that would need more than :data:`MEMORY_LIMIT` bytes (its smallest working
        set, one block of replicates, plus the results) or an estimated run time above
        :data:`TIME_LIMIT` seconds (work at :data:`WORK_RATE` units per second, see
        :func:`resource_estimate`): the message gives the estimate and the limit.  Both limits
        are module attributes a caller may raise.

    Notes
    -----
    Assumptions: the model of the module docstring (i.i.d. zero-mean Gaussian inputs, independent
    Gaussian biases, backward seed independent of the forward pass).  The dense engine draws
    non-normal weights with :meth:`~varprop.components.schemes.InitScheme.sample`; for normal schemes it
    draws the same standard normals and applies :math:`W = \mu_w + s W_0` to the products
    :math:`W_0 a`, :math:`W_0^\top\delta` (equal in law, one pass over the weights fewer).
    Memory: about :data:`MEMORY_BUDGET` bytes per chunk; the dense engine keeps each replicate's
    weight matrices for the backward pass (at least one replicate's worth).

    Examples
    --------
    >>> res = simulate("relu", "he_normal", fan_in=64, depth=5, replicates=256, seed=1)
    >>> res.per_replicate("preactivation_second").shape
    (256, 5)
    >>> res.engine
    'gaussian'
    """
    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    ws = check_widths(fan_in, fan_out, widths, depth)
    input_variance = check_nonnegative_real("input_variance", input_variance)
    bias_variance = check_nonnegative_real("bias_variance", bias_variance)
    replicates = check_positive_int("replicates", replicates)
    batch = check_positive_int("batch", batch)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    else:
        seed = check_nonnegative_int("seed", seed)
    dtype_name = _check_dtype(dtype)
    engine_req = check_choice("engine", engine, ENGINES)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise fail_type("progress", progress, "a bool or a callable progress(done, total)")

    gaussian_ok = scheme.is_gaussian
    if engine_req == "gaussian" and not gaussian_ok:
        raise fail("engine", engine, f"'auto' or 'dense' for the non-Gaussian scheme {scheme!r} "
                   "(the shortcut needs i.i.d. normal weights)")
    if engine_req == "auto":
        used = "gaussian" if gaussian_ok and _gaussian_pays(ws, batch) else "dense"
    else:
        used = engine_req
    dt = np.dtype(dtype_name)
    _check_resources(used, ws, batch, replicates, dt.itemsize)
    loc, scale = [], []
    for n_in, n_out in zip(ws[:-1], ws[1:]):
        if used == "gaussian":
            p = scheme.parameters(n_in, n_out)
            loc.append(float(p["loc"]))
            scale.append(float(p["scale"]))
        else:
            scheme.moments(n_in, n_out)  # validates early (and warms the cache)
    plan = _Plan(act, scheme, ws, batch, dt, used, math.sqrt(input_variance),
                 math.sqrt(bias_variance), tuple(loc), tuple(scale), _derivative_never_zero(act))

    block = _block_size(used, ws, dt.itemsize)
    n_blocks = -(-replicates // block)
    if chunk_size is None:
        per = _bytes_per_replicate(used, ws, batch, dt.itemsize)
        # dense: a smaller working set (no gain from stacking big matrices; fewer page faults)
        budget = DENSE_BLOCK_BYTES if used == "dense" else MEMORY_BUDGET
        blocks_per_chunk = max(1, budget // (per * block))
    else:
        blocks_per_chunk = -(-chunk_size // block)
    blocks_per_chunk = min(blocks_per_chunk, n_blocks)
    chunk = blocks_per_chunk * block

    children = np.random.SeedSequence(seed).spawn(n_blocks)
    bar = None
    if progress is True:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=replicates, desc="simulate", unit="replicate")
        except ImportError:  # optional dependency
            bar = None
    t0 = time.perf_counter()
    try:
        parts = _run_chunks(plan, children, replicates, block, blocks_per_chunk, n_blocks, bar,
                            progress)
    except MemoryError:  # the estimate of _check_resources was too optimistic for this machine
        need, _ = resource_estimate(used, ws, batch, replicates, dt.itemsize)
        raise VarpropError(
            f"the simulation ran out of memory (estimated need {_bytes(need)}, chunks of {chunk} "
            f"replicates): pass a smaller chunk_size, or reduce replicates, widths or batch"
        ) from None
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    stats = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    return _finish(plan, stats, act, scheme, ws, input_variance, bias_variance, replicates, batch,
                   seed, dtype_name, used, engine_req, chunk, block, elapsed)


def _run_chunks(plan: _Plan, children: list[np.random.SeedSequence], replicates: int, block: int,
                blocks_per_chunk: int, n_blocks: int, bar: object,
                progress: bool | Callable[[int, int], object]) -> list[dict[str, np.ndarray]]:
    """Simulate the chunks one after the other (block ``j`` from stream ``children[j]``)."""
    parts: list[dict[str, np.ndarray]] = []
    done = 0
    with np.errstate(all="ignore"), single_threaded_blas():
        for first in range(0, n_blocks, blocks_per_chunk):
            gens: list[tuple[np.random.Generator, slice]] = []
            start = 0
            for j in range(first, min(first + blocks_per_chunk, n_blocks)):
                size = min(block, replicates - j * block)
                gens.append((np.random.default_rng(children[j]), slice(start, start + size)))
                start += size
            parts.append(_run_chunk(plan, gens))
            done += start
            if bar is not None:
                bar.update(start)  # type: ignore[attr-defined]
            elif callable(progress) and not isinstance(progress, (bool, np.bool_)):
                progress(done, replicates)
    return parts


def _derivative_never_zero(act: Activation) -> bool:
    r"""True when :math:`\phi'(z) = 0` has probability 0 for continuous :math:`z`: no kinks (so
    no flat pieces, as ReLU's) and :math:`\phi'` not identically 0.  Then a back-propagated
    :math:`\delta_{l-1} = \phi'(z_{l-1}) \odot g_l` that flushes to zero while :math:`g_l`
    does not is an underflow (e.g. :math:`\tanh'(z) < 10^{-308}` at :math:`|z| > 355`), never a
    genuine zero."""
    if act.kinks:
        return False
    try:
        return bool(act.derivative != 0)
    except Exception:  # an expression SymPy cannot decide: be conservative  # noqa: BLE001
        return False


def _first_true(bad: np.ndarray) -> np.ndarray:
    """1-based index of the first True per row, 0 if none."""
    anyb = bad.any(axis=1)
    return np.where(anyb, bad.argmax(axis=1) + 1, 0)


def _last_true(bad: np.ndarray) -> np.ndarray:
    """1-based index of the last True per row, 0 if none."""
    L = bad.shape[1]
    anyb = bad.any(axis=1)
    return np.where(anyb, L - bad[:, ::-1].argmax(axis=1), 0)


def _finish(plan: _Plan, stats: dict[str, np.ndarray], act: Activation, scheme: InitScheme,
            ws: tuple[int, ...], input_variance: float, bias_variance: float, replicates: int,
            batch: int, seed: int, dtype_name: str, used: str, engine_req: str, chunk: int,
            block: int, elapsed: float) -> SimulationResult:
    # underflow: every |z_l| below the smallest normal number of dtype (or the float64 mean
    # square below float64's), although the layer's input was not identically zero
    L = len(ws) - 1
    fwd_bad = np.zeros((replicates, L), dtype=bool)
    for k in FORWARD_QUANTITIES:
        fwd_bad |= ~np.isfinite(stats[k])
    prev = np.column_stack([stats["_input_second"], stats["activation_second"][:, :-1]])
    flush = stats["_flush"] & (prev > 0)
    nonfinite = _first_true(fwd_bad)
    # an underflow counts only before the first non-finite layer (after it the engine zeroes the
    # replicate's activations, which would look like a flush to zero)
    after_overflow = np.cumsum(fwd_bad, axis=1) > 0
    underflow = _first_true(flush & ~after_overflow)
    bwd_bad = np.zeros((replicates, L), dtype=bool)
    for k in BACKWARD_QUANTITIES:
        bwd_bad |= ~np.isfinite(stats[k])
    g_flush = stats["_gflush"] & (stats["delta_second"] > 0)
    if plan.derivative_never_zero:  # delta_{l-1} = phi'(z) g_l flushed although g_l did not
        g_flush |= stats["_dflush"]
    fwd_ok = (nonfinite == 0) & (underflow == 0)
    # the backward pass of a replicate whose forward pass was invalid is not assessed (-1)
    g_nonfinite = np.where(fwd_ok, _last_true(bwd_bad), -1)
    g_underflow = np.where(fwd_ok, _last_true(g_flush & ~bwd_bad), -1)
    layer = np.arange(1, L + 1)[None, :]

    def before(first: np.ndarray) -> np.ndarray:
        return (first[:, None] == 0) | (layer < first[:, None])

    def after(first: np.ndarray) -> np.ndarray:
        return (first[:, None] == 0) | (layer > first[:, None])

    valid = before(nonfinite) & before(underflow)
    gvalid = fwd_ok[:, None] & after(g_nonfinite) & after(g_underflow)
    public = {k: stats[k] for k in QUANTITIES}
    for k in QUANTITIES:  # keep invalid entries NaN-free behind the mask
        mask = gvalid if k in BACKWARD_QUANTITIES else valid
        public[k] = np.where(mask, public[k], 0.0)
        public[k].setflags(write=False)
    input_second = np.array(stats["_input_second"], dtype=float)
    for arr in (nonfinite, underflow, g_nonfinite, g_underflow, valid, gvalid, input_second):
        arr.setflags(write=False)
    return SimulationResult(
        activation=act, init=scheme, widths=ws, input_variance=input_variance,
        bias_variance=bias_variance, replicates=replicates, batch=batch, seed=seed,
        dtype=dtype_name, engine=used, engine_requested=engine_req, chunk_size=chunk,
        block_size=block, elapsed=elapsed, _stats=public,
        nonfinite_layer_per_replicate=nonfinite, underflow_layer_per_replicate=underflow,
        gradient_nonfinite_layer_per_replicate=g_nonfinite,
        gradient_underflow_layer_per_replicate=g_underflow, valid=valid, gradient_valid=gvalid,
        input_second=input_second)
