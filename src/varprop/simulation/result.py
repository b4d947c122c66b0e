r"""The result of :func:`varprop.simulate`: per-replicate statistics, their validity masks and estimates.

Two families of statistics (per replicate: averages over units and batch samples):

- for every network, per layer position :math:`p = 1, \dots, P` (``net.layers`` order), the
  output :math:`y_p`: ``output_mean`` :math:`\overline{y_p}`, ``output_second``
  :math:`\overline{y_p^2}`, ``output_unit_std`` (spread over units of the first sample) and
  ``output_gradient_second`` :math:`\overline{(\partial L/\partial y_p)^2}` with the backward
  pass seeded by i.i.d. :math:`N(0, 1)` loss gradients at the last output
  (:data:`OUTPUT_QUANTITIES`, masks :attr:`SimulationResult.output_valid`,
  :attr:`SimulationResult.output_gradient_valid`); the general engine also records them per
  tensor position (:meth:`SimulationResult.per_position`);
- for MLP-shaped networks (``Network.mlp``), per ``Dense`` layer :math:`l = 1, \dots, L`, the MLP
  statistics :data:`QUANTITIES` with their meaning of :func:`varprop.simulate` (backward seed
  :math:`\delta_L = \partial L/\partial z_L` i.i.d. :math:`N(0, 1)`; masks
  :attr:`SimulationResult.valid`, :attr:`SimulationResult.gradient_valid`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from varprop._util.validation import check_choice, fail, fail_type
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import SimulationOverflowError, VarpropError
from varprop.network.model import Network
from varprop.network.quantities import QUANTITIES as _PREDICTED
from varprop.network.quantities import spec as _quantity_spec

__all__ = ["SimulationResult", "QUANTITIES", "FORWARD_QUANTITIES", "BACKWARD_QUANTITIES",
           "OUTPUT_QUANTITIES", "ESTIMATES"]

#: Forward statistics of MLP-shaped networks, per Dense layer (mask ``valid``).
FORWARD_QUANTITIES: tuple[str, ...] = (
    "preactivation_mean",
    "preactivation_second",
    "activation_mean",
    "activation_second",
    "preactivation_unit_std",
    "activation_unit_std",
)
#: Backward statistics of MLP-shaped networks (mask ``gradient_valid``).
BACKWARD_QUANTITIES: tuple[str, ...] = ("gradient_second", "delta_second", "weight_gradient_second")
#: Every MLP statistic.
QUANTITIES: tuple[str, ...] = FORWARD_QUANTITIES + BACKWARD_QUANTITIES
#: Statistics of every network, per layer position (masks ``output_valid``,
#: ``output_gradient_valid``).
OUTPUT_FORWARD: tuple[str, ...] = ("output_mean", "output_second", "output_unit_std")
OUTPUT_QUANTITIES: tuple[str, ...] = OUTPUT_FORWARD + ("output_gradient_second",)
#: Quantities of :meth:`SimulationResult.estimate` (the vocabulary of ``predict_variance``,
#: defined once in :mod:`varprop.network.quantities`); :meth:`SimulationResult.per_replicate` and the
#: other accessors accept them too, as aliases of the statistic that estimates them.
ESTIMATES: tuple[str, ...] = _PREDICTED


@dataclass(frozen=True, eq=False, repr=False)
class SimulationResult:
    r"""Per-replicate statistics of a simulation (returned by :func:`varprop.simulate`).

    Every network has the statistics :data:`OUTPUT_QUANTITIES` per layer position
    :math:`p = 1, \dots, P` (column ``p - 1``; see the module docstring).  MLP-shaped networks
    also have the MLP statistics: layers are numbered :math:`1, \dots, L` (``depth``, the
    ``Dense`` layers); column ``l - 1`` of every per-replicate array is layer ``l``.  The recorded
    quantities (:data:`QUANTITIES`) are, per replicate and layer, averages over the units and the
    batch samples:

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
    network : Network
        The simulated network.
    activation, init : Activation, InitScheme, or None
        Those of an MLP-shaped network (``None`` otherwise).
    widths : tuple of int or None
        :math:`(n_0, \dots, n_L)` of an MLP-shaped network (``None`` otherwise).
    depth : int
        :math:`L` (``Dense`` layers) of an MLP-shaped network, else the number of positions
        :math:`P`.
    replicates, batch, seed : int
    input_variance, bias_variance : float
    dtype : {"float32", "float64"}
    engine : {"gaussian", "dense", "general"}
        The engine used; ``engine_requested`` is what was asked for.
    chunk_size, block_size : int
        Replicates per chunk (memory) and per random stream (reproducibility).
    elapsed : float
        Wall-clock seconds.
    valid, gradient_valid : ndarray of bool, shape (replicates, depth)
        Where forward / backward statistics are valid (for a network that is not an MLP, the
        same as ``output_valid`` / ``output_gradient_valid``).
    output_valid, output_gradient_valid : ndarray of bool, shape (replicates, P)
        Where ``output_*`` / ``output_gradient_second`` are valid: the rules of the MLP
        statistics applied per position (an all-zero output of a ``Dense`` layer from a non-zero
        input is an underflow; a gradient flushed to zero by a ``Dense`` layer, or by an activation
        whose derivative vanishes only on a null set, is an underflow).
    input_second : ndarray, shape (replicates,)
        The realised input's :math:`\overline{x^2}` per replicate (units and batch): what layer 1's
        one-step map is conditioned on.
    nonfinite_layer_per_replicate, underflow_layer_per_replicate : ndarray of int
        (Layer: the MLP's layer, or the position for a network that is not an MLP.) First forward layer (1-based) with a non-finite value / an underflow; 0 = never.
    gradient_nonfinite_layer_per_replicate, gradient_underflow_layer_per_replicate : ndarray of int
        First layer *in backward order* (the largest ``l``) where a backward statistic
        (:math:`g_l`, :math:`\delta_l`, :math:`\partial L/\partial W_l`) stopped being finite /
        :math:`g_l` flushed to zero; 0 = never; -1 = not assessed because the replicate's forward
        pass was invalid (then all its backward statistics are invalid), or because the backward
        pass did not run (``simulate(..., backward=False)``, see ``backward_recorded``).
    overflow_layer, underflow_layer, gradient_overflow_layer, gradient_underflow_layer : int or None
        The same over all replicates (forward: smallest; backward: largest); ``None`` if never.
    """

    activation: Activation | None
    init: InitScheme | None
    widths: tuple[int, ...] | None
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
    network: Network = field(repr=False)
    output_valid: np.ndarray = field(repr=False)
    output_gradient_valid: np.ndarray = field(repr=False)
    #: Whether ``output_gradient_second`` was recorded: ``simulate(net, ...)`` with a Network records
    #: it; the keyword form records the MLP statistics only (a second backward pass, seeded at the
    #: last output, would cost about a third more time on the Gaussian shortcut), and neither
    #: records it with ``backward=False``.
    output_gradient_recorded: bool = field(default=True, repr=False)
    #: Whether the backward pass ran (``simulate(..., backward=False)`` records the forward
    #: statistics only).
    backward_recorded: bool = field(default=True, repr=False)
    #: Per layer position, ``(replicates, *positions)`` arrays of ``output_second`` and
    #: ``output_gradient_second`` per tensor position (general engine only; see
    #: :meth:`per_position`).
    _positions: dict[str, tuple[np.ndarray, ...]] | None = field(default=None, repr=False)

    QUANTITIES = QUANTITIES
    OUTPUT_QUANTITIES = OUTPUT_QUANTITIES
    ESTIMATES = ESTIMATES

    # ----- summary attributes ---------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of layers :math:`L` of an MLP-shaped network, else of layer positions."""
        return len(self.widths) - 1 if self.widths is not None else self.positions

    @property
    def positions(self) -> int:
        """Number of layer positions :math:`P` (``network.layers.size``)."""
        return int(self.output_valid.shape[1])

    @property
    def is_mlp(self) -> bool:
        """True when the MLP statistics (:data:`QUANTITIES`) were recorded."""
        return self.widths is not None

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
        """First layer of the backward pass (largest ``l``) with a non-finite gradient, or ``None``
        (:class:`~varprop.VarpropError` if the backward pass did not run)."""
        return _first(self._backward_field("gradient_overflow_layer",
                                           self.gradient_nonfinite_layer_per_replicate), max)

    @property
    def gradient_underflow_layer(self) -> int | None:
        """First layer of the backward pass (largest ``l``) where a gradient flushed to zero
        (:class:`~varprop.VarpropError` if the backward pass did not run)."""
        return _first(self._backward_field("gradient_underflow_layer",
                                           self.gradient_underflow_layer_per_replicate), max)

    def _backward_field(self, name: str, values: np.ndarray) -> np.ndarray:
        if not self.backward_recorded:
            raise VarpropError(f"{name} is not known: this simulation ran the forward pass only "
                               "(simulate(..., backward=False))")
        return values

    @property
    def scheme(self) -> InitScheme:
        """Alias of :attr:`init`."""
        return self.init

    # ----- access ---------------------------------------------------------------------------
    def _check_quantity(self, quantity: object) -> str:
        """A raw statistic name (:data:`QUANTITIES`, :data:`OUTPUT_QUANTITIES`), or a
        ``predict_variance`` quantity (:data:`ESTIMATES`) mapped to the statistic whose replicate
        mean is its second moment."""
        if isinstance(quantity, str) and quantity in _PREDICTED:
            q = _quantity_spec(quantity).second
        else:
            q = check_choice("quantity", quantity, QUANTITIES + OUTPUT_QUANTITIES + _PREDICTED)
        self._refuse_backward(quantity, q)
        if q == "output_gradient_second" and not self.output_gradient_recorded:
            raise fail("quantity", quantity, "a statistic this simulation recorded: the keyword form "
                       "of simulate records the MLP statistics (gradient_second, ...); pass a "
                       "Network, simulate(Network.mlp(...), ...), for output_gradient")
        if q not in self._stats:
            raise fail("quantity", quantity, f"one of {list(OUTPUT_QUANTITIES)} for this network "
                       "(the MLP statistics need an MLP-shaped network: Dense and activation "
                       "layers alternating, one activation, one init scheme, one bias variance)")
        return q

    def _refuse_backward(self, quantity: object, statistic: str) -> None:
        """Refuse ``quantity`` (whose statistic is ``statistic``) if it needs the backward pass
        and this simulation ran forward only."""
        if not self.backward_recorded and (statistic in BACKWARD_QUANTITIES
                                           or statistic == "output_gradient_second"):
            raise fail("quantity", quantity, "a forward statistic: this simulation ran the forward "
                       "pass only (simulate(..., backward=False)); simulate with backward=True "
                       "for the gradients")

    def _per_replicate_name(self, quantity: object) -> str:
        r""":meth:`_check_quantity`, refusing a variance quantity (``preactivation``,
        ``activation``) whose mean is not zero by symmetry: then the replicate mean of
        :math:`\overline{x^2}` is :math:`E x^2`, not the variance ``predict_variance`` means by
        that name (ReLU: 1.0 against 0.68), and a silent mismatch is worse than an error."""
        if quantity in ("preactivation", "activation"):
            assert self.init is not None and self.activation is not None  # MLP statistics
            zero_mean = self.init.is_zero_mean and (
                quantity == "preactivation" or self.activation.traits.odd)
            if not zero_mean:
                other = "activation_second_moment" if quantity == "activation" else "preactivation_second"
                raise fail("quantity", quantity, f"a quantity whose replicate mean is what "
                           f"predict_variance predicts: with {self.activation.name} and "
                           f"{self.init.name} E[x] != 0, so Var is not a per-replicate mean; use "
                           f"{other!r} for E[x^2], or estimate({quantity!r}) for the variance")
        return self._check_quantity(quantity)

    def _layer_index(self, layer: object, quantity: str) -> int | None:
        if layer is None:
            return None
        L = self._stats[quantity].shape[1]
        if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
            raise fail_type("layer", layer, f"an integer 1..{L} (or -1 for the last layer)")
        if 1 <= layer <= L:
            return int(layer) - 1
        if -L <= layer <= -1:
            return L + int(layer)
        raise fail("layer", layer, f"a layer 1..{L} (1-based) or -{L}..-1 (from the end)")

    def valid_mask(self, quantity: str) -> np.ndarray:
        """Boolean array ``(replicates, depth)``: where ``quantity`` is valid."""
        q = self._check_quantity(quantity)
        if q in OUTPUT_QUANTITIES:
            return self.output_gradient_valid if q == "output_gradient_second" else self.output_valid
        return self.gradient_valid if q in BACKWARD_QUANTITIES else self.valid

    def count(self, quantity: str) -> np.ndarray:
        """Number of valid replicates per layer (or position), shape ``(depth,)`` (``(P,)``)."""
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
        j = self._layer_index(layer, q)
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
            backward = (f", gradient_overflow_layer={self.gradient_overflow_layer}"
                        if self.backward_recorded else "")
            raise SimulationOverflowError(
                f"{q}: {int((~mask).sum())} requested entries are invalid (first: replicate {r}, "
                f"layer {l}; overflow_layer={self.overflow_layer}, underflow_layer="
                f"{self.underflow_layer}{backward}); pass valid_only=True or use masked()")
        return values.copy()

    def per_position(self, quantity: str, layer: int, *, valid_only: bool = False) -> np.ndarray:
        r"""``output_second`` (:math:`\overline{y_p^2}`) or ``output_gradient_second`` at layer
        position ``layer`` (1-based, negative from the end) per *tensor position*: an array
        ``(replicates, *positions)``, averaged over the channels and the batch (the positions of
        :class:`~varprop.network.field.Field`).  Recorded by the general engine
        (``result.engine == "general"``).  Invalid replicates raise
        :class:`SimulationOverflowError` unless ``valid_only`` (then they are left out)."""
        q = check_choice("quantity", quantity, ("output_second", "output_gradient_second"))
        if self._positions is None:
            raise fail("quantity", quantity, "a statistic this simulation recorded: per-position "
                       "statistics come from the general engine (simulate(net, engine='general'))")
        j = self._layer_index(layer, q)
        if j is None:
            raise fail_type("layer", layer, "an integer layer position")
        values, mask = self._positions[q][j], self.valid_mask(q)[:, j]
        if valid_only:
            return values[mask].copy()
        if not mask.all():
            raise SimulationOverflowError(
                f"{q}: {int((~mask).sum())} replicates are invalid at layer position {j + 1}; "
                "pass valid_only=True")
        return values.copy()

    def masked(self, quantity: str, layer: int | None = None) -> np.ma.MaskedArray:
        """``quantity`` as a masked array (invalid entries masked; their data set to 0)."""
        q = self._per_replicate_name(quantity)
        j = self._layer_index(layer, q)
        values, mask = self._stats[q], self.valid_mask(q)
        if j is not None:
            values, mask = values[:, j], mask[:, j]
        return np.ma.MaskedArray(np.where(mask, values, 0.0), mask=~mask)

    def _columns(self, quantity: str, layer: int | None, valid_only: bool) -> list[np.ndarray]:
        q = self._check_quantity(quantity)
        j = self._layer_index(layer, q)
        if not valid_only:
            arr = self.per_replicate(q, layer)
            return [arr] if j is not None else [arr[:, i] for i in range(arr.shape[1])]
        cols = [j] if j is not None else range(self._stats[q].shape[1])
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
        and independent); ``"weight_gradient"``: :math:`\widehat{E (\partial L/\partial W_l)^2}`;
        in general the statistic of :mod:`varprop.network.quantities` for the quantity, minus the
        squared mean statistic for a variance.
        """
        spec = _quantity_spec(check_choice("quantity", quantity, ESTIMATES))
        self._refuse_backward(quantity, spec.second)
        out = np.asarray(self.mean(spec.second, layer, valid_only=valid_only))
        if spec.first is not None:  # a variance: E x^2 - (E x)^2
            out = out - np.asarray(self.mean(spec.first, layer, valid_only=valid_only)) ** 2
        return float(out) if layer is not None else out

    def __repr__(self) -> str:
        what = (f"{self.activation!r}, {self.init!r}, widths={self.widths!r}" if self.is_mlp
                else repr(self.network))
        return (f"SimulationResult({what}, "
                f"replicates={self.replicates}, batch={self.batch}, dtype={self.dtype!r}, "
                f"engine={self.engine!r}, seed={self.seed}, overflow_layer={self.overflow_layer}, "
                f"underflow_layer={self.underflow_layer}, elapsed={self.elapsed:.3g}s)")


def _first(per_replicate: np.ndarray, pick: Callable[..., int]) -> int | None:
    hit = per_replicate[per_replicate > 0]
    return int(pick(hit)) if hit.size else None

