r"""``Dropout(p, *, mode="train")``: inverted dropout :math:`y = \frac{\xi}{1 - p}\, x`.

In train mode each entry is kept independently with probability :math:`1 - p`
(:math:`\xi \sim \text{Bernoulli}(1 - p)`, a fresh mask for every sample and position) and the kept
entries are scaled by :math:`1/(1 - p)` (PyTorch's ``nn.Dropout``; Srivastava et al. 2014,
"Dropout: a simple way to prevent neural networks from overfitting").  In eval mode it is the
identity.

Moment rule (train mode)
------------------------
With :math:`E\xi = 1 - p`, :math:`E\xi^2 = 1 - p` and the mask independent of :math:`x`:

.. math::

    E y = E x, \qquad E y^2 = \frac{E x^2}{1 - p}, \qquad
    E y_t y_{t'} = E x_t x_{t'}\ (t \ne t'), \qquad E y_b y_{b'} = E x_b x_{b'}\ (b \ne b'),

exact at every width and for any input law (independent masks at different positions and
samples).  The output is a Bernoulli mixture, not Gaussian (unless :math:`p = 0`): on a Gaussian
input it carries its exact mixture law (:mod:`varprop.network.layers.dropoutlaw`), so that an
activation right after it is predicted exactly at infinite width, forward and backward (a Gaussian
closure of the mixture would be +82% off for tanh after ``Dropout(0.5)`` at :math:`q = 16`).
Backward: the same mask multiplies the gradient, :math:`g_x = \frac{\xi}{1 - p}\, g_y`, so
:math:`E g_x^2 = E g_y^2/(1 - p)`, off-diagonal covariances and between-sample moments kept, exact when
:math:`g_y` is independent of the mask (the gradient-independence assumption; exact when nothing
downstream depends on it, e.g. a linear readout).  Below an activation the mask also zeroes
:math:`\phi'(y)`, and the two are taken jointly through the mixture law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from varprop._util.lazy import lazy_module
from varprop._util.validation import check_choice, check_real, fail
from varprop.network.field import Field, GradField, Shape
from varprop.network.layers.base import Layer
from varprop.network.layers.dropoutlaw import DropoutLaw

#: SymPy, imported at first use (:mod:`varprop._util.lazy`): only the symbolic derivations need it
sp = lazy_module("sympy")

__all__ = ["Dropout"]

MODES = ("train", "eval")


@dataclass(frozen=True, init=False)
class Dropout(Layer):
    r"""Inverted dropout: :math:`y = \xi x/(1 - p)`, :math:`\xi \sim \text{Bernoulli}(1 - p)`
    (train mode), the identity in eval mode.

    Train mode: :math:`E y^2 = E x^2/(1 - p)`, mean and cross-position / cross-sample moments
    kept; backward :math:`E g_x^2 = E g_y^2/(1 - p)`.  Exact at every width (backward under
    gradient independence).  See :mod:`varprop.network.layers.dropout`.

    Parameters
    ----------
    p : float
        Drop probability, :math:`0 \le p < 1`.
    mode : {"train", "eval"}
        ``"train"`` drops entries; ``"eval"`` is the identity.
    """

    p: float
    mode: Literal["train", "eval"] = field(default="train")
    kind = "dropout"

    def __init__(self, p: float, *, mode: Literal["train", "eval"] = "train") -> None:
        value = check_real("p", p)
        if not 0.0 <= value < 1.0:
            raise fail("p", p, "a drop probability 0 <= p < 1 (p = 1 drops every unit)")
        object.__setattr__(self, "p", value)
        object.__setattr__(self, "mode", check_choice("mode", mode, MODES))

    def __repr__(self) -> str:
        mode = "" if self.mode == "train" else f", mode={self.mode!r}"
        return f"Dropout({self.p!r}{mode})"

    @property
    def active(self) -> bool:
        """True if the layer drops anything (train mode, :math:`p > 0`)."""
        return self.mode == "train" and self.p > 0.0

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    # --- mean field ---------------------------------------------------------------------------
    def field_exact(self, field_in: Field) -> bool:
        """Exact at every width and for any input law (independent masks)."""
        return True

    def field_forward(self, field: Field) -> Field:
        r""":math:`E y^2 = E x^2/(1 - p)`; the mean, off-diagonal covariances and between-sample
        moments are kept; not Gaussian."""
        if not self.active:
            return field
        keep = 1.0 - self.p
        cov = None
        if field.cov is not None:
            cov = np.array(field.cov)
            np.fill_diagonal(cov, np.diagonal(field.cov) / keep)
        # a new Field (not ``with_``): the output is no elementwise map of an upstream Gaussian.
        # On a Gaussian input it carries its exact mixture law for an activation that follows
        # (varprop.network.layers.dropoutlaw; not with between-sample moments tracked).
        # Independent masks: the between-sample moments (batch_cross, batch_cov) are unchanged.
        law = DropoutLaw(self.p, field) if field.gaussian and field.batch_cross is None else None
        out = Field(field.shape, field.channel_axis, field.mean, field.second / keep, cov,
                    field.batch_cross, gaussian=False, approximations=field.approximations, law=law,
                    batch_cov=field.batch_cov)
        if law is not None:
            law.output = out
        return out

    def field_backward(self, grad: GradField, field_in: Field, field_out: Field) -> GradField:
        r""":math:`E g_x^2 = E g_y^2/(1 - p)`, off-diagonal covariances kept."""
        if not self.active:
            return grad
        factor = grad.factor
        if factor is not None and field_out.law is not None and factor[2] is field_out.law:
            return field_out.law.input_gradient(factor[0], factor[1])  # type: ignore[attr-defined]
        keep = 1.0 - self.p
        cov = None
        if grad.cov is not None:
            cov = np.array(grad.cov)
            np.fill_diagonal(cov, np.diagonal(grad.cov) / keep)
        # a new GradField: the between-sample moment is kept (independent masks), nothing else
        return GradField(grad.shape, grad.channel_axis, grad.second / keep, cov, grad.batch_cross,
                         batch_cov=grad.batch_cov)

    def field_steps(self) -> list[tuple[str, object]]:
        q, g_y, q_y, g_x = sp.symbols("q G_y q_y G_x", real=True)
        p = sp.Symbol("p", nonnegative=True)
        if not self.active:
            return [(f"{self!r} is the identity.", sp.Eq(q_y, q))]
        return [
            ("Forward: the mask keeps an entry with probability 1 - p and scales it by 1/(1 - p), "
             "so E m^2/(1 - p)^2 = 1/(1 - p) for the mask m (mean and cross moments unchanged):",
             sp.Eq(q_y, q / (1 - p))),
            ("Backward: the same mask multiplies the gradient (independent of it):",
             sp.Eq(g_x, g_y / (1 - p))),
        ]

    # --- sampling -----------------------------------------------------------------------------
    def mc_parameter_count(self, input_shape: Shape) -> int:
        """The mask's entries per sample (drawn in :meth:`mc_forward`), 0 when inactive."""
        return math.prod(input_shape) if self.active else 0

    def mc_draw(self, rng: np.random.Generator, input_shape: Shape, replicates: int,
                dtype: np.dtype) -> object:
        """A seed for the masks (drawn at :meth:`mc_forward`, once per sample and entry), or
        ``None`` when inactive."""
        if not self.active:
            return None
        return np.random.SeedSequence(rng.integers(0, 2**63, size=4, dtype=np.uint64).tolist())

    def mc_forward(self, params: object, x: np.ndarray) -> tuple[np.ndarray, object]:
        if params is None:
            return x, None
        gen = np.random.default_rng(params)  # type: ignore[arg-type]
        keep = gen.random(x.shape) >= self.p
        scale = x.dtype.type(1.0 / (1.0 - self.p))
        return np.where(keep, x * scale, x.dtype.type(0)), keep

    def mc_backward(self, params: object, cache: object, grad: np.ndarray) -> np.ndarray:
        if cache is None:
            return grad
        scale = grad.dtype.type(1.0 / (1.0 - self.p))
        return np.where(cache, grad * scale, grad.dtype.type(0))  # type: ignore[arg-type]
