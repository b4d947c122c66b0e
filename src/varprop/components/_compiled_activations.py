# ruff: noqa  (generated code: lambdify's text, kept verbatim)
"""The registered activations at their default parameters, compiled: GENERATED, do not edit.

Written by :mod:`varprop.components.compiled_activations` from the registered factories
(regenerate: ``python -m varprop.components.compiled_activations``);
read by :func:`varprop.components.activation._build_cached`.
``CATALOGUE`` maps each registered name to its fields; ``code`` is ``sympy.lambdify``'s source
for the closed form's evaluation forms of (E phi, E phi^2, E phi', E phi'^2) in ``(mu, q)``.
Imports no SymPy.
"""

from math import asin
from math import erf
from math import exp
from math import pi
from math import sqrt
from varprop._math.gauss_exp import gauss_exp_below_zero
from varprop._math.gauss_exp import gauss_exp_excess


def _linear_moments(mu, q):
    return [mu, mu**2 + q, 1, 1]


def _relu_moments(mu, q):
    return [mu*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2) + (1/2)*sqrt(2)*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi), (1/2)*sqrt(2)*mu*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi) + (mu**2 + q)*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2), (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2, (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2]


def _leaky_relu_moments(mu, q):
    return [(1/100)*mu*(1/2 - 1/2*erf((1/2)*sqrt(2)*mu/sqrt(q))) + mu*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2) + (99/200)*sqrt(2)*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi), (9999/20000)*sqrt(2)*mu*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi) + (1/10000)*(1/2 - 1/2*erf((1/2)*sqrt(2)*mu/sqrt(q)))*(mu**2 + q) + (mu**2 + q)*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2), (99/200)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 101/200, (9999/20000)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 10001/20000]


def _tanh_moments(mu, q):
    return [0, 2*asin((1/2)*pi*q/((1/2)*pi*q + 1))/pi, 1/sqrt((1/2)*pi*q + 1), 1/sqrt(pi*q + 1)]


def _sigmoid_moments(mu, q):
    return [1/2, (1/2)*asin((1/8)*pi*q/((1/8)*pi*q + 1))/pi + 1/4, (1/4)/sqrt((1/8)*pi*q + 1), (1/16)/sqrt((1/4)*pi*q + 1)]


def _erf_moments(mu, q):
    return [0, 2*asin(2*q/(2*q + 1))/pi, 2/(sqrt(pi)*sqrt(2*q + 1)), 4/(pi*sqrt(4*q + 1))]


def _elu_moments(mu, q):
    return [mu*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2) + (1/2)*sqrt(2)*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi) + gauss_exp_excess(1, mu, q), (1/2)*sqrt(2)*mu*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi) + (mu**2 + q)*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2) - 2*gauss_exp_excess(1, mu, q) + gauss_exp_excess(2, mu, q), (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + gauss_exp_below_zero(1, mu, q) + 1/2, (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + gauss_exp_below_zero(2, mu, q) + 1/2]


def _celu_moments(mu, q):
    return [mu*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2) + (1/2)*sqrt(2)*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi) + gauss_exp_excess(1, mu, q), (1/2)*sqrt(2)*mu*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi) + (mu**2 + q)*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2) - 2*gauss_exp_excess(1, mu, q) + gauss_exp_excess(2, mu, q), (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + gauss_exp_below_zero(1, mu, q) + 1/2, (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + gauss_exp_below_zero(2, mu, q) + 1/2]


def _selu_moments(mu, q):
    return [(5253504936777402467096674926473/5000000000000000000000000000000)*mu*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2) + (5253504936777402467096674926473/10000000000000000000000000000000)*sqrt(2)*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi) + (87904967042368842997010876040615967103012290445610415488549141/50000000000000000000000000000000000000000000000000000000000000)*gauss_exp_excess(1, mu, q), (27599314120744539492906273226674681883139653659190559956219729/50000000000000000000000000000000000000000000000000000000000000)*sqrt(2)*mu*sqrt(q)*exp(-1/2*mu**2/q)/sqrt(pi) + (27599314120744539492906273226674681883139653659190559956219729/25000000000000000000000000000000000000000000000000000000000000)*(mu**2 + q)*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + 1/2) - 7727283230719952492755963170888232048250335913437546536223345465345994719732325918444232470691167975763176176487293171837881/1250000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000*gauss_exp_excess(1, mu, q) + (7727283230719952492755963170888232048250335913437546536223345465345994719732325918444232470691167975763176176487293171837881/2500000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000)*gauss_exp_excess(2, mu, q), (5253504936777402467096674926473/10000000000000000000000000000000)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + (87904967042368842997010876040615967103012290445610415488549141/50000000000000000000000000000000000000000000000000000000000000)*gauss_exp_below_zero(1, mu, q) + 5253504936777402467096674926473/10000000000000000000000000000000, (27599314120744539492906273226674681883139653659190559956219729/50000000000000000000000000000000000000000000000000000000000000)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + (7727283230719952492755963170888232048250335913437546536223345465345994719732325918444232470691167975763176176487293171837881/2500000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000)*gauss_exp_below_zero(2, mu, q) + 27599314120744539492906273226674681883139653659190559956219729/50000000000000000000000000000000000000000000000000000000000000]


