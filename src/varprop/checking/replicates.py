r"""Verdicts on replicate statistics measured elsewhere: :func:`verify_replicates`.

:func:`varprop.verify` simulates its own networks; a caller that already holds one statistic per
independent network (e.g. :func:`varprop.torch.audit`, which re-initialises a PyTorch model
:math:`R` times and records the mean square of a module's output in each) gets the same verdict
from the same machinery: the replicate values :math:`x_1, \dots, x_R` are i.i.d. draws of a
per-network statistic whose ensemble mean :math:`\theta = E x` is claimed to be
:math:`\theta_0`.  One look of the checker's plan (:mod:`varprop.checking.plan`): Hall's
skewness-corrected t interval for :math:`r = \theta/\theta_0 - 1` at level ``alpha``, the
heavy-tail guard (Cochran's rule :math:`R \ge 25\gamma^2`, bootstrap-t cross-check) which turns a
verdict it cannot trust into ``inconclusive``, and the decision

* ``refuted`` if the interval lies wholly outside :math:`\pm` ``tol`` (the declared allowance of
  the prediction: 0 for an exact one, plus a float floor),
* ``confirmed`` if it lies inside :math:`\pm` ``rtol`` (TOST), or inside :math:`\pm` ``tol``
  for an approximate claim whose allowance decides it ("within the allowance"; with
  ``confirm_within=False``, a broad allowance, that case is ``inconclusive``),
* ``inconclusive`` otherwise, with the number of replicates that would resolve it.

A zero prediction is judged on absolute margins (``atol``, default ``rtol``).  Replicate values
that are not finite (an overflow in the measured network) give ``inconclusive`` with no estimate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from varprop._util.validation import (
    check_nonnegative_int,
    check_nonnegative_real,
    check_probability,
    fail,
)
from varprop.checking.plan import _margins, _sequential, _verdict_from
from varprop.checking.verdict import Verdict

__all__ = ["verify_replicates", "MIN_REPLICATES"]

#: The fewest replicate values an interval is built from.
MIN_REPLICATES = 4


def verify_replicates(values: Sequence[float] | np.ndarray, predicted: float, *, tol: float,
                      rtol: float = 0.05, alpha: float = 0.01, seed: int = 0,
                      atol: float | None = None, statistic: str = "E[x]",
                      description: str = "", assumptions: str = "", exact: bool = False,
                      quantity: str = "output", layer: int = 0,
                      config: dict[str, object] | None = None,
                      confirm_within: bool = True) -> Verdict:
    r"""The checker's verdict on the claim :math:`E x = \theta_0` (``predicted``) from replicate
    values ``values`` (one per independent network), with the declared allowance ``tol`` on
    :math:`|r|` (see the module docstring).

    Parameters
    ----------
    values : sequence of float
        The replicate statistics (at least :data:`MIN_REPLICATES`).
    predicted : float
        :math:`\theta_0 \ge 0` (a second moment).
    tol : float
        Refutation margin on :math:`|r|` (the prediction's allowance; 0 for an exact claim).
    rtol : float
        Confirmation margin (TOST).
    alpha : float
        Error level of this one verdict (pass ``alpha / m`` for a family of ``m`` verdicts:
        Bonferroni).
    seed : int
        Seeds the bootstrap cross-check: the same values and seed give the same verdict.
    atol : float, optional
        Absolute margin when ``predicted`` is 0.
    statistic, description, assumptions, exact, quantity, layer, config
        Carried into the :class:`~varprop.checking.verdict.Verdict`.
    confirm_within : bool
        Whether an interval inside the allowance ``tol`` but not inside :math:`\pm` ``rtol`` may
        be ``confirmed``.  Pass ``False`` when ``tol`` is a broad allowance that bounds the
        claim's error without deciding it (the broad finite-width rule :math:`2\sum 1/n`): such an
        allowance can refute the claim but not confirm it, and that case is ``inconclusive`` with
        the reason saying so (:func:`varprop.checking.reasons._decision`).
    """
    t0 = time.perf_counter()
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size < MIN_REPLICATES:
        raise fail("values", f"<{x.size} values>", f"a one-dimensional sequence of at least "
                   f"{MIN_REPLICATES} replicate statistics")
    theta0 = check_nonnegative_real("predicted", predicted)
    tol_f = check_nonnegative_real("tol", tol)
    rtol_f = check_probability("rtol", rtol)
    alpha_f = check_probability("alpha", alpha)
    seed_i = check_nonnegative_int("seed", seed)
    zero_pred, atol_f, scale, margin = _margins(theta0, rtol_f, atol)
    n = int(x.size)
    bad = int(np.count_nonzero(~np.isfinite(x)))

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        if bad:
            return [], (f"{bad} of {n} replicate values are not finite (the measured values left "
                        "the float range): no estimate")
        return [x], None

    out = _sequential(draw, "mean", theta0, scale, tol_f, margin, alpha_f, [n], seed_i,
                      relative=not zero_pred, confirm_within=bool(confirm_within))
    return _verdict_from(out, theta0=theta0, scale=scale, zero_pred=zero_pred, tol=tol_f,
                         rtol=rtol_f, atol=atol_f, alpha=alpha_f, seed=seed_i, quantity=quantity,
                         layer=layer, target="ensemble", name=statistic,
                         description=description, assumptions=assumptions, exact=exact,
                         config=dict(config or {}), t0=t0)

