r"""Hypothesis strategies and assertion helpers for property-based tests of variance propagation
(yours and ours), safe to run every day: a whole test run fails falsely with probability at most
:data:`~varprop.checking.budget.RUN_ALPHA` = :math:`10^{-6}`, and each check fits hypothesis'
default 200 ms deadline for the configurations :func:`layer_configs` draws.

>>> from hypothesis import given, settings
>>> from varprop import strategies as vst
>>> @settings(max_examples=5, derandomize=True)
... @given(vst.layer_configs(activation=vst.activations(["relu"]),
...                          init=vst.init_schemes(zero_mean=True, symmetric=True, gaussian=True),
...                          quantity="preactivation"))
... def test_relu_preserves(config):
...     vst.assert_prediction_confirmed(config)

Every strategy draws *objects the library accepts* (an :class:`~varprop.Activation`, an
:class:`~varprop.InitScheme`, widths, depths), and :func:`layer_configs` draws whole
configurations as dictionaries of :func:`varprop.checking.check.verify` keyword arguments,
only those the checker decides within the budget and the deadline.

The error budget (``docs/testing.md``; the arithmetic in :mod:`varprop.checking.budget`): in a
hypothesis test the :math:`k`-th check of an example gets the level
:math:`10^{-6}\,6/(\pi^2 k^2)/E`, :math:`E` = ``max_examples`` + the ``@example`` count read from
the running test's settings (outside a test: :math:`10^{-6}`; an explicit ``alpha=``,
``replicates=`` or ``budget=`` switches the budget off); its replicates are planned so that an
exact prediction is also *confirmed* but for that level; it is seeded by a SHA-256 hash of its
configuration, so a run is reproducible and its probability statement is over these seeds.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import note, reject, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context, currently_in_test_context

from varprop._util.validation import (
    check_positive_int,
    check_probability,
    fail,
    fail_type,
)
from varprop.checking.budget import (
    MAX_CV2,
    RUN_ALPHA,
    call_alpha,
    check_margin,
    example_bound,
    plan_check,
    plan_config,
    planned_replicates,
)
from varprop.checking.check import QUANTITIES, Verdict, verify
from varprop.checking.helper_args import (
    check_fixed_config,
    check_keywords,
    resolve_item,
)
from varprop.checking.helper_cost import HELPER_SECONDS, check_cost
from varprop.checking.initializers import InitializerVerdict, check_initializer
from varprop.components.activations import (
    Activation,
    activation,
    activation_names,
    resolve_activation,
)
from varprop.components.schemes import (
    InitScheme,
    init_scheme,
    resolve_scheme,
    scheme_names,
)
from varprop.theory.predict import predict_variance

__all__ = [
    "CHECK_SECONDS",
    "activations",
    "assert_initializer_matches",
    "assert_not_refuted",
    "assert_prediction_confirmed",
    "assert_variance_preserved",
    "check_alpha",
    "depths",
    "init_schemes",
    "layer_configs",
    "quantities",
    "widths",
]


#: The activations each :func:`activations` strategy draws from.
_POOLS: weakref.WeakKeyDictionary[Any, list[Activation]] = weakref.WeakKeyDictionary()


def _check_flag(name: str, value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise fail_type(name, value, "True, False or None")
    return value


def activations(names: Sequence[str] | None = None, *, parametrized: bool = True
                ) -> st.SearchStrategy[Activation]:
    """Registered activations (``names`` restricts them); ``leaky_relu`` draws its slope from
    {0.01, 0.1, 0.2} when ``parametrized``."""
    pool = list(activation_names()) if names is None else list(names)
    if not pool:
        raise fail("names", names, "a non-empty sequence of activation names")
    for n in pool:
        activation(n)  # validates (with "did you mean")
    strategies = []
    objects = []
    for n in pool:
        if n == "leaky_relu" and parametrized:
            strategies.append(st.builds(lambda s: activation("leaky_relu", negative_slope=s),
                                        st.sampled_from([0.01, 0.1, 0.2])))
            objects += [activation("leaky_relu", negative_slope=s) for s in (0.01, 0.1, 0.2)]
        else:
            strategies.append(st.just(activation(n)))
            objects.append(activation(n))
    out = st.one_of(strategies)
    _POOLS[out] = objects  # so that layer_configs can prepare them (see _warm)
    return out


def _all_schemes() -> list[InitScheme]:
    out = [init_scheme(name) for name in scheme_names()]
    out += [init_scheme("normal", std=0.1), init_scheme("uniform", low=-0.5, high=0.5),
            init_scheme("he_normal", mode="fan_out"), init_scheme("truncated_normal", std=0.2),
            init_scheme("xavier_uniform", gain=2.0)]
    return out


def init_schemes(*, zero_mean: bool | None = None, symmetric: bool | None = None,
                 gaussian: bool | None = None, iid: bool | None = None,
                 names: Sequence[str] | None = None) -> st.SearchStrategy[InitScheme]:
    """Init schemes filtered by their properties (``None``: either).

    The pool is every registered scheme at its defaults plus a few parametrised variants
    (``normal(std=0.1)``, ``uniform(-0.5, 0.5)``, ``he_normal(mode='fan_out')``,
    ``truncated_normal(std=0.2)``, ``xavier_uniform(gain=2)``), or the named schemes.
    """
    zero_mean, symmetric = _check_flag("zero_mean", zero_mean), _check_flag("symmetric", symmetric)
    gaussian, iid = _check_flag("gaussian", gaussian), _check_flag("iid", iid)
    pool = [init_scheme(n) for n in names] if names is not None else _all_schemes()
    pool = [s for s in pool
            if (zero_mean is None or s.is_zero_mean == zero_mean)
            and (symmetric is None or s.is_symmetric == symmetric)
            and (gaussian is None or s.is_gaussian == gaussian)
            and (iid is None or s.is_iid == iid)]
    if not pool:
        raise fail("init_schemes", {"zero_mean": zero_mean, "symmetric": symmetric,
                                    "gaussian": gaussian, "iid": iid},
                   "filters some scheme satisfies")
    return st.sampled_from(pool)


def widths(min_value: int = 1, max_value: int = 512) -> st.SearchStrategy[int]:
    """Layer widths, drawn log-uniformly-ish: small ones (1, 2, ...) are as likely as large."""
    lo, hi = check_positive_int("min_value", min_value), check_positive_int("max_value", max_value)
    if hi < lo:
        raise fail("max_value", max_value, f"an integer >= min_value={lo}")
    powers = sorted({min(max(2**k, lo), hi) for k in range(11)})
    return st.one_of(st.sampled_from(powers), st.integers(lo, hi))


def depths(min_value: int = 1, max_value: int = 10) -> st.SearchStrategy[int]:
    """Network depths ``L``."""
    lo, hi = check_positive_int("min_value", min_value), check_positive_int("max_value", max_value)
    if hi < lo:
        raise fail("max_value", max_value, f"an integer >= min_value={lo}")
    return st.integers(lo, hi)


def quantities(names: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """Quantities of :func:`varprop.predict_variance`."""
    pool = list(QUANTITIES) if names is None else list(names)
    for q in pool:
        if q not in QUANTITIES:
            raise fail("names", names, f"quantities among {list(QUANTITIES)}")
    return st.sampled_from(pool)


def _as_strategy(value: Any) -> st.SearchStrategy[Any]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)



#: The quantities of a dense chain (:func:`layer_configs` draws these by default).
MLP_QUANTITIES: tuple[str, ...] = ("preactivation", "activation", "activation_second_moment",
                                   "gradient", "weight_gradient")

#: Predicted seconds one check of a configuration drawn by :func:`layer_configs` may take on the
#: reference machine (:func:`varprop.checking.budget.predicted_seconds`): well inside hypothesis'
#: default deadline of 0.2 s (1.25x that while generating, 1x on the final replay).
CHECK_SECONDS = 0.1

_PILOT = 128
_MIN_DRAWN_WIDTH = 16
_MAX_DRAWN_WIDTH = 256
_TRIES = 5
_CALLS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_WARM: set[str] = set()
_FITS: dict[str, bool] = {}  # plan_check's verdicts on drawn shapes (cheap draws: health checks)


def _examples() -> int | None:
    """The example bound E of the running hypothesis test (``None`` outside one)."""
    if not currently_in_test_context():
        return None
    ctx = current_build_context()
    explicit = len(getattr(ctx.wrapped_test, "hypothesis_explicit_examples", ()))
    return example_bound(settings.default.max_examples, explicit)


def check_alpha() -> float:
    r"""The level the next check of the current example gets (without spending it):
    :func:`varprop.checking.budget.call_alpha` of the running hypothesis test's settings, or
    :data:`~varprop.checking.budget.RUN_ALPHA` outside a hypothesis test."""
    examples = _examples()
    if examples is None:
        return RUN_ALPHA
    return call_alpha(RUN_ALPHA, examples, _CALLS.get(current_build_context(), 0) + 1)


def _spend() -> tuple[float, int]:
    """(level, index k) of this check; counts it against the current example."""
    examples = _examples()
    if examples is None:
        return RUN_ALPHA, 1
    ctx = current_build_context()
    k = _CALLS.get(ctx, 0) + 1
    _CALLS[ctx] = k
    return call_alpha(RUN_ALPHA, examples, k), k


def _seed(merged: Mapping[str, Any], k: int) -> int:
    """A seed that is a fixed pseudo-random function (SHA-256) of the configuration and ``k``."""
    text = repr(sorted((key, repr(value)) for key, value in merged.items())) + f"#{k}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def _plan(act: Any, init: Any, merged: dict[str, Any], alpha: float, seed: int) -> int | None:
    """Replicates for a check at level ``alpha`` (see the module docstring); ``None``: no plan
    (a zero prediction), verify's own adaptive plan is used.  A keyword-form MLP check is
    planned by :func:`varprop.checking.budget.plan_config` (which gives ``merged`` the
    1/n-corrected claim where the expansion decides it), any other by a pilot."""
    rtol = float(merged.get("rtol", 0.05))
    if merged.get("quantity") is None and not _is_network({"activation": act}):
        merged["quantity"] = "activation"  # verify's default for the keyword form, planned
    reps = plan_config(act, init, merged, alpha=alpha, quantities=MLP_QUANTITIES)
    if reps is not None:
        return reps
    pilot = verify(act, init, **merged, replicates=_PILOT, alpha=0.5, seed=seed ^ 0x5EED)
    if pilot.relative_interval is None:
        return None
    lo, hi = pilot.relative_interval
    sd = (hi - lo) / (2 * 0.6744897501960817) * math.sqrt(_PILOT)  # z_{0.25}: alpha=0.5 interval
    return planned_replicates(sd, check_margin(rtol, pilot.tol), alpha, safety=1.5)


def _merge(config: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if config is not None:
        if not isinstance(config, Mapping):
            raise fail_type("config", config, "a mapping of verify() keyword arguments")
        merged = {**dict(config), **kwargs}
    else:
        merged = dict(kwargs)
    if "activation" not in merged or ("init" not in merged and not _is_network(merged)):
        raise fail("config", config, "a configuration with 'activation' and 'init'")
    return merged


def _is_network(merged: Mapping[str, Any]) -> bool:
    return not isinstance(merged["activation"], (str, Activation))


def _run(merged: dict[str, Any]) -> Verdict:
    """``verify`` at this check's share of the run's error budget (see the module docstring);
    with the caller's own ``alpha``, ``replicates`` or ``budget``, plain ``verify``."""
    check_keywords(merged)  # a misspelt keyword: "did you mean 'depth'?"
    act, init = merged.pop("activation"), merged.pop("init", None)
    if any(k in merged for k in ("alpha", "replicates", "budget")):
        return verify(act, init, **merged)
    alpha, k = _spend()
    seed = merged.pop("seed", None)
    seed = _seed({"activation": act, "init": init, **merged}, k) if seed is None else seed
    reps = _plan(act, init, merged, alpha, seed)
    deadline = settings.default.deadline if currently_in_test_context() else None
    check_cost(act, init, merged, reps, alpha=alpha,
               max_seconds=HELPER_SECONDS if deadline is None else deadline.total_seconds())
    if currently_in_test_context():
        note(f"varprop check {k}: alpha={alpha:.3g}, seed={seed}, replicates={reps}")
    # refutation at alpha/2; the plan spends the other half on "not confirmed although exact"
    return verify(act, init, **merged, alpha=alpha / 2, seed=seed, replicates=reps)