def _hardtanh_moments(mu, q):
    return [mu*((1/2)*erf((1/2)*sqrt(2)*(1 - mu)/sqrt(q)) - 1/2*erf((1/2)*sqrt(2)*(-mu - 1)/sqrt(q))) + sqrt(q)*((1/2)*sqrt(2)*exp(-1/2*(-mu - 1)**2/q)/sqrt(pi) - 1/2*sqrt(2)*exp(-1/2*(1 - mu)**2/q)/sqrt(pi)) - 1/2*erf((1/2)*sqrt(2)*(1 - mu)/sqrt(q)) - 1/2*erf((1/2)*sqrt(2)*(-mu - 1)/sqrt(q)), mu**2*((1/2)*erf((1/2)*sqrt(2)*(1 - mu)/sqrt(q)) - 1/2*erf((1/2)*sqrt(2)*(-mu - 1)/sqrt(q))) + 2*mu*sqrt(q)*((1/2)*sqrt(2)*exp(-1/2*(-mu - 1)**2/q)/sqrt(pi) - 1/2*sqrt(2)*exp(-1/2*(1 - mu)**2/q)/sqrt(pi)) + q*((1/2)*erf((1/2)*sqrt(2)*(1 - mu)/sqrt(q)) - 1/2*erf((1/2)*sqrt(2)*(-mu - 1)/sqrt(q)) - 1/2*sqrt(2)*(1 - mu)*exp(-1/2*(1 - mu)**2/q)/(sqrt(pi)*sqrt(q)) + (1/2)*sqrt(2)*(-mu - 1)*exp(-1/2*(-mu - 1)**2/q)/(sqrt(pi)*sqrt(q))) - 1/2*erf((1/2)*sqrt(2)*(1 - mu)/sqrt(q)) + (1/2)*erf((1/2)*sqrt(2)*(-mu - 1)/sqrt(q)) + 1, (1/2)*erf((1/2)*sqrt(2)*(1 - mu)/sqrt(q)) - 1/2*erf((1/2)*sqrt(2)*(-mu - 1)/sqrt(q)), (1/2)*erf((1/2)*sqrt(2)*(1 - mu)/sqrt(q)) - 1/2*erf((1/2)*sqrt(2)*(-mu - 1)/sqrt(q))]


