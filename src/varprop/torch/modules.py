r"""The mapping table of :mod:`varprop.torch`: a PyTorch module or function call -> varprop layers.

Each entry reads the module's own hyper-parameters and tensors (weights through
:mod:`varprop.torch.inits`) and returns the varprop layers computing the same map on one
sample, or raises :class:`Unsupported` with the reason.  Shapes are per sample (no batch axis).

========================================  ====================================================
PyTorch                                   varprop
========================================  ====================================================
``nn.Linear`` (vector input)              ``Dense(out, init, bias_variance)``
``nn.Conv1d``/``nn.Conv2d`` (zeros or     ``Conv(out, kernel, stride, padding, dilation,
circular padding)                         groups, init, bias_variance)``
activation modules and calls              ``Nonlinearity`` (``ReLU``, ``LeakyReLU(slope)``,
                                          ``Tanh``, ``Sigmoid``, ``GELU(approximate)``,
                                          ``SiLU``, ``ELU(alpha)``, ``CELU``, ``SELU``,
                                          ``Softplus(beta)``, ``Mish``, ``Hardtanh``,
                                          ``ReLU6``, ``Softsign``; Hugging Face's
                                          ``GELUActivation``, ``NewGELUActivation``, ...)
``nn.Identity``, ``contiguous``, ``to``   nothing (the same tensor)
``nn.LayerNorm`` (last axis)              ``LayerNorm(eps)``
``nn.RMSNorm`` (last axis)                ``RMSNorm(eps)`` (``eps=None``: the dtype's)
``nn.BatchNorm1d/2d``, train              ``BatchNorm(eps, mode="train", batch_size=B)``, or
                                          ``PopulationBatchNorm(eps)`` beyond
                                          ``MAX_ENTRIES`` entries per channel (declared)
``nn.BatchNorm1d/2d``, eval               ``BatchNorm(eps, mode="eval")`` at the initial running
                                          statistics (mean 0, variance 1), else the affine map
                                          :math:`(x - \mu_r)/\sqrt{\sigma_r^2 + \epsilon}`
``nn.Dropout`` / ``F.dropout``            ``Dropout(p, mode=train/eval)``
``nn.Flatten``, ``flatten``/``view``      ``Flatten()`` (to one axis per sample)
``nn.AvgPool1d/2d`` (no padding)          ``AvgPool(kernel, stride)``
``nn.AdaptiveAvgPool1d/2d``               ``GlobalAvgPool()`` (output 1), or ``AvgPool`` where
                                          the input divides evenly
``nn.MaxPool1d/2d``                       ``MaxPool(kernel, stride, padding)``
``nn.RNN`` (one layer, batch_first)       ``Recurrent(hidden, tanh/relu, steps=T, ...)``
========================================  ====================================================

A norm layer's affine weight and bias (1 and 0 at initialisation) are an affine map
:math:`\gamma y + \beta` after it when they are the same in every channel (a linear
``Nonlinearity``); per-channel values are refused (the channels would not be exchangeable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from varprop.components.activation import activation
from varprop.network.layers import (
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    LayerNorm,
    MaxPool,
    Nonlinearity,
    Recurrent,
    RMSNorm,
)
from varprop.network.layers.base import Layer
from varprop.network.layers.batchpairs import MAX_ENTRIES
from varprop.network.layers.batchpop import PopulationBatchNorm
from varprop.torch.inits import bias_variance, recognise, torch_fans

__all__ = ["Mapped", "Unsupported", "map_module", "map_function", "function_kind", "IDENTITY",
           "is_mapped_type"]

Shape = tuple[int, ...]


class Unsupported(Exception):
    """A module or call that has no varprop counterpart (the reason is the message)."""


@dataclass(frozen=True)
class Mapped:
    """The layers a module or call maps to, with its weights' recognised law and a note."""

    layers: tuple[Layer, ...]
    init: str | None = None
    init_source: str | None = None
    note: str = ""


IDENTITY = Mapped(())

