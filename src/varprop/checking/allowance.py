r"""What a prediction claims: whether it is exact at finite width (:func:`is_exact`), the declared
bound ``tol`` of an approximate one (:func:`prediction_allowance`) and its stated assumptions.

Exactness is read from the activation's traits (:attr:`varprop.Activation.traits`), never from
names: a positively homogeneous activation of degree 1 (linear, ReLU, leaky ReLU, ``abs``, or any
custom one) satisfies :math:`\phi(z)^2 = z^2 (a^2 1_{z>0} + b^2 1_{z<0})`, so with zero-mean
symmetric i.i.d. weights the second-moment recursion holds exactly at every width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from varprop.checking.next_order import FiniteWidthCase, finite_width_case
from varprop.components.activations import Activation, resolve_activation
from varprop.components.schemes import InitScheme, resolve_scheme
from varprop.network.layers.dense import Dense
from varprop.network.layers.nonlinearity import Nonlinearity
from varprop.network.model import Network
from varprop.network.quantities import BACKWARD as _BACKWARD
from varprop.network.quantities import spec
from varprop.theory.fields import is_general, walk_fields
from varprop.theory.finite.exact import slopes

__all__ = ["is_exact", "network_exact", "prediction_allowance", "network_allowance",
           "dead_layer_gap", "BROAD_ALLOWANCE", "FINITE_WIDTH_CONSTANT"]

#: :math:`c` in the broad finite-width allowance :math:`c \sum_{l \le L} 1/n_l`, used where the
#: 1/n expansion does not decide a claim (out of its regime, or not available; see
#: :func:`prediction_allowance`).
FINITE_WIDTH_CONSTANT = 2.0
#: The words that open the reason of the broad allowance: it bounds a claim's error without
#: deciding it, so a checker may refute within it but not confirm (``varprop.torch``'s audit reads
#: the reason of :func:`network_allowance` for them).
BROAD_ALLOWANCE = "broad finite-width allowance"
#: Allowance added per declared approximation of the general engine (``FieldPrediction.
#: approximations``, e.g. the Gaussian closure of a nonlinearity after a residual sum).  Measured
#: for the closure (post-activation residual block ``Dense(n), Residual([Dense(n, he), phi]),
#: phi``, width 512, 100 replicates): the activation after the sum is off by +5.3% (+-1.1%) for
#: ReLU and +2.1% (+-0.4%) for tanh, so 0.10 covers it with a margin; a closure far from
#: Gaussian (tanh acting on relu(x): +41%) exceeds it and is refuted, as it should be.
APPROXIMATION_ALLOWANCE = 0.10
#: Relative floating-point floor added to every tolerance (float64; float32 uses 1e-4).
_FLOAT_FLOOR = {"float64": 1e-9, "float32": 1e-4}


def is_exact(activation: Activation | str, init: InitScheme | str, quantity: str, *,
             target: str = "ensemble") -> bool:
    r"""Whether the library's prediction of ``quantity`` is exact at every finite width.

    True for the second moments (``preactivation``, ``activation_second_moment``, ``gradient``,
    ``weight_gradient``, and ``activation`` for linear nets) of nets whose activation is
    positively homogeneous of degree 1 (``traits.exact_at_finite_width``: linear, ReLU, leaky
    ReLU, ``abs``, ...) with zero-mean symmetric i.i.d. weights, and for linear nets with
    orthogonal weights.  For the ``unit_spread`` target, the pre-activation spread is exact in
    the same cases and the activation spread of such nets with zero-mean Gaussian weights is
    exact too (given the previous layer the units are i.i.d. Gaussian).  Everything else is
    exact only as the widths grow.

    Assumptions: inputs i.i.d. zero-mean, biases :math:`N(0, \sigma_b^2)`, and for the
    backward quantities :math:`\partial L/\partial z_L` i.i.d. with unit variance independent of
    the forward pass (the setting of :func:`varprop.simulate`).
    """
    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    exact = spec(quantity).exact(act, scheme)
    if target != "unit_spread":
        return exact
    # the across-unit spread: exact where the second moment is, and for the activation spread
    # of a degree-1 homogeneous net with Gaussian i.i.d. weights (given the previous layer the
    # units are i.i.d. Gaussian)
    if quantity == "preactivation" or act.traits.linear:
        return spec("preactivation").exact(act, scheme)
    return (quantity == "activation" and spec("activation_second_moment").exact(act, scheme)
            and scheme.is_gaussian and scheme.is_iid)


def dead_layer_gap(activation: Activation, widths: Sequence[int], layer: int, quantity: str,
                   bias_variance: float) -> float:
    r"""The exact relative gap :math:`1 - \prod_{j=1}^{l-1}(1 - 2^{-n_j})` between the mean-field
    gradient second moment of a ReLU-type net (one slope 0) with zero bias and the truth: a layer
    :math:`j < l` whose units are all off (probability :math:`2^{-n_j}`) zeroes every later
    pre-activation and so the gradient at layer :math:`l`'s input (:math:`l < L`); see
    :func:`varprop.theory.finite.exact.alive_probability`.  0 elsewhere (forward quantities,
    the last layer, biases, linear/``abs``/leaky ReLU).  Added to the allowance of claims the
    library calls exact, so that they are judged against the true mean."""
    ab = slopes(activation)
    L = len(widths) - 1
    if (quantity != "gradient" or ab is None or ab[0] * ab[1] != 0.0 or bias_variance != 0.0
            or layer >= L):
        return 0.0
    return -math.expm1(sum(math.log1p(-(2.0 ** -n)) for n in widths[1:layer]))


def _iid_symmetric(scheme: InitScheme) -> bool:
    return bool(scheme.is_zero_mean and scheme.is_symmetric and scheme.is_iid)


def network_exact(net: Network, position: int, backward: bool) -> bool:
    r"""Whether the mean-field second moment of layer ``position``'s output (``backward``: of the
    loss gradient with respect to it) is exact at every finite width in ``net``.

    The layers the statistic depends on are those up to ``position`` (forward) or all of them
    (backward: the gradient at any position passes the forward pass of the whole network).  The
    claim is exact when each of them keeps the second-moment identity exact: every
    ``Nonlinearity`` positively homogeneous of degree 1 (``traits.exact_at_finite_width``) and
    every ``Dense`` zero-mean symmetric i.i.d. -- or orthogonal when every nonlinearity is
    linear (:math:`\lVert W a\rVert^2` then depends on :math:`\lVert a\rVert^2` alone).  The
    same rule as :func:`is_exact` for the second moments of an MLP.  A network with other
    layers (the general engine) is exact where every layer the statistic depends on says so
    (``Layer.field_exact``, collected by :func:`varprop.predict_fields`).
    """
    if is_general(net):
        return walk_fields(net).exact_at(position, backward)
    depth = net.depth if backward else position
    acts, schemes, other = _layer_kinds(net, depth)
    if other or not all(a.traits.exact_at_finite_width for a in acts):
        return False
    linear = all(a.traits.linear for a in acts)
    return all(_iid_symmetric(s) or (linear and s.family.orthonormal) for s in schemes)


def _layer_kinds(net: Network, depth: int) -> tuple[set[Activation], set[InitScheme], bool]:
    """The distinct activations and init schemes of the first ``depth`` layers, and whether a
    layer of another type occurs there (runs walked once each, so a huge repeated block costs
    its length, not the depth)."""
    acts: set[Activation] = set()
    schemes: set[InitScheme] = set()
    other = False
    seen = 0
    for block, count in net.layers.runs:
        if seen >= depth:
            break
        for layer in block[: depth - seen]:
            if isinstance(layer, Nonlinearity):
                acts.add(layer.activation)
            elif isinstance(layer, Dense):
                schemes.add(layer.init)
            else:
                other = True
        seen += len(block) * count
    return acts, schemes, other


def _weight_width(layer: object) -> int | None:
    """The number of independent output units of a weight layer (``Dense.width``, a
    convolution's ``channels``, a recurrent layer's ``width``), else ``None``."""
    if isinstance(layer, Dense):
        return layer.width
    if isinstance(layer, Nonlinearity):
        return None
    for name in ("channels", "width"):
        value = getattr(layer, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _inverse_width(layer: object) -> float:
    r""":math:`\sum 1/n` over the weight layers of ``layer``: itself, or the layers nested in it
    (a ``Residual``'s ``branch`` and ``shortcut``)."""
    width = _weight_width(layer)
    if width:
        return 1.0 / width
    total = 0.0
    for name in ("branch", "shortcut"):
        nested = getattr(layer, name, None)
        if isinstance(nested, tuple):
            total += sum(_inverse_width(inner) for inner in nested)
    return total


def _dense_inverse_widths(net: Network, depth: int) -> float:
    r""":math:`\sum 1/n` over the weight layers among the first ``depth`` layers (``Dense``; in
    general networks also convolutions, recurrent layers and those nested in residual blocks),
    in closed form per run: a run of :math:`10^9` blocks costs one term per layer of its block."""
    total = 0.0
    seen = 0
    for block, count in net.layers.runs:
        size = len(block)
        for i, layer in enumerate(block):
            inverse = _inverse_width(layer)
            if inverse:
                # repetitions r < count with seen + r * size + i < depth
                total += min(count, max(0, -(-(depth - seen - i) // size))) * inverse
        seen += size * count
        if seen >= depth:
            break
    return total


def _first_fan(layers: Sequence[object], shape: tuple[int, ...]) -> int | None:
    """The fan-in of the first weight layer of ``layers`` (nested ones included) on an input of
    ``shape``, or ``None`` if there is none."""
    for layer in layers:
        fans = getattr(layer, "fans", None)
        if callable(fans):  # Conv: (C_in / groups) * prod(kernel)
            return int(fans(shape)[0])
        if getattr(layer, "init", None) is not None:  # Dense (vector), Recurrent ((T, n_in))
            return int(shape[-1])
        nested = getattr(layer, "nested", ())
        if nested:
            inner = _first_fan(tuple(nested), shape)
            if inner is not None:
                return inner
        shape = layer.output_shape(shape)  # type: ignore[attr-defined]
    return None


def _input_fan(net: Network) -> int:
    r"""The number of input entries one unit of the first weight layer sums (its fan-in): the
    realised mean square of those entries fluctuates with relative variance of order
    :math:`1/\text{fan-in}`, an error every later moment inherits (for an MLP, :math:`n_0`)."""
    first = net.layers.runs[0][0]
    fan = _first_fan(first, net.input_shape)
    return fan if fan is not None else math.prod(net.input_shape)


def prediction_allowance(activation: Activation | str, init: InitScheme | str, *,
                         widths: Sequence[int], layer: int, quantity: str, method: str,
                         predicted_value: float, reference_value: float | None = None,
                         target: str = "ensemble", dtype: str = "float64",
                         input_variance: float = 1.0, bias_variance: float = 0.0,
                         expansion: tuple[FiniteWidthCase | None, str] | None = None,
                         finite_width: bool = False) -> tuple[float, str]:
    r"""The declared bound ``tol`` on :math:`|r|` for the library's prediction, and its reason.

    .. math::

        \text{tol} = \underbrace{\left|\frac{\theta_{quad}}{\theta_{method}} - 1\right|}_{
        \text{closed-form approximation}}
        + \underbrace{c\,\rho^2}_{\text{next order in } 1/n}
        + \epsilon_{float}

    * The first term is the difference between the requested ``method`` (e.g. the erf-matched
      closed form of tanh) and numerical quadrature of the same mean-field recursion; it is 0 for
      ``method`` in auto/exact/quadrature.
    * The second term is 0 when :func:`is_exact` holds.  Otherwise the truth is the 1/n-corrected
      prediction up to the next order, and the term is the estimate :math:`c\rho^2` of that
      remainder (:meth:`~varprop.theory.finite.expansion.FiniteWidthMoments.next_order`, applied
      by :mod:`varprop.checking.next_order`: :math:`\rho = |s| + \max_l v_l/m_l^2`,
      the relative 1/n shift plus the largest relative variance of the layers' scale
      :math:`\hat q_l`; :math:`c = 0.3` calibrated by Monte Carlo).  The same allowance judges the
      mean-field claim (then off by the shift :math:`s`: refuted where the Monte Carlo resolves
      it) and the corrected one (``verify(..., finite_width=True)``).  Out of the expansion's
      regime (:math:`\rho > 0.75`) or where no expansion is available, the broad allowance
      :math:`2\sum_{l \in \mathcal L} 1/n_l` (+ :math:`2/n_0` backward) applies, and the reason
      says the claim is not decidable by the expansion; :math:`\mathcal L` is the set of layers
      the quantity passes through (``1..layer`` forward, all layers for backward quantities).
    * :math:`\epsilon_{float}` is :math:`10^{-9}` (float64) or :math:`10^{-4}` (float32).

    ``expansion`` passes a :func:`~varprop.checking.next_order.finite_width_case` result already
    computed (``(case, why_not)``).  An exact claim of a ReLU-type gradient gets
    :func:`dead_layer_gap` named in its reason unless ``finite_width`` (the finite-width prediction
    includes the dead-layer atom): the mean field misses the atom, so where the Monte Carlo
    resolves the gap it is refuted, like any mean field off by a resolved finite-width shift.
    """
    act = resolve_activation(activation)
    scheme = resolve_scheme(init)
    exact = is_exact(act, scheme, quantity, target=target)
    fw, note = 0.0, ""
    if not exact:
        case, why = expansion if expansion is not None else finite_width_case(
            act, scheme, widths=widths, layer=layer, quantity=quantity,
            input_variance=input_variance, bias_variance=bias_variance, target=target)
        if case is not None and case.in_regime:
            fw, note = case.remainder, case.describe()
        else:
            L = len(widths) - 1
            layers = range(1, L + 1) if quantity in _BACKWARD else range(1, layer + 1)
            fw = FINITE_WIDTH_CONSTANT * sum(1.0 / widths[l] for l in layers)
            if quantity in _BACKWARD:
                fw += FINITE_WIDTH_CONSTANT / widths[0]
            head = case.describe() if case is not None else f"no 1/n expansion for {why}"
            note = (f"{head}; {BROAD_ALLOWANCE} {FINITE_WIDTH_CONSTANT:g} * sum(1/n_l) "
                    f"= {fw:.3g}")
    tol, reason = _tolerance(exact, fw, note, method, predicted_value, reference_value, dtype)
    return _with_dead_layers(tol, reason, exact and not finite_width, act, widths, layer,
                             quantity, bias_variance)


def _with_dead_layers(tol: float, reason: str, exact: bool, act: Activation,
                      widths: Sequence[int], layer: int, quantity: str, bias_variance: float
                      ) -> tuple[float, str]:
    """``(tol, reason)`` with :func:`dead_layer_gap` named in the reason of an exact claim (the
    truth is the claim times ``1 - gap``; ``verify(..., finite_width=True)`` claims that)."""
    gap = dead_layer_gap(act, widths, layer, quantity, bias_variance) if exact else 0.0
    if gap <= 0.0:
        return tol, reason
    return tol, (f"{reason}; the mean field misses the exact dead-layer atom of ReLU gradients "
                 f"(a layer below with every unit off, probability 2^-n_j, zeroes the gradient): "
                 f"the exact value is {1 - gap:.4g} x the mean field (finite_width=True claims it)")


def network_allowance(net: Network, position: int, backward: bool, *, method: str,
                      predicted_value: float, reference_value: float | None = None,
                      dtype: str = "float64") -> tuple[float, str]:
    r""":func:`prediction_allowance` for layer ``position``'s output (``backward``: its loss
    gradient) in any :class:`~varprop.Network`: 0 (+ float floor) where :func:`network_exact`
    holds; in an MLP-shaped network the MLP rule (the next order of the 1/n expansion) at
    :math:`z_l` (position :math:`2l-1`), :math:`a_l` (position :math:`2l`) and the gradient with
    respect to :math:`a_l` (the MLP's ``gradient`` at layer :math:`l+1`);
    else the broad :math:`c \sum 1/n` over the ``Dense`` layers the statistic passes through (up
    to ``position`` forward; all of them, plus :math:`1/n_0`, backward), plus the closed-form
    gap."""
    exact = network_exact(net, position, backward)
    # an MLP-shaped network: position 2l - 1 is z_l, position 2l is a_l, and the gradient with
    # respect to a_l is the MLP's "gradient" at layer l + 1 (the MLP rule); the gradient with
    # respect to z_l has no MLP quantity (broad rule)
    mlp = None if (exact or is_general(net) or (backward and position % 2)) else net.as_mlp()
    if mlp is not None:
        ws = mlp.explicit if mlp.explicit is not None else (mlp.n0,) + (mlp.n,) * mlp.depth
        if backward:
            quantity, layer = "gradient", position // 2 + 1
        else:
            quantity = "preactivation" if position % 2 else "activation_second_moment"
            layer = (position + 1) // 2
        return prediction_allowance(mlp.activation, mlp.init, widths=ws,
                                    layer=layer, quantity=quantity, method=method,
                                    predicted_value=predicted_value,
                                    reference_value=reference_value, dtype=dtype,
                                    input_variance=mlp.input_variance,
                                    bias_variance=mlp.bias_variance)
    if exact and backward and not is_general(net) and position % 2 == 0:
        mlp = net.as_mlp()
        if mlp is not None:
            ws = mlp.explicit if mlp.explicit is not None else (mlp.n0,) + (mlp.n,) * mlp.depth
            tol, reason = _tolerance(True, 0.0, "", method, predicted_value, reference_value,
                                     dtype)
            return _with_dead_layers(tol, reason, True, mlp.activation, ws, position // 2 + 1,
                                     "gradient", mlp.bias_variance)
    fw = 0.0
    if not exact:
        fw = FINITE_WIDTH_CONSTANT * _dense_inverse_widths(net, net.depth if backward else position)
        if backward:
            fw += FINITE_WIDTH_CONSTANT / _input_fan(net)
        if is_general(net):
            fw += APPROXIMATION_ALLOWANCE * len(walk_fields(net).approximations)
    missing = "backward quantities" if backward else "networks other than dense chains"
    note = (f"no 1/n expansion for {missing}; "
            f"{BROAD_ALLOWANCE} {FINITE_WIDTH_CONSTANT:g} * sum(1/n_l) = {fw:.3g}"
            if not exact else "")
    return _tolerance(exact, fw, note, method, predicted_value, reference_value, dtype)


def _tolerance(exact: bool, fw: float, note: str, method: str, predicted_value: float,
               reference_value: float | None, dtype: str) -> tuple[float, str]:
    """float floor + closed-form gap + finite-width term ``fw`` (0 when ``exact``), and why."""
    parts: list[str] = []
    tol = _FLOAT_FLOOR.get(dtype, 1e-9)
    if reference_value is not None and predicted_value != 0 and math.isfinite(reference_value):
        gap = abs(reference_value / predicted_value - 1.0)
        if gap > 0:
            tol += gap
            parts.append(f"method={method!r} differs from quadrature by {gap:.3g}")
    if not exact:
        tol += fw
        parts.append(note)
    else:
        parts.append("exact at finite width: tol = 0 (+ float floor)")
    return tol, "; ".join(parts)


def _assumptions(act: Activation, scheme: InitScheme, quantity: str, target: str, exact: bool,
                 method: str, user: bool, finite_width: bool = False) -> str:
    model = ("the mean field with its O(1/n) finite-width correction (delta method in the "
             "per-layer scale qhat_l; neglects O(1/n^2))" if finite_width else
             "infinite-width mean field (Gaussian pre-activations)")
    base = (f"{model}, gradient independence for "
            "backward quantities; inputs i.i.d. zero-mean, biases N(0, bias_variance), "
            "dL/dz_L i.i.d. unit variance independent of the forward pass")
    claim = ("claims exactness at every finite width here (second moments of nets whose "
             "activations are positively homogeneous of degree 1, with zero-mean symmetric i.i.d. "
             "weights; except that the mean field of ReLU-type gradients with zero bias misses "
             "the exact dead-layer factor prod_{j<l}(1 - 2^-n_j), which finite_width=True "
             "includes)" if exact else
             "exact only as the widths grow here (the allowance is the next order of the 1/n "
             "expansion, or broad where the expansion does not decide)")
    who = "user-supplied prediction judged against" if user else f"library prediction (method={method!r}),"
    return f"{who} {base}; {claim}"

