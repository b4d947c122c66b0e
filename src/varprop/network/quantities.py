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
==============================  =========  ==============================================  ================================================

The per-replicate value of a quantity (:meth:`varprop.SimulationResult.per_replicate`) is the
unit (and batch) average of the squared signal, :math:`\overline{x^2}`: its mean over replicates
is the second moment :math:`E x^2`, which is the variance when the mean is zero.  For
``preactivation`` and ``activation`` the variance :math:`E x^2 - (E x)^2` also needs the
replicate averages :math:`\bar x` (``*_mean``); :meth:`varprop.SimulationResult.estimate` combines
them, and ``per_replicate`` accepts these two names only where the mean is zero by symmetry.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Quantity", "QUANTITY_SPECS", "QUANTITIES", "FORWARD", "BACKWARD", "spec"]


@dataclass(frozen=True)
class Quantity:
    """One predicted quantity: its ``name``, ``direction`` ("forward"/"backward"), the raw
    statistic whose replicate mean is its second moment (``second``) and, for a variance, the
    statistic of its first moment (``first``, else ``None``)."""

    name: str
    direction: str
    second: str
    first: str | None = None

    @property
    def backward(self) -> bool:
        return self.direction == "backward"


QUANTITY_SPECS: tuple[Quantity, ...] = (
    Quantity("preactivation", "forward", "preactivation_second", "preactivation_mean"),
    Quantity("activation", "forward", "activation_second", "activation_mean"),
    Quantity("activation_second_moment", "forward", "activation_second"),
    Quantity("gradient", "backward", "gradient_second"),
    Quantity("weight_gradient", "backward", "weight_gradient_second"),
)
#: The quantity names, in the order of :func:`varprop.predict_variance`'s documentation.
QUANTITIES: tuple[str, ...] = tuple(q.name for q in QUANTITY_SPECS)
FORWARD: tuple[str, ...] = tuple(q.name for q in QUANTITY_SPECS if not q.backward)
BACKWARD: tuple[str, ...] = tuple(q.name for q in QUANTITY_SPECS if q.backward)
_BY_NAME = {q.name: q for q in QUANTITY_SPECS}


def spec(name: str) -> Quantity:
    """The :class:`Quantity` called ``name`` (which must be one of :data:`QUANTITIES`)."""
    return _BY_NAME[name]