#: Activation module classes (by class name: Hugging Face's need no import) -> builder.
_ACTIVATIONS = {
    "ReLU": lambda m: "relu",
    "LeakyReLU": lambda m: Nonlinearity_of("leaky_relu", negative_slope=float(m.negative_slope)),
    "Tanh": lambda m: "tanh",
    "Sigmoid": lambda m: "sigmoid",
    "GELU": lambda m: "gelu_tanh" if m.approximate == "tanh" else "gelu",
    "SiLU": lambda m: "silu",
    "ELU": lambda m: Nonlinearity_of("elu", alpha=float(m.alpha)),
    "CELU": lambda m: Nonlinearity_of("celu", alpha=float(m.alpha)),
    "SELU": lambda m: "selu",
    "Softplus": lambda m: Nonlinearity_of("softplus", beta=float(m.beta)),
    "Mish": lambda m: "mish",
    "Hardtanh": lambda m: Nonlinearity_of("hardtanh", min_val=float(m.min_val),
                                          max_val=float(m.max_val)),
    "ReLU6": lambda m: "relu6",
    "Softsign": lambda m: "softsign",
    # transformers.activations
    "GELUActivation": lambda m: "gelu",
    "NewGELUActivation": lambda m: "gelu_tanh",
    "GELUTanh": lambda m: "gelu_tanh",
    "PytorchGELUTanh": lambda m: "gelu_tanh",
    "FastGELUActivation": lambda m: "gelu_tanh",
    "SiLUActivation": lambda m: "silu",
}
#: Functional activations: name -> (varprop name, {torch keyword: (position, default)}).
_FUNCTIONS = {
    "relu": ("relu", {}), "tanh": ("tanh", {}), "sigmoid": ("sigmoid", {}),
    "silu": ("silu", {}), "selu": ("selu", {}), "mish": ("mish", {}),
    "relu6": ("relu6", {}), "softsign": ("softsign", {}),
    "leaky_relu": ("leaky_relu", {"negative_slope": (1, 0.01)}),
    "elu": ("elu", {"alpha": (1, 1.0)}), "celu": ("celu", {"alpha": (1, 1.0)}),
    "softplus": ("softplus", {"beta": (1, 1.0)}),
    "hardtanh": ("hardtanh", {"min_val": (1, -1.0), "max_val": (2, 1.0)}),
}
#: Calls that return their input's values (per entry): no layer.
_SAME = frozenset({"contiguous", "clone", "to", "float", "double", "type_as", "detach"})
#: Calls that reshape.
_RESHAPES = frozenset({"flatten", "view", "reshape"})


def Nonlinearity_of(name: str, **params: float) -> Nonlinearity:  # noqa: N802 - a factory
    """A ``Nonlinearity`` of the registered activation ``name`` with ``params``."""
    return Nonlinearity(activation(name, **params))


def function_kind(func: object) -> str:
    """A call's kind: ``torch.add``/``Tensor.__add__``/``__iadd__``/``add_`` -> ``"add"``."""
    name = getattr(func, "__name__", type(func).__name__)
    core = name.strip("_")
    if core in ("iadd", "radd"):
        return "add"
    return core[:-1] if core.endswith("_") else core


def _activation(spec: str | Nonlinearity) -> Mapped:
    return Mapped((spec if isinstance(spec, Nonlinearity) else Nonlinearity(spec),))


def _affine(gamma: float, beta: float) -> tuple[Layer, ...]:
    """``gamma * x + beta`` as a linear ``Nonlinearity`` (nothing for 1, 0)."""
    if gamma == 1.0 and beta == 0.0:
        return ()
    return (Nonlinearity(f"{gamma!r}*x + {beta!r}"),)


def _uniform(t: torch.Tensor | None, default: float, what: str) -> float:
    if t is None:
        return default
    v = t.detach().to("cpu", torch.float64)
    if not torch.all(v == v.reshape(-1)[0]):
        raise Unsupported(f"its {what} differs between channels (the channels would not be "
                          "exchangeable)")
    return float(v.reshape(-1)[0])


def _weighted(layer_of: object, module: nn.Module, fans: tuple[int, int] | None = None,
              rnn: bool = False) -> Mapped:
    law = recognise(module.weight, fans=fans, rnn=rnn)
    fan_in = (fans or torch_fans(tuple(module.weight.shape)))[0]
    bv, bnote = bias_variance(getattr(module, "bias", None), fan_in)
    layer = layer_of(law.scheme, bv)  # type: ignore[operator]
    return Mapped((layer,), law.name, law.source, f"{law.note}; {bnote}")


def _conv(m: nn.Module, in_shape: Shape) -> Mapped:
    nd = len(m.kernel_size)
    if len(in_shape) != nd + 1:
        raise Unsupported(f"a {nd}-d convolution on a per-sample input of shape {in_shape}")
    if m.padding_mode not in ("zeros", "circular"):
        raise Unsupported(f"padding_mode={m.padding_mode!r} (zeros and circular are mapped)")
    pad = m.padding
    if m.padding_mode == "circular":
        if isinstance(pad, str) or any(2 * p != m.dilation[i] * (m.kernel_size[i] - 1)
                                       for i, p in enumerate(pad)):
            raise Unsupported("circular padding other than 'same'")
        pad = "circular"
    elif isinstance(pad, tuple):
        pad = pad if len(set(pad)) > 1 else pad[0]
    return _weighted(lambda s, b: Conv(m.out_channels, m.kernel_size, stride=m.stride,
                                       padding=pad, init=s, bias_variance=b,
                                       dilation=m.dilation, groups=m.groups), m)