def assert_prediction_confirmed(config: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Verdict:
    """Run :func:`verify` at this check's share of the run's error budget and raise
    ``AssertionError`` (carrying the :class:`Verdict`) unless it is ``confirmed`` -- within
    +-``rtol``, or, for an approximate prediction, within its declared allowance
    (``verdict.within_allowance``; the reason gives the deviation).  Returns the verdict.

    A correct exact prediction fails (refuted or inconclusive) with probability at most the
    check's level (module docstring)."""
    verdict = _run(_merge(config, kwargs))
    if not verdict.confirmed:
        raise AssertionError(f"prediction not confirmed:\n{verdict}", verdict)
    return verdict


def assert_not_refuted(config: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Verdict:
    """Raise ``AssertionError`` (with the :class:`Verdict`) only when the prediction is refuted
    (at this check's share of the run's error budget)."""
    verdict = _run(_merge(config, kwargs))
    if verdict.refuted:
        raise AssertionError(f"prediction refuted:\n{verdict}", verdict)
    return verdict


def assert_variance_preserved(activation_: Any, init: Any, /, *, fan_in: int, depth: int = 10,
                              quantity: str = "preactivation", rtol: float = 0.05,
                              **kwargs: Any) -> Verdict:
    """Assert that the variance at the last layer equals the variance at the first (the scheme
    preserves it through ``depth`` layers): the user's claim ``predicted = Var at layer 1`` must
    not be refuted and must be confirmed within ``rtol`` (at this check's share of the run's
    error budget).  Raises ``AssertionError`` with the :class:`Verdict` otherwise."""
    shared = {k: kwargs[k] for k in ("fan_out", "input_variance", "bias_variance", "method")
              if k in kwargs}  # the same network as the one verified, one layer deep
    first = float(predict_variance(activation_, init, fan_in=fan_in, depth=1, quantity=quantity,
                                   **shared))
    verdict = _run({"activation": activation_, "init": init, "fan_in": fan_in, "depth": depth,
                    "quantity": quantity, "predicted": first, "rtol": rtol, **kwargs})
    if not verdict.confirmed or verdict.within_allowance:  # within rtol, not only the allowance
        raise AssertionError(f"variance not preserved over {depth} layers:\n{verdict}", verdict)
    return verdict


def assert_initializer_matches(weights: Any, scheme: InitScheme | str, /, *,
                               fan_in: int | None = None, fan_out: int | None = None,
                               alpha: float | None = None, **kwargs: Any) -> InitializerVerdict:
    r"""Assert that :func:`varprop.check_initializer` does not refute ``weights`` as draws of
    ``scheme``, at this check's share of the run's error budget (``alpha=None``) or at
    ``alpha``.  Raises ``AssertionError`` with the verdict when refuted; returns the verdict.

    A single matrix rarely *confirms* a variance to 5% at :math:`\alpha \approx 10^{-8}`
    (its :math:`N` entries give a relative standard error :math:`\sqrt{2/N}`), so only a
    refutation fails; the power of that refutation is in ``docs/testing.md`` (a 10% wrong
    variance is refuted from a :math:`256\times256` matrix)."""
    level = _spend()[0] if alpha is None else alpha
    verdict = check_initializer(weights, scheme, fan_in=fan_in, fan_out=fan_out, alpha=level,
                                **kwargs)
    if verdict.refuted:
        raise AssertionError(f"initializer refuted:\n{verdict}", verdict)
    return verdict


def _warm(pool: Sequence[Activation], quantity_pool: Sequence[str]) -> None:
    """Check each activation of ``pool`` once with 8 replicates, per quantity, when the strategy
    is built: the first prediction of an activation builds its symbolic moments (up to 0.5 s),
    which would otherwise count against the deadline of the example that first draws it."""
    for act in pool:
        for q in quantity_pool:
            key = f"{act!r}|{q}"
            if key not in _WARM:
                verify(act, "he_normal", fan_in=8, depth=2, quantity=q, replicates=8, alpha=0.5)
                _WARM.add(key)


def prepare(*items: Activation | InitScheme | str) -> None:
    r"""Do the one-off set-up of activations and init schemes (by object or name) now, outside
    any example: the first prediction of an activation builds its symbolic moments and the
    first check of a scheme's weights its numeric moments and laws (0.2-0.8 s each), which
    would otherwise count against the deadline of the example that first uses them.  Call it at
    module level of a test file (``layer_configs`` prepares its own activation pool).  It takes
    what :func:`varprop.init_scheme` and :func:`varprop.activation` take: framework-qualified
    scheme names (``"torch:default"``, ``"keras:he_normal"``) and custom activation expressions
    (``"x*sin(x)"``); anything else raises ``InvalidArgument`` before any set-up.

    >>> prepare("he_normal", "relu")
    """
    for resolved in [resolve_item(item) for item in items]:  # all validated first
        if isinstance(resolved, InitScheme):
            if resolved.is_iid:
                w = resolved.sample(np.random.default_rng(0), 8, 8)
                check_initializer(w, resolved, fan_in=8, fan_out=8)
        else:
            _warm([resolved], ["preactivation", "gradient"])


def _decidable(config: dict[str, Any], alpha: float, rtol: float, max_seconds: float,
               free_width: bool) -> dict[str, Any] | None:
    """``config`` with its depth lowered (and, if ``free_width``, its width moved to the powers of
    two from 16 to 256, narrower ones first) until its check is predicted to take at most
    ``max_seconds``; ``None`` if none is."""
    act, scheme, q, n, L = (config[k] for k in ("activation", "init", "quantity", "fan_in",
                                                "depth"))
    powers = [m for m in (16, 32, 64, 128, 256) if m != n]  # cached across draws
    candidates = [n] if not free_width else [n] + sorted(powers, key=lambda m: (m > n,
                                                                             abs(m - n)))

    def fits(width: int, d: int) -> bool:
        key = repr((act, scheme, q, width, d, alpha, rtol, config["input_variance"],
                    config["bias_variance"]))
        if key not in _FITS:
            _, seconds = plan_check(act, scheme, [width] * (d + 1), q, alpha=alpha, rtol=rtol,
                                    input_variance=config["input_variance"],
                                    bias_variance=config["bias_variance"], max_cv2=MAX_CV2)
            _FITS[key] = seconds <= max_seconds
        return _FITS[key]

    for width in candidates:
        if fits(width, 1):
            d = 1
            while d < L and fits(width, d + 1):  # the cost grows with the depth
                d += 1
            return {**config, "fan_in": width, "depth": d}
    return None


def layer_configs(*, activation: Any = None, init: Any = None, fan_in: Any = None,
                  depth: Any = None, quantity: Any = None, bias_variance: Any = 0.0,
                  input_variance: Any = 1.0, rtol: float = 0.05,
                  max_seconds: float = CHECK_SECONDS) -> st.SearchStrategy[dict[str, Any]]:
    r"""Whole configurations the checker decides within the error budget and the deadline: a
    dict of :func:`verify` keyword arguments.

    Each argument is a fixed value or a strategy (defaults: :func:`activations`,
    :func:`init_schemes` with zero-mean i.i.d. weights, :func:`widths` from 16 to 256,
    :func:`depths` up to 10, the MLP quantities).  A drawn configuration whose check at
    ``rtol`` (at the level of the first check of the example, :func:`check_alpha`) is predicted
    to take more than ``max_seconds`` (:func:`varprop.checking.budget.plan_check`) is made
    decidable: its depth is lowered, then (for the default widths) its width moved to a power
    of two in [16, 256]; if none is, the whole configuration is drawn again (up to 5 times, then
    the example is rejected).  Width 1 and deep narrow nets, whose statistic is too heavy-tailed,
    are never drawn.  Building the strategy checks each activation of its pool (``None``, a
    name, an :class:`~varprop.Activation` or an :func:`activations` strategy; any other
    strategy's pool is unknown) once with 8 replicates, so that its one-off symbolic set-up
    does not count against an example's deadline.  The cost predictions are cached, so that
    drawing stays cheap (hypothesis' health check allows 1 s for the first 10 examples).
    """
    if not (isinstance(max_seconds, (int, float)) and not isinstance(max_seconds, bool)
            and math.isfinite(max_seconds) and max_seconds > 0):
        raise fail("max_seconds", max_seconds, "a positive finite number of seconds")
    rtol_f = check_probability("rtol", rtol)
    given = {"activation": activation, "init": init, "fan_in": fan_in, "depth": depth,
             "quantity": quantity, "bias_variance": bias_variance,
             "input_variance": input_variance}
    check_fixed_config({k: v for k, v in given.items()
                        if v is not None and not isinstance(v, st.SearchStrategy)})
    if activation is None:
        pool: list[Activation] = [resolve_activation(n) for n in activation_names()]
    elif isinstance(activation, st.SearchStrategy):
        pool = _POOLS.get(activation, [])
    else:
        pool = [resolve_activation(activation)]
    q_pool = (list(MLP_QUANTITIES) if quantity is None else
              [] if isinstance(quantity, st.SearchStrategy) else [quantity])
    _warm(pool, [q for q in q_pool if q in ("preactivation", "gradient")] or q_pool[:1])
    return _layer_configs(
        _as_strategy(activation) if activation is not None else activations(),
        _as_strategy(init) if init is not None else init_schemes(zero_mean=True, iid=True),
        _as_strategy(quantity) if quantity is not None else quantities(MLP_QUANTITIES),
        _as_strategy(fan_in) if fan_in is not None else widths(_MIN_DRAWN_WIDTH, _MAX_DRAWN_WIDTH),
        _as_strategy(depth) if depth is not None else depths(1, 10),
        _as_strategy(bias_variance), _as_strategy(input_variance),
        rtol_f, float(max_seconds), fan_in is None)


@st.composite
def _layer_configs(draw: st.DrawFn, act_s: Any, init_s: Any, q_s: Any, n_s: Any, L_s: Any,
                   b_s: Any, v_s: Any, rtol: float, max_seconds: float,
                   free_width: bool) -> dict[str, Any]:
    alpha = None
    for _ in range(_TRIES):
        config = {"activation": resolve_activation(draw(act_s)),
                  "init": resolve_scheme(draw(init_s)), "fan_in": draw(n_s), "depth": draw(L_s),
                  "quantity": draw(q_s), "bias_variance": draw(b_s),
                  "input_variance": draw(v_s)}
        scheme = config["init"]
        if (config["quantity"] not in MLP_QUANTITIES or not scheme.is_zero_mean
                or not scheme.is_iid):
            return config  # no predicted cost: drawn as is (the helpers plan it by a pilot)
        alpha = check_alpha() if alpha is None else alpha
        decided = _decidable(config, alpha, rtol, max_seconds, free_width)
        if decided is not None:
            return decided
    reject()
