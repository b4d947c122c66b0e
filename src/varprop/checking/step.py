r"""The one-step (local) check :func:`verify_step`: each layer's one-step map, tested given the
realised previous layer.

The map of a layer is its own rule (the ``# --- one-step check`` section of each layer class:
``Dense.one_step`` / ``Dense.one_step_backward``, ``Nonlinearity.one_step``); the check walks the
layers between the realised statistic it conditions on and the one it predicts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from varprop._math.quadrature import gaussian_expectations
from varprop._util.validation import check_choice, check_nonnegative_real, fail
from varprop.checking.allowance import _FLOAT_FLOOR, FINITE_WIDTH_CONSTANT
from varprop.checking.outputs import (
    OUTPUT_QUANTITIES,
    _output_columns,
    check_positions,
    default_position,
)
from varprop.checking.plan import (
    _check_common,
    _check_layer,
    _check_size,
    _extract,
    _look_seed,
    _look_sizes,
    _sequential,
    _subject,
    _verdict_from,
    network_budget,
    plan_network,
)
from varprop.checking.step_general import verify_step_general
from varprop.checking.verdict import Verdict
from varprop.components.activations import Activation
from varprop.components.schemes import InitScheme
from varprop.errors import VarpropError
from varprop.network.layers.base import Layer
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.model import Network
from varprop.simulation.montecarlo import simulate
from varprop.theory.fields import is_general
from varprop.theory.predict import predict_variance, propagate

__all__ = ["verify_step", "verify_step_outputs", "one_step_chain", "LOCAL_QUANTITIES"]

LOCAL_QUANTITIES: tuple[str, ...] = ("preactivation", "activation_second_moment", "gradient")


def one_step_chain(layers: Sequence[Layer], n_in: int, second: np.ndarray) -> np.ndarray:
    r"""The forward one-step maps of ``layers`` applied in turn to the realised mean square
    ``second`` of their input (width ``n_in``): :math:`E[\overline{y^2} \mid x]` for the output
    :math:`y` of the chain, exact where each map is exact given its input."""
    for layer in layers:
        second = layer.one_step(n_in, second)  # type: ignore[attr-defined]
        (n_in,) = layer.output_shape((n_in,))
    return second


def verify_step(
    activation: Network | Activation | str,
    init: InitScheme | str | None = None,
    *,
    fan_in: int | None = None,
    fan_out: int | None = None,
    widths: Sequence[int] | None = None,
    depth: int = 1,
    input_variance: float = 1.0,
    bias_variance: float = 0.0,
    quantity: str = "preactivation",
    layer: int | None = None,
    rtol: float = 0.05,
    alpha: float = 0.01,
    replicates: int | None = None,
    seed: int = 0,
    tol: float | None = None,
    budget: int | None = None,
    dtype: str = "float64",
    engine: str = "auto",
) -> Verdict:
    r"""The sharper local check: test the one-step map at ``layer`` given the realised previous layer.

    For zero-mean i.i.d. weights with variance :math:`\sigma_w^2`, conditionally on the realised
    activations :math:`a_{l-1}` of a network (statistic :math:`\hat q_{l-1} = \frac{1}{n_{l-1}}
    \sum_j a_{l-1,j}^2`, averaged over the batch),

    .. math::

        E[\overline{z_l^2} \mid a_{l-1}] = v_l := \sigma_w^2 n_{l-1} \hat q_{l-1} + \sigma_b^2 ,
        \qquad
        E[\overline{a_l^2} \mid a_{l-1}] = E[\phi(\sqrt{v_l}\,\xi)^2] \ (\text{Gaussian weights}),

    and backward :math:`E[\overline{g_l^2} \mid \delta_l] = \sigma_w^2 n_l \overline{\delta_l^2}`
    when :math:`W_l` is independent of :math:`\delta_l` (the top layer, or linear nets).  So the
    replicate ratio :math:`\rho = \text{statistic} / \text{one-step prediction}` has mean exactly 1
    and coefficient of variation :math:`\approx\sqrt{2/n_l}` at any depth: this tests the map itself
    with great power, without the heavy tails of the compounded statistic.  The decision is on
    :math:`r = E\rho - 1` exactly as in :func:`verify` (``tol`` 0 where the conditional identity is
    exact, :math:`c/n_l` otherwise).

    ``quantity`` is ``"preactivation"`` (any zero-mean i.i.d. scheme: exact),
    ``"activation_second_moment"`` (exact for Gaussian weights) or ``"gradient"``.  ``layer=None``
    means the last layer (forward) or the first (``gradient``).  The first argument may be a
    :class:`~varprop.Network` (as in :func:`~varprop.checking.verify.verify`): an MLP-shaped one
    takes these quantities, any network ``"output"`` / ``"output_gradient"`` at a layer position
    (:func:`verify_step_outputs`).  The maps are the layers' own (``Dense.one_step``,
    ``Dense.one_step_backward``, ``Nonlinearity.one_step``), walked by :func:`one_step_chain`.

    Orthogonal weights (gain :math:`g`) are allowed for ``preactivation`` and ``gradient``: for a
    Haar-orthogonal :math:`W` independent of :math:`a`, :math:`E\lVert Wa\rVert^2 = g^2
    \lVert a\rVert^2 \min(n_{in}, n_{out})/n_{in}`, the same map with
    :math:`\sigma_w^2 = g^2/\max(n_{in}, n_{out})`; when :math:`n_{out} \ge n_{in}` it holds
    exactly for every draw (:math:`W^\top W = g^2 I`), so without biases the ratio is 1 with zero
    variance and is compared directly.
    """
    t0 = time.perf_counter()
    subject = _subject(activation, init, fan_in=fan_in, fan_out=fan_out, widths=widths,
                       depth=depth, input_variance=input_variance, bias_variance=bias_variance)
    quantity = check_choice("quantity", quantity, LOCAL_QUANTITIES + OUTPUT_QUANTITIES)
    engine = check_choice("engine", engine, ("auto", "dense", "gaussian", "general"))
    rtol_f, alpha_f, reps, seed_i, bud, dt = _check_common(rtol, alpha, replicates, seed, budget,
                                                           dtype)
    if quantity in OUTPUT_QUANTITIES:
        net = subject.network()
        return verify_step_outputs(net, quantity=quantity, layer=layer, rtol_f=rtol_f,
                                   alpha_f=alpha_f, reps=reps, seed_i=seed_i, tol=tol, bud=bud,
                                   dt=dt, engine=engine, t0=t0)
    act, scheme, ws = subject.mlp(quantity)
    input_variance, bias_variance = subject.input_variance, subject.bias_variance  # type: ignore[assignment]
    L = len(ws) - 1
    in_var = check_nonnegative_real("input_variance", input_variance)
    b_var = check_nonnegative_real("bias_variance", bias_variance)
    lay = _check_layer(layer, L)
    if lay is None:
        lay = 1 if quantity == "gradient" else L
    orthogonal_map = scheme.family.orthonormal and quantity != "activation_second_moment"
    if not (scheme.is_zero_mean and (scheme.is_iid or orthogonal_map)):
        raise fail("init", repr(scheme), "a zero-mean i.i.d. scheme for the one-step check, or "
                   "orthogonal with quantity 'preactivation' or 'gradient' (the conditional map "
                   "of non-zero-mean weights is not a function of the previous layer's second "
                   "moment, and orthogonal pre-activations are not exactly Gaussian)")
    n_prev, n_l = ws[lay - 1], ws[lay]
    dense, phi = Dense(n_l, scheme, b_var), Nonlinearity(act)  # layer lay of the dense chain
    if quantity == "preactivation":
        exact = True
        name = f"E[z_{lay}^2 / (s_w^2 |a_{lay - 1}|^2 + s_b^2)]"
        description = (f"ratio of layer {lay}'s realised mean z^2 to the one-step map of layer "
                       f"{lay - 1}'s realised activations (mean exactly 1)")
    elif quantity == "activation_second_moment":
        exact = scheme.is_gaussian
        name = f"E[a_{lay}^2 / E_phi(v_{lay})]"
        description = (f"ratio of layer {lay}'s realised mean a^2 to E[phi(z)^2] with z ~ "
                       f"N(0, v), v the one-step map of layer {lay - 1}'s realised activations")
    else:
        exact = lay == L or act.traits.linear
        name = f"E[(dL/da_{lay - 1})^2 / (s_w^2 n_{lay} |delta_{lay}|^2)]"
        description = (f"ratio of the realised mean squared gradient at layer {lay}'s input to "
                       f"the one-step map of the realised delta_{lay}")
    if tol is None:
        tol_f = _FLOAT_FLOOR[dt] + (0.0 if exact else FINITE_WIDTH_CONSTANT / n_l)
        tol_reason = ("conditional identity exact: tol = 0 (+ float floor)" if exact else
                      f"one-step allowance {FINITE_WIDTH_CONSTANT:g}/n_{lay}")
    else:
        tol_f = check_nonnegative_real("tol", tol)
        tol_reason = "tol given by the caller"
    chain = (dense,) if quantity == "preactivation" else (dense, phi)
    shape = dict(widths=list(ws), input_variance=in_var, bias_variance=b_var)

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        res = simulate(act, scheme, **shape, replicates=n_new, seed=_look_seed(seed_i, look, 1),
                       dtype=dt, engine=engine, backward=quantity == "gradient")
        if quantity == "gradient":
            cols, err = _extract(res, ("gradient_second", "delta_second"), lay, True)
            if err:
                return cols, err
            denom = dense.one_step_backward(n_prev, cols[1])
            num = cols[0]
        else:
            cols, err = _extract(res, ("preactivation_second", "activation_second"), lay, False)
            if err:
                return cols, err
            if lay == 1:
                prev = res.input_second  # the realised input, not its expectation (Jensen)
            else:
                prev_cols, err = _extract(res, ("activation_second",), lay - 1, False)
                if err:
                    return prev_cols, err
                prev = prev_cols[0]
            num = cols[0] if quantity == "preactivation" else cols[1]
            denom = one_step_chain(chain, n_prev, prev)
        return _ratio(num, denom)

    sim_net = plan_network(scheme, ws, in_var, b_var)
    bud_eff = bud if bud is not None else network_budget(sim_net, engine)
    sizes = _look_sizes(reps, bud_eff)
    _check_size(sim_net, engine, sizes[-1], dt, "replicates" if reps is not None else "budget")
    floor = _one_step_skewness(act, scheme, quantity, ws, lay, in_var, b_var)
    out = _sequential(draw, "mean", 1.0, 1.0, tol_f, rtol_f, alpha_f, sizes, seed_i + 1, floor)
    config = {"activation": repr(act), "init": repr(scheme), **shape, "dtype": dt,
              "engine": engine, "budget": bud_eff, "tol_reason": tol_reason}
    assumptions = ("one-step map conditional on the realised previous layer: zero-mean i.i.d. "
                   "weights" + (", Gaussian weights (z | a_{l-1} is exactly Gaussian)"
                                if quantity == "activation_second_moment" else "")
                   + (", W_l independent of delta_l (top layer or linear net)"
                      if quantity == "gradient" else "")
                   + ("; exact here" if exact else "; approximate here (allowance c/n)"))
    return _step_verdict(out, tol=tol_f, rtol=rtol_f, alpha=alpha_f, seed=seed_i,
                         quantity=quantity, layer=lay, name=name, description=description,
                         assumptions=assumptions, exact=exact, config=config, t0=t0)


def _one_step_skewness(act: Activation, scheme: InitScheme, quantity: str, ws: tuple[int, ...],
                       lay: int, input_variance: float, bias_variance: float) -> float:
    r"""The skewness of the one-step ratio for Gaussian weights (batch 1), a floor for the guard.

    Given the previous layer, the :math:`n` units of the ratio are i.i.d.: :math:`z^2/v \sim
    \chi^2_1` (``preactivation``; ``gradient`` likewise over the :math:`n_{l-1}` input units),
    skewness :math:`\sqrt{8/n}`; for ``activation_second_moment`` the skewness of
    :math:`\phi(z)^2`, :math:`z \sim N(0, q_l)` at the mean-field :math:`q_l`, over
    :math:`\sqrt{n_l}`.  Small widths (1, 2) make the ratio strongly skewed, and its sample
    skewness at the first looks is biased low: without this floor the interval trusted 64
    replicates and refuted true maps ~5x more often than ``alpha``.
    """
    if quantity == "preactivation":
        return math.sqrt(8.0 / ws[lay])
    if quantity == "gradient":
        return math.sqrt(8.0 / ws[lay - 1])
    q = float(propagate(act, scheme, widths=ws, input_variance=input_variance,
                        bias_variance=bias_variance).preact_second[lay - 1])
    return _square_skewness(act, q, ws[lay])


def _square_skewness(act: Activation, q: float, n: int) -> float:
    r"""Skewness of :math:`\phi(z)^2`, :math:`z \sim N(0, q)`, over :math:`\sqrt n` (the mean of
    ``n`` i.i.d. units); 0 for a degenerate ``q``, ``inf`` where the moments diverge."""
    if not (math.isfinite(q) and q > 0):
        return 0.0
    f = act.function

    def powers(x: np.ndarray) -> np.ndarray:
        y = f(x) ** 2
        return np.stack([y, y * y, y * y * y])

    try:
        m1, m2, m3 = gaussian_expectations([powers], 0.0, q, act.kinks)[0]
    except VarpropError:
        return math.inf
    var = m2 - m1 * m1
    if not (var > 0 and math.isfinite(m3)):
        return 0.0 if var == 0 else math.inf
    return abs(m3 - 3 * m1 * var - m1**3) / var**1.5 / math.sqrt(n)


def _chain_at(net: Network, pos: int, quantity: str) -> tuple[int, tuple[Layer, ...]]:
    """``(p0, chain)``: the layers whose one-step maps predict the statistic at ``pos`` from the
    realised statistic at position ``p0`` (0: the input).  Forward: ``(Dense,)`` for a ``Dense``
    at ``pos``, ``(Dense, Nonlinearity)`` for a ``Nonlinearity`` right after one (given its
    input, a nonlinearity's output is not random).  Backward: the ``Dense`` at ``pos + 1``."""
    P = net.depth
    if quantity == "output_gradient":
        nxt = net.layers[pos] if pos < P else None
        if pos < 1 or not isinstance(nxt, Dense):
            raise fail("layer", pos, "a layer position followed by a Dense layer for the one-step "
                       "check of 'output_gradient' (its backward map W^T delta)")
        return pos + 1, (nxt,)
    here = net.layers[pos - 1]
    if isinstance(here, Dense):
        return pos - 1, (here,)
    before = net.layers[pos - 2] if pos >= 2 else None
    if isinstance(here, Nonlinearity) and isinstance(before, Dense):
        return pos - 2, (before, here)
    raise fail("layer", pos, "a Dense layer's position, or a Nonlinearity's right after a Dense, "
               "for the one-step check of 'output'")


def _width_at(net: Network, pos: int) -> int:
    """Width of the output of layer position ``pos`` (0: the input)."""
    shape = net.input_shape
    for i, layer in enumerate(net.layers):
        if i >= pos:
            break
        shape = layer.output_shape(shape)
    return shape[0]


def verify_step_outputs(net: Network, *, quantity: str, layer: object, rtol_f: float,
                        alpha_f: float, reps: int | None, seed_i: int, tol: object,
                        bud: int | None, dt: str, engine: str, t0: float) -> Verdict:
    r"""The one-step check of ``"output"`` / ``"output_gradient"`` at a layer position of any
    network: the realised statistic there over the one-step maps of the layers that produce it
    (:func:`_chain_at`), given the realised statistic they start from; mean ratio exactly 1 where
    the maps are exact (a ``Dense`` with zero-mean i.i.d. weights; a ``Dense`` with Gaussian
    weights followed by a nonlinearity; backward, a ``Dense`` whose weights are independent of the
    gradient it receives: the last layer or only linear nonlinearities after it), else within
    the one-step allowance :math:`c/n`."""
    if is_general(net):
        return verify_step_general(net, quantity=quantity, layer=layer, rtol_f=rtol_f,
                                   alpha_f=alpha_f, reps=reps, seed_i=seed_i, tol=tol, bud=bud,
                                   dt=dt, t0=t0)
    P = check_positions(net)
    pos = _check_layer(layer, P)
    if pos is None and quantity == "output_gradient":
        # the first position whose gradient a Dense layer produces (W^T delta)
        pos = next((i for i, lay in enumerate(net.layers) if i > 0 and isinstance(lay, Dense)), 0)
    elif pos is None:
        pos = default_position(net, quantity)
    start, chain = _chain_at(net, pos, quantity)
    dense = chain[0]
    assert isinstance(dense, Dense)
    scheme = dense.init
    backward = quantity == "output_gradient"
    orthogonal_map = scheme.family.orthonormal and len(chain) == 1
    if not (scheme.is_zero_mean and (scheme.is_iid or orthogonal_map)):
        raise fail("layer", pos, f"a position whose Dense layer has a zero-mean i.i.d. scheme, or "
                   f"an orthogonal one without a nonlinearity in the step (here {scheme!r})")
    n_in = _width_at(net, pos if backward else start)
    n_out = dense.width
    if backward:
        rest = _layer_kinds_after(net, pos + 1)
        exact = pos + 1 == P or all(a.traits.linear for a in rest)
        name = f"E[(dL/dy_{pos})^2 / (s_w^2 n_out |dL/dy_{pos + 1}|^2)]"
    else:
        exact = len(chain) == 1 or scheme.is_gaussian
        name = f"E[y_{pos}^2 / one-step map of y_{start}^2]"
    description = (f"ratio of the realised mean square at layer position {pos} to the one-step "
                   f"map of {[type(c).__name__ for c in chain]} applied to the realised one at "
                   f"position {start} (mean exactly 1 where the map is exact)")
    if tol is None:
        tol_f = _FLOAT_FLOOR[dt] + (0.0 if exact else FINITE_WIDTH_CONSTANT / n_out)
        tol_reason = ("conditional identity exact: tol = 0 (+ float floor)" if exact else
                      f"one-step allowance {FINITE_WIDTH_CONSTANT:g}/n = "
                      f"{FINITE_WIDTH_CONSTANT / n_out:.3g}")
    else:
        tol_f, tol_reason = check_nonnegative_real("tol", tol), "tol given by the caller"

    def draw(n_new: int, look: int) -> tuple[list[np.ndarray], str | None]:
        res = simulate(net, replicates=n_new, seed=_look_seed(seed_i, look, 1), dtype=dt,
                       engine=engine, backward=quantity == "output_gradient")
        cols, err = _output_columns(res, quantity, pos)
        if err:
            return cols, err
        if start == 0:
            prev = np.asarray(res.input_second, dtype=float)
        else:
            prev_cols, err = _output_columns(res, quantity, start)
            if err:
                return prev_cols, err
            prev = prev_cols[0]
        denom = (dense.one_step_backward(n_in, prev) if backward
                 else one_step_chain(chain, n_in, prev))
        return _ratio(cols[0], denom)

    bud_eff = bud if bud is not None else network_budget(net, engine)
    sizes = _look_sizes(reps, bud_eff)
    _check_size(net, engine, sizes[-1], dt, "replicates" if reps is not None else "budget")
    if backward or len(chain) == 1:
        floor = math.sqrt(8.0 / (n_in if backward else n_out))
    else:
        q = float(np.asarray(predict_variance(net, quantity="output", per_layer=True))[pos - 2])
        floor = _square_skewness(chain[1].activation, q, n_out)  # type: ignore[attr-defined]
    out = _sequential(draw, "mean", 1.0, 1.0, tol_f, rtol_f, alpha_f, sizes, seed_i + 1, floor)
    config = {"network": repr(net), "dtype": dt, "engine": engine, "budget": bud_eff,
              "tol_reason": tol_reason}
    assumptions = ("one-step maps of the layers' own rules, conditional on the realised "
                   "previous statistic: zero-mean i.i.d. weights"
                   + ("" if backward or len(chain) == 1 else
                      ", Gaussian weights for the nonlinearity's map (exact then)")
                   + (", W independent of the gradient it receives" if backward else "")
                   + ("; exact here" if exact else "; approximate here (allowance c/n)"))
    return _step_verdict(out, tol=tol_f, rtol=rtol_f, alpha=alpha_f, seed=seed_i,
                         quantity=quantity, layer=pos, name=name, description=description,
                         assumptions=assumptions, exact=exact, config=config, t0=t0)


def _ratio(num: np.ndarray, denom: np.ndarray) -> tuple[list[np.ndarray], str | None]:
    """``num / denom`` per replicate (1 where both are 0); a reason where the prediction is 0
    while the statistic is not."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0),
                         np.where(num == 0, 1.0, np.inf))
    if not np.all(np.isfinite(ratio)):
        return [], "a one-step prediction is 0 while the statistic is not (degenerate layer)"
    return [ratio], None


def _layer_kinds_after(net: Network, start: int) -> set[Activation]:
    """The activations of the nonlinearities at positions after ``start`` (each run once)."""
    acts: set[Activation] = set()
    seen = 0
    for block, count in net.layers.runs:
        for i, layer in enumerate(block):
            last = seen + i + 1 + (count - 1) * len(block)  # its last position in this run
            if isinstance(layer, Nonlinearity) and last > start:
                acts.add(layer.activation)
        seen += len(block) * count
    return acts


def _step_verdict(out: Any, **fields: Any) -> Verdict:
    """The verdict of a one-step check: the claim is a mean ratio of exactly 1, relative margins."""
    return _verdict_from(out, theta0=1.0, scale=1.0, zero_pred=False, atol=None,
                         target="one_step", **fields)