def _norm(m: nn.Module, in_shape: Shape, rms: bool) -> Mapped:
    shape = tuple(m.normalized_shape)
    if len(shape) != 1 or len(in_shape) > 2 or in_shape[-1] != shape[0]:
        raise Unsupported(f"normalized_shape={shape} on a per-sample input of shape {in_shape} "
                          "(mapped: the last axis of a vector or a (T, n) sequence)")
    eps = m.eps if m.eps is not None else torch.finfo(torch.get_default_dtype()).eps
    gamma = _uniform(getattr(m, "weight", None), 1.0, "weight")
    beta = _uniform(getattr(m, "bias", None), 0.0, "bias")
    return Mapped(((RMSNorm if rms else LayerNorm)(float(eps)),) + _affine(gamma, beta))


def _batchnorm(m: nn.Module, in_shape: Shape, batch: int) -> Mapped:
    positions = math.prod(in_shape[1:])
    eps = float(m.eps)
    gamma = _uniform(m.weight, 1.0, "affine weight")
    beta = _uniform(m.bias, 0.0, "affine bias")
    batch_stats = m.training or m.running_mean is None
    note = ""
    if batch_stats:
        entries = batch * positions
        if entries > MAX_ENTRIES or batch < 2:
            core: tuple[Layer, ...] = (PopulationBatchNorm(eps),)
            note = (f"train mode over {batch} x {positions} = {entries} entries per channel: "
                    "normalised by the channel's population moments (declared large-batch "
                    "approximation, relative error O(1/entries))")
        else:
            core = (BatchNorm(eps, mode="train", batch_size=batch),)
            note = f"train mode, batch {batch}"
    else:
        mu = _uniform(m.running_mean, 0.0, "running mean")
        var = _uniform(m.running_var, 1.0, "running variance")
        if mu == 0.0 and var == 1.0:
            core = (BatchNorm(eps, mode="eval"),)
            note = "eval mode at the initial running statistics (mean 0, variance 1)"
        else:
            a = 1.0 / math.sqrt(var + eps)
            core = _affine(a, -mu * a)
            note = (f"eval mode: the affine map (x - {mu:.4g})/sqrt({var:.4g} + eps) of its "
                    "running statistics (no normalisation)")
    return Mapped(core + _affine(gamma, beta), note=note)


