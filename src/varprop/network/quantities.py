r"""The one vocabulary of predicted quantities, shared by predict, simulate, verify and the CLI.

Each quantity :func:`varprop.predict_variance` predicts has a direction (forward quantities are
reported at the last layer, backward ones at the first) and the per-replicate statistics of
:func:`varprop.simulate` that estimate it:

==============================  =========  ==============================================  ================================================
quantity                        direction  predicted (one unit, over networks and inputs)  simulated per-replicate statistic(s)
==============================  =========  ==============================================  ================================================
``preactivation``               forward    :math:`\operatorname{Var} z_l`                  ``preactivation_second`` (and ``preactivation_mean``)
``activation``                  forward    :math:`\operatorname{Var} a_l`                  ``activation_second`` (and ``activation_mean``)
``activation_second_moment``    forward    :math:`E a_l^2`                                 ``activation_second``
``gradient``                    backward   :math:`E (\partial L/\partial a_{l-1})^2`       ``gradient_second``
``weight_gradient``             backward   :math:`E (\partial L/\partial W_l)^2`           ``weight_gradient_second``
``output``                      forward    :math:`E y_p^2` (layer :math:`p`'s output)      ``output_second``
``output_gradient``             backward   :math:`E (\partial L/\partial y_p)^2`           ``output_gradient_second``
==============================  =========  ==============================================  ================================================

The first five are the MLP quantities (:data:`MLP_QUANTITIES`): "layer :math:`l`" is the
:math:`l`-th dense layer of an MLP-shaped network (:meth:`varprop.Network.as_mlp`), and the
backward pass is started at the last dense layer's output :math:`z_L`.  ``output`` and
``output_gradient`` (:data:`NETWORK_QUANTITIES`) exist for any network: one value per layer
position :math:`p` (every layer, dense or not, counts), the backward pass started with i.i.d.
zero-mean unit-variance gradients at the last layer's output.

Exactness (:meth:`Quantity.exact`): a second moment is exact at every finite width for
activations with ``traits.exact_at_finite_width`` (positively homogeneous of degree 1: linear,
ReLU, leaky ReLU, ``abs``) and zero-mean symmetric i.i.d. weights, or linear activations with
orthogonal weights; ``activation`` (a variance) only for linear activations.  Everything else is
exact only as the widths grow.

The per-replicate value of a quantity (:meth:`varprop.SimulationResult.per_replicate`) is the
unit (and batch) average of the squared signal, :math:`\overline{x^2}`: its mean over replicates
is the second moment :math:`E x^2`, which is the variance when the mean is zero.  For
``preactivation`` and ``activation`` the variance :math:`E x^2 - (E x)^2` also needs the
replicate averages :math:`\bar x` (``*_mean``); :meth:`varprop.SimulationResult.estimate` combines
them, and ``per_replicate`` accepts these two names only where the mean is zero by symmetry.
"""

from __future__ import annotations

from dataclasses import dataclass

from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme

__all__ = ["Quantity", "QUANTITY_SPECS", "QUANTITIES", "MLP_QUANTITIES", "NETWORK_QUANTITIES",
           "FORWARD", "BACKWARD", "spec"]


@dataclass(frozen=True)
class Quantity:
    """One predicted quantity: its ``name``, ``direction`` ("forward"/"backward"), the raw
    statistic whose replicate mean is its second moment (``second``) and, for a variance, the
    statistic of its first moment (``first``, else ``None``)."""

    name: str
    direction: str
    second: str
    first: str | None = None
    #: defined for MLP-shaped networks only ("layer l" is the l-th dense layer)
    mlp_only: bool = True
    #: exact at finite width only where the mean vanishes by symmetry (linear activations)
    needs_zero_mean: bool = False

    @property
    def backward(self) -> bool:
        return self.direction == "backward"

    def exact(self, act: Activation, scheme: InitScheme) -> bool:
        """Whether the mean-field prediction is exact at every finite width for this activation
        and init scheme (see the module docstring), decided from ``act.traits``."""
        traits = act.traits
        iid_symmetric = scheme.is_zero_mean and scheme.is_symmetric and scheme.is_iid
        orthogonal_linear = traits.linear and not scheme.is_iid
        if not (traits.exact_at_finite_width and (iid_symmetric or orthogonal_linear)):
            return False
        return traits.linear or not self.needs_zero_mean


QUANTITY_SPECS: tuple[Quantity, ...] = (
    Quantity("preactivation", "forward", "preactivation_second", "preactivation_mean"),
    Quantity("activation", "forward", "activation_second", "activation_mean", needs_zero_mean=True),
    Quantity("activation_second_moment", "forward", "activation_second"),
    Quantity("gradient", "backward", "gradient_second"),
    Quantity("weight_gradient", "backward", "weight_gradient_second"),
    Quantity("output", "forward", "output_second", mlp_only=False),
    Quantity("output_gradient", "backward", "output_gradient_second", mlp_only=False),
)
#: The quantity names, in the order of :func:`varprop.predict_variance`'s documentation.
QUANTITIES: tuple[str, ...] = tuple(q.name for q in QUANTITY_SPECS)
#: The quantities of MLP-shaped networks ("layer l" = the l-th dense layer).
MLP_QUANTITIES: tuple[str, ...] = tuple(q.name for q in QUANTITY_SPECS if q.mlp_only)
#: The quantities of any network (one value per layer position).
NETWORK_QUANTITIES: tuple[str, ...] = tuple(q.name for q in QUANTITY_SPECS if not q.mlp_only)
FORWARD: tuple[str, ...] = tuple(q.name for q in QUANTITY_SPECS if not q.backward)
BACKWARD: tuple[str, ...] = tuple(q.name for q in QUANTITY_SPECS if q.backward)
_BY_NAME = {q.name: q for q in QUANTITY_SPECS}


def spec(name: str) -> Quantity:
    """The :class:`Quantity` called ``name`` (which must be one of :data:`QUANTITIES`)."""
    return _BY_NAME[name]
