r"""The derivation of one activation for *any* init scheme: :func:`derive_generic`.

The steps of :func:`varprop.derive` depend on the scheme only through its weight moments
:math:`\mu_w` and :math:`\sigma_w^2` at the layer's fans.  Deriving with those moments left as the
symbols :math:`\mu_w` and :math:`\sigma_w^2` gives every scheme's derivation at once; a scheme's
own numbers follow by substituting its moments (:func:`scheme_moments`).  Two derivations cover
every scheme: zero-mean weights (:math:`\mu_w = 0`, one variance :math:`q_l` per layer) and a
non-zero weight mean (the :math:`(m, D, C)` moments; Glorot & Bengio 2010, Poole et al. 2016,
Schoenholz et al. 2017 for the zero-mean recursion).

Widths are constant (``widths="constant"``): layer 1 maps :math:`n_{in} \to n_{out}` with weight
moments :math:`\mu_{w,1}, \sigma_{w,1}^2`, layers :math:`2..L` map :math:`n_{out} \to n_{out}` with
:math:`\mu_w, \sigma_w^2` (the same symbols when :math:`n_{in} = n_{out}`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sympy as sp

from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.theory.symbolic._algebra import _weight_moments
from varprop.theory.symbolic.derivation import Derivation
from varprop.theory.symbolic.recursion import _Builder
from varprop.theory.symbolic.symbols import (
    MU_W,
    MU_W1,
    N_IN,
    N_OUT,
    SIGMA_W2,
    SIGMA_W2_1,
)

__all__ = ["derive_generic", "scheme_moments"]


class _Family:
    """The weight law of the symbolic scheme (what the assumptions quote)."""

    symmetric = True

    def summary(self) -> str:
        return "entries i.i.d. with mean mu_w and variance sigma_w^2"


class _SymbolicScheme:
    r"""A stand-in for an :class:`~varprop.InitScheme` whose weight mean and variance are
    symbols: :math:`\mu_w` (or 0) and :math:`\sigma_w^2` for a hidden layer (fan-in
    :math:`n_{out}`), :math:`\mu_{w,1}` and :math:`\sigma_{w,1}^2` for a layer with fan-in
    :math:`n_{in}` (layer 1)."""

    is_iid = True
    family = _Family()

    def __init__(self, zero_mean: bool) -> None:
        self.is_zero_mean = zero_mean
        self.is_symmetric = zero_mean

    def weight_mean(self, fan_in: Any, fan_out: Any) -> sp.Expr:
        if self.is_zero_mean:
            return sp.Integer(0)
        return MU_W if fan_in == N_OUT else MU_W1

    def weight_variance(self, fan_in: Any, fan_out: Any) -> sp.Expr:
        return SIGMA_W2 if fan_in == N_OUT else SIGMA_W2_1

    def __repr__(self) -> str:
        return "any scheme" + (" with zero-mean weights" if self.is_zero_mean else
                               " with a non-zero weight mean")


@lru_cache(maxsize=64)
def derive_generic(activation: Activation | str, zero_mean: bool = True, bias: bool = True
                   ) -> Derivation:
    r"""The derivation of ``activation`` in the symbols :math:`\sigma_w^2` (and :math:`\mu_w` with
    ``zero_mean=False``), :math:`\sigma_b^2` (with ``bias``), for constant hidden width.

    The same steps as :func:`varprop.derive` for a concrete scheme (the same builder), with the
    scheme's moments left symbolic; substituting a scheme's :func:`scheme_moments` into any
    expression gives that scheme's.
    """
    act = resolve_activation(activation)
    return _Builder(act, _SymbolicScheme(bool(zero_mean)), bool(bias), "constant").build()  # type: ignore[arg-type]


def scheme_moments(scheme: InitScheme | str) -> dict[sp.Symbol, sp.Expr]:
    r"""The symbols of :func:`derive_generic` mapped to ``scheme``'s weight moments: those of
    layer 1 (:math:`n_{in} \to n_{out}`) and of a hidden layer (:math:`n_{out} \to n_{out}`),
    for substitution into its expressions."""
    s = resolve_scheme(scheme)
    mu1, var1 = _weight_moments(s, N_IN, N_OUT)
    mu, var = _weight_moments(s, N_OUT, N_OUT)
    return {MU_W1: mu1, SIGMA_W2_1: var1, MU_W: mu, SIGMA_W2: var}