def _pool_size(v: object, nd: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * nd  # type: ignore[arg-type]


def _pooling(m: nn.Module, kind: str, in_shape: Shape, out_shape: Shape) -> Mapped:
    nd = len(in_shape) - 1
    if kind.startswith("Adaptive"):
        if all(n == 1 for n in out_shape[1:]):
            return Mapped((GlobalAvgPool(),), note="output size 1: the average over positions"
                          " (its output has one axis per sample)")
        if any(i % o for i, o in zip(in_shape[1:], out_shape[1:])):
            raise Unsupported(f"adaptive pooling {in_shape} -> {out_shape} is not an exact "
                              "average pool")
        k = tuple(i // o for i, o in zip(in_shape[1:], out_shape[1:]))
        return Mapped((AvgPool(k if nd > 1 else k[0]),))
    kernel, stride = _pool_size(m.kernel_size, nd), _pool_size(m.stride or m.kernel_size, nd)
    padding = _pool_size(m.padding, nd)
    if getattr(m, "ceil_mode", False):
        raise Unsupported("ceil_mode=True")
    one = (lambda t: t[0]) if nd == 1 else (lambda t: t)
    if kind.startswith("Max"):
        if any(d != 1 for d in _pool_size(m.dilation, nd)) or m.return_indices:
            raise Unsupported("dilation or return_indices")
        return Mapped((MaxPool(one(kernel), one(stride), one(padding)),))
    if any(padding):
        raise Unsupported("average pooling with padding")
    return Mapped((AvgPool(one(kernel), one(stride)),))


def _rnn(m: nn.Module, in_shape: Shape) -> Mapped:
    if m.num_layers != 1 or m.bidirectional or not m.batch_first or m.proj_size:
        raise Unsupported("only a one-layer, unidirectional, batch_first nn.RNN is mapped "
                          "(chain several nn.RNN modules for more layers)")
    hh = recognise(m.weight_hh_l0, rnn=True)
    ih = recognise(m.weight_ih_l0, rnn=True)
    bv = 0.0
    notes = []
    for name in ("bias_ih_l0", "bias_hh_l0"):
        v, text = bias_variance(getattr(m, name, None), m.hidden_size)
        bv += v
        notes.append(f"{name}: {text}")
    layer = Recurrent(m.hidden_size, m.nonlinearity, steps=in_shape[0], init=hh.scheme,
                      input_init=ih.scheme, bias_variance=bv, return_sequences=True)
    return Mapped((layer,), f"{hh.name} (hidden), {ih.name} (input)", hh.source,
                  "; ".join([hh.note, ih.note] + notes))


_MAPPED_TYPES = (nn.Identity, nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm, nn.RMSNorm,
                 nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Flatten, nn.AvgPool1d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.MaxPool1d, nn.MaxPool2d, nn.RNN)


def is_mapped_type(m: nn.Module) -> bool:
    """Whether :func:`map_module` has an entry for the type of ``m`` (it may still refuse the
    instance: a Linear on a sequence, per-channel affine weights, ...)."""
    kind = type(m).__name__
    return (isinstance(m, _MAPPED_TYPES) or kind in _ACTIVATIONS
            or (kind == "Conv1D" and hasattr(m, "nf")))


def map_module(m: nn.Module, in_shape: Shape, out_shape: Shape, *, batch: int) -> Mapped:
    """The layers of module ``m`` (per-sample shapes ``in_shape`` -> ``out_shape``)."""
    kind = type(m).__name__
    if isinstance(m, nn.Identity):
        return IDENTITY
    if kind in _ACTIVATIONS:
        return _activation(_ACTIVATIONS[kind](m))
    if isinstance(m, nn.Linear):
        if len(in_shape) != 1:
            raise Unsupported(f"a Linear on a per-sample input of shape {in_shape} (varprop's "
                              "Dense acts on vectors)")
        return _weighted(lambda s, b: Dense(m.out_features, init=s, bias_variance=b), m)
    if kind == "Conv1D" and hasattr(m, "nf"):  # transformers' transposed linear layer
        if len(in_shape) != 1:
            raise Unsupported(f"a Conv1D on a per-sample input of shape {in_shape} (varprop's "
                              "Dense acts on vectors)")
        fans = (int(m.weight.shape[0]), int(m.weight.shape[1]))
        return _weighted(lambda s, b: Dense(int(m.nf), init=s, bias_variance=b), m, fans)
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        return _conv(m, in_shape)
    if isinstance(m, nn.LayerNorm):
        return _norm(m, in_shape, rms=False)
    if isinstance(m, nn.RMSNorm):
        return _norm(m, in_shape, rms=True)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _batchnorm(m, in_shape, batch)
    if isinstance(m, nn.Dropout):
        return Mapped((Dropout(float(m.p), mode="train" if m.training else "eval"),))
    if isinstance(m, nn.Flatten):
        if len(out_shape) != 1:
            raise Unsupported(f"a Flatten to per-sample shape {out_shape}")
        return Mapped((Flatten(),))
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                      nn.MaxPool1d, nn.MaxPool2d)):
        return _pooling(m, kind, in_shape, out_shape)
    if isinstance(m, nn.RNN):
        return _rnn(m, in_shape)
    raise Unsupported("no varprop mapping for this module type")


def _argument(args: tuple, kwargs: dict, name: str, position: int, default: object) -> object:
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def map_function(kind: str, args: tuple, kwargs: dict, in_shape: Shape,
                 out_shape: Shape) -> Mapped:
    """The layers of a recorded call of kind ``kind`` (:func:`function_kind`)."""
    if kind in _SAME:
        return IDENTITY
    if kind in _RESHAPES:
        if out_shape == in_shape:
            return IDENTITY
        if len(out_shape) == 1:
            return Mapped((Flatten(),))
        raise Unsupported(f"a reshape {in_shape} -> {out_shape} (only flattening is mapped)")
    if kind == "gelu":
        approx = _argument(args, kwargs, "approximate", 1, "none")
        return _activation("gelu_tanh" if approx == "tanh" else "gelu")
    if kind in _FUNCTIONS:
        name, params = _FUNCTIONS[kind]
        values = {k: float(_argument(args, kwargs, k, pos, d))  # type: ignore[arg-type]
                  for k, (pos, d) in params.items()}
        return _activation(Nonlinearity_of(name, **values) if values else name)
    if kind == "dropout":
        p = float(_argument(args, kwargs, "p", 1, 0.5))  # type: ignore[arg-type]
        training = bool(_argument(args, kwargs, "training", 2, True))
        return Mapped((Dropout(p, mode="train" if training else "eval"),))
    raise Unsupported("no varprop mapping for this call")