def _relu6_moments(mu, q):
    return [mu*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + (1/2)*erf((1/2)*sqrt(2)*(6 - mu)/sqrt(q))) + sqrt(q)*(-1/2*sqrt(2)*exp(-1/2*(6 - mu)**2/q)/sqrt(pi) + (1/2)*sqrt(2)*exp(-1/2*mu**2/q)/sqrt(pi)) - 3*erf((1/2)*sqrt(2)*(6 - mu)/sqrt(q)) + 3, mu**2*((1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + (1/2)*erf((1/2)*sqrt(2)*(6 - mu)/sqrt(q))) + 2*mu*sqrt(q)*(-1/2*sqrt(2)*exp(-1/2*(6 - mu)**2/q)/sqrt(pi) + (1/2)*sqrt(2)*exp(-1/2*mu**2/q)/sqrt(pi)) + q*(-1/2*sqrt(2)*mu*exp(-1/2*mu**2/q)/(sqrt(pi)*sqrt(q)) + (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + (1/2)*erf((1/2)*sqrt(2)*(6 - mu)/sqrt(q)) - 1/2*sqrt(2)*(6 - mu)*exp(-1/2*(6 - mu)**2/q)/(sqrt(pi)*sqrt(q))) - 18*erf((1/2)*sqrt(2)*(6 - mu)/sqrt(q)) + 18, (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + (1/2)*erf((1/2)*sqrt(2)*(6 - mu)/sqrt(q)), (1/2)*erf((1/2)*sqrt(2)*mu/sqrt(q)) + (1/2)*erf((1/2)*sqrt(2)*(6 - mu)/sqrt(q))]


def _gelu_moments(mu, q):
    return [(1/2)*sqrt(2)*q/(sqrt(pi)*sqrt(q + 1)), (1/2)*q*(2*q/((q + 1)*sqrt(2*q + 1)) + asin(q/(q + 1)))/pi + (1/4)*q, 1/2, (1/2)*q/(pi*(2*q + 1)**(3/2)) + q/(pi*(q + 1)*sqrt(2*q + 1)) + (1/2)*asin(q/(q + 1))/pi + 1/4]

from functools import partial
from varprop.components import activation_numerics
import numpy

#: registered name -> the activation's fields at its default parameters
CATALOGUE = {
    'linear': {
        "factory": 'varprop.components.activations.linear',
        "key": (),
        "name": 'linear',
        "params": {},
        "function": activation_numerics.identity,
        "derivative_function": activation_numerics.ones,
        "kinks": (),
        "latex_name": '\\mathrm{id}',
        "reference": '',
        "traits": {'linear': True, 'slope': 1.0, 'odd': True, 'homogeneous_degree': 1.0, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _linear_moments,
            "exact": True,
            "zero_mean_only": False,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'relu': {
        "factory": 'varprop.components.activations.relu',
        "key": (),
        "name": 'relu',
        "params": {},
        "function": activation_numerics.relu,
        "derivative_function": activation_numerics.step,
        "kinks": (0.0,),
        "latex_name": '\\mathrm{ReLU}',
        "reference": 'He et al. 2015',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': 1.0, 'kinks': (0.0,), 'derivative_nonvanishing': False},
        "closed_form": {
            "code": _relu_moments,
            "exact": True,
            "zero_mean_only": False,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'leaky_relu': {
        "factory": 'varprop.components.activations.leaky_relu',
        "key": (('negative_slope', float, 0.01, False),),
        "name": 'leaky_relu',
        "params": {'negative_slope': 0.01},
        "function": partial(activation_numerics.leaky_relu, 0.01),
        "derivative_function": partial(activation_numerics.leaky_step, 0.01),
        "kinks": (0.0,),
        "latex_name": '\\mathrm{LeakyReLU}_{\\frac{1}{100}}',
        "reference": 'Maas et al. 2013; He et al. 2015',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': 1.0, 'kinks': (0.0,), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _leaky_relu_moments,
            "exact": True,
            "zero_mean_only": False,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'tanh': {
        "factory": 'varprop.components.activations.tanh',
        "key": (),
        "name": 'tanh',
        "params": {},
        "function": numpy.tanh,
        "derivative_function": activation_numerics.sech2,
        "kinks": (),
        "latex_name": '\\tanh',
        "reference": '',
        "traits": {'linear': False, 'slope': None, 'odd': True, 'homogeneous_degree': None, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _tanh_moments,
            "exact": False,
            "zero_mean_only": True,
            "approximation": 'tanh(x) ~ erf(sqrt(pi) x / 2)',
            "max_relative_error": {'mean': 0.0, 'second': 0.062, 'deriv_mean': 0.031, 'deriv_second': 0.061},
        },
    },
    'sigmoid': {
        "factory": 'varprop.components.activations.sigmoid',
        "key": (),
        "name": 'sigmoid',
        "params": {},
        "function": activation_numerics.sigmoid,
        "derivative_function": activation_numerics.sigmoid_slope,
        "kinks": (),
        "latex_name": '\\sigma',
        "reference": '',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _sigmoid_moments,
            "exact": False,
            "zero_mean_only": True,
            "approximation": 'sigmoid(x) ~ Phi(sqrt(pi/8) x)',
            "max_relative_error": {'mean': 0.0, 'second': 0.019, 'deriv_mean': 0.031, 'deriv_second': 0.061},
        },
    },
    'erf': {
        "factory": 'varprop.components.activations.erf',
        "key": (),
        "name": 'erf',
        "params": {},
        "function": activation_numerics.erf,
        "derivative_function": activation_numerics.erf_slope,
        "kinks": (),
        "latex_name": '\\operatorname{erf}',
        "reference": 'Williams 1997',
        "traits": {'linear': False, 'slope': None, 'odd': True, 'homogeneous_degree': None, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _erf_moments,
            "exact": True,
            "zero_mean_only": True,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'elu': {
        "factory": 'varprop.components.activations_extra.elu',
        "key": (('alpha', float, 1.0, False),),
        "name": 'elu',
        "params": {'alpha': 1.0},
        "function": partial(activation_numerics.exponential_linear, 1.0, 1.0, 1.0),
        "derivative_function": partial(activation_numerics.exponential_linear_slope, 1.0, 1.0, 1.0),
        "kinks": (0.0,),
        "latex_name": '\\mathrm{ELU}',
        "reference": 'Clevert et al. 2016',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (0.0,), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _elu_moments,
            "exact": True,
            "zero_mean_only": False,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'celu': {
        "factory": 'varprop.components.activations_extra.celu',
        "key": (('alpha', float, 1.0, False),),
        "name": 'celu',
        "params": {'alpha': 1.0},
        "function": partial(activation_numerics.exponential_linear, 1.0, 1.0, 1.0),
        "derivative_function": partial(activation_numerics.exponential_linear_slope, 1.0, 1.0, 1.0),
        "kinks": (0.0,),
        "latex_name": '\\mathrm{CELU}',
        "reference": 'Barron 2017',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (0.0,), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _celu_moments,
            "exact": True,
            "zero_mean_only": False,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'selu': {
        "factory": 'varprop.components.activations_extra.selu',
        "key": (),
        "name": 'selu',
        "params": {},
        "function": partial(activation_numerics.exponential_linear, 1.0507009873554805, 1.6732632423543772, 1.0),
        "derivative_function": partial(activation_numerics.exponential_linear_slope, 1.0507009873554805, 1.6732632423543772, 1.0),
        "kinks": (0.0,),
        "latex_name": '\\mathrm{SELU}',
        "reference": 'Klambauer et al. 2017',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (0.0,), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _selu_moments,
            "exact": True,
            "zero_mean_only": False,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'hardtanh': {
        "factory": 'varprop.components.activations_extra.hardtanh',
        "key": (('max_val', float, 1.0, False), ('min_val', float, -1.0, True),),
        "name": 'hardtanh',
        "params": {'min_val': -1.0, 'max_val': 1.0},
        "function": partial(activation_numerics.clipped, -1.0, 1.0),
        "derivative_function": partial(activation_numerics.clipped_slope, -1.0, 1.0),
        "kinks": (-1.0, 1.0),
        "latex_name": '\\mathrm{hardtanh}',
        "reference": '',
        "traits": {'linear': False, 'slope': None, 'odd': True, 'homogeneous_degree': None, 'kinks': (-1.0, 1.0), 'derivative_nonvanishing': False},
        "closed_form": {
            "code": _hardtanh_moments,
            "exact": True,
            "zero_mean_only": False,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'relu6': {
        "factory": 'varprop.components.activations_extra.relu6',
        "key": (),
        "name": 'relu6',
        "params": {},
        "function": partial(activation_numerics.clipped, 0.0, 6.0),
        "derivative_function": partial(activation_numerics.clipped_slope, 0.0, 6.0),
        "kinks": (0.0, 6.0),
        "latex_name": '\\mathrm{ReLU6}',
        "reference": '',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (0.0, 6.0), 'derivative_nonvanishing': False},
        "closed_form": {
            "code": _relu6_moments,
            "exact": True,
            "zero_mean_only": False,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'gelu': {
        "factory": 'varprop.components.activations_extra.gelu',
        "key": (('approximate', str, 'none', False),),
        "name": 'gelu',
        "params": {'approximate': 'none'},
        "function": activation_numerics.gelu,
        "derivative_function": activation_numerics.gelu_slope,
        "kinks": (),
        "latex_name": '\\mathrm{GELU}',
        "reference": 'Hendrycks & Gimpel 2016',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": {
            "code": _gelu_moments,
            "exact": True,
            "zero_mean_only": True,
            "approximation": '',
            "max_relative_error": {},
        },
    },
    'gelu_tanh': {
        "factory": 'varprop.components.activations_extra.gelu_tanh',
        "key": (),
        "name": 'gelu',
        "params": {'approximate': 'tanh'},
        "function": activation_numerics.gelu_tanh,
        "derivative_function": activation_numerics.gelu_tanh_slope,
        "kinks": (),
        "latex_name": '\\mathrm{GELU}_{\\tanh}',
        "reference": 'Hendrycks & Gimpel 2016',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": None,
    },
    'silu': {
        "factory": 'varprop.components.activations_extra.silu',
        "key": (),
        "name": 'silu',
        "params": {},
        "function": activation_numerics.silu,
        "derivative_function": activation_numerics.silu_slope,
        "kinks": (),
        "latex_name": '\\mathrm{SiLU}',
        "reference": 'Elfwing et al. 2018',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": None,
    },
    'mish': {
        "factory": 'varprop.components.activations_extra.mish',
        "key": (),
        "name": 'mish',
        "params": {},
        "function": activation_numerics.mish,
        "derivative_function": activation_numerics.mish_slope,
        "kinks": (),
        "latex_name": '\\mathrm{Mish}',
        "reference": 'Misra 2019',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": None,
    },
    'softplus': {
        "factory": 'varprop.components.activations_extra.softplus',
        "key": (('beta', float, 1.0, False),),
        "name": 'softplus',
        "params": {'beta': 1.0},
        "function": partial(activation_numerics.softplus, 1.0),
        "derivative_function": partial(activation_numerics.softplus_slope, 1.0),
        "kinks": (),
        "latex_name": '\\mathrm{softplus}',
        "reference": '',
        "traits": {'linear': False, 'slope': None, 'odd': False, 'homogeneous_degree': None, 'kinks': (), 'derivative_nonvanishing': True},
        "closed_form": None,
    },
    'softsign': {
        "factory": 'varprop.components.activations_extra.softsign',
        "key": (),
        "name": 'softsign',
        "params": {},
        "function": activation_numerics.softsign,
        "derivative_function": activation_numerics.softsign_slope,
        "kinks": (0.0,),
        "latex_name": '\\mathrm{softsign}',
        "reference": '',
        "traits": {'linear': False, 'slope': None, 'odd': True, 'homogeneous_degree': None, 'kinks': (0.0,), 'derivative_nonvanishing': True},
        "closed_form": None,
    },
}
