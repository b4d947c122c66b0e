"""Hypothesis strategies for property-based tests of variance propagation (yours and ours).

>>> from hypothesis import given, settings
>>> from varprop import strategies as vst
>>> @settings(max_examples=5, derandomize=True, deadline=None)
... @given(vst.layer_configs(activation=vst.activations(["relu"]),
...                          init=vst.init_schemes(zero_mean=True, symmetric=True, gaussian=True),
...                          quantity="preactivation"))
... def test_relu_preserves(config):
...     vst.assert_prediction_confirmed(config)

Every strategy draws *objects the library accepts* (an :class:`~varprop.Activation`, an
:class:`~varprop.InitScheme`, widths, depths), and :func:`layer_configs` draws whole
configurations as dictionaries of :func:`varprop.checking.check.verify` keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from varprop._util.validation import check_positive_int, fail, fail_type
from varprop.checking.check import QUANTITIES, Verdict, verify
from varprop.components.activations import Activation, activation, activation_names
from varprop.components.schemes import InitScheme, init_scheme, scheme_names
from varprop.theory.predict import predict_variance

__all__ = [
    "activations",
    "init_schemes",
    "widths",
    "depths",
    "quantities",
    "layer_configs",
    "assert_prediction_confirmed",
    "assert_variance_preserved",
    "assert_not_refuted",
]


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
    for n in pool:
        if n == "leaky_relu" and parametrized:
            strategies.append(st.builds(lambda s: activation("leaky_relu", negative_slope=s),
                                        st.sampled_from([0.01, 0.1, 0.2])))
        else:
            strategies.append(st.just(activation(n)))
    return st.one_of(strategies)


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
        raise fail("init_schemes", dict(zero_mean=zero_mean, symmetric=symmetric,
                                        gaussian=gaussian, iid=iid), "filters some scheme satisfies")
    return st.sampled_from(pool)


def widths(min_value: int = 1, max_value: int = 512) -> st.SearchStrategy[int]:
    """Layer widths, drawn log-uniformly-ish: small ones (1, 2, ...) are as likely as large."""
    lo, hi = check_positive_int("min_value", min_value), check_positive_int("max_value", max_value)
    if hi < lo:
        raise fail("max_value", max_value, f"an integer >= min_value={lo}")
    powers = sorted({min(max(2**k, lo), hi) for k in range(0, 11)})
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


@st.composite
def layer_configs(draw: st.DrawFn, *, activation: Any = None, init: Any = None,
                  fan_in: Any = None, depth: Any = None, quantity: Any = None,
                  bias_variance: Any = 0.0, input_variance: Any = 1.0) -> dict[str, Any]:
    """Whole configurations: a dict of :func:`verify` keyword arguments.

    Each argument is a fixed value or a strategy (defaults: :func:`activations`,
    :func:`init_schemes` with zero mean, :func:`widths` up to 256, :func:`depths` up to 10,
    :func:`quantities`).
    """
    return draw(st.fixed_dictionaries({
        "activation": _as_strategy(activation) if activation is not None else activations(),
        "init": _as_strategy(init) if init is not None else init_schemes(zero_mean=True),
        "fan_in": _as_strategy(fan_in) if fan_in is not None else widths(1, 256),
        "depth": _as_strategy(depth) if depth is not None else depths(1, 10),
        "quantity": _as_strategy(quantity) if quantity is not None else quantities(),
        "bias_variance": _as_strategy(bias_variance),
        "input_variance": _as_strategy(input_variance),
    }))


def _run(config: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> Verdict:
    if config is not None:
        if not isinstance(config, Mapping):
            raise fail_type("config", config, "a mapping of verify() keyword arguments")
        merged = {**dict(config), **kwargs}
    else:
        merged = kwargs
    if "activation" not in merged or "init" not in merged:
        raise fail("config", config, "a configuration with 'activation' and 'init'")
    act, init = merged.pop("activation"), merged.pop("init")
    return verify(act, init, **merged)


def assert_prediction_confirmed(config: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Verdict:
    """Run :func:`verify` and raise ``AssertionError`` (carrying the :class:`Verdict`) unless it
    is ``confirmed`` -- within +-``rtol``, or, for an approximate prediction, within its
    declared allowance (``verdict.within_allowance``; the reason gives the deviation).  Returns
    the verdict."""
    verdict = _run(config, kwargs)
    if not verdict.confirmed:
        raise AssertionError(f"prediction not confirmed:\n{verdict}", verdict)
    return verdict


def assert_not_refuted(config: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Verdict:
    """Raise ``AssertionError`` (with the :class:`Verdict`) only when the prediction is refuted."""
    verdict = _run(config, kwargs)
    if verdict.refuted:
        raise AssertionError(f"prediction refuted:\n{verdict}", verdict)
    return verdict


def assert_variance_preserved(activation_: Any, init: Any, /, *, fan_in: int, depth: int = 10,
                              quantity: str = "preactivation", rtol: float = 0.05,
                              **kwargs: Any) -> Verdict:
    """Assert that the variance at the last layer equals the variance at the first (the scheme
    preserves it through ``depth`` layers): the user's claim ``predicted = Var at layer 1`` must
    not be refuted and must be confirmed within ``rtol``.  Raises ``AssertionError`` with the
    :class:`Verdict` otherwise."""
    shared = {k: kwargs[k] for k in ("fan_out", "input_variance", "bias_variance", "method")
              if k in kwargs}  # the same network as the one verified, one layer deep
    first = float(predict_variance(activation_, init, fan_in=fan_in, depth=1, quantity=quantity,
                                   **shared))
    verdict = verify(activation_, init, fan_in=fan_in, depth=depth, quantity=quantity,
                     predicted=first, rtol=rtol, **kwargs)
    if not verdict.confirmed or verdict.within_allowance:  # within rtol, not only the allowance
        raise AssertionError(f"variance not preserved over {depth} layers:\n{verdict}", verdict)
    return verdict
