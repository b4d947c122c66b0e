"""Input handling of :func:`varprop.check_initializer`: arrays, tensors (by duck typing),
stacks and convolution kernels, recognised and validated into a stack of matrices; PyTorch
modules (``nn.Linear``, ``nn.Conv1d/2d/3d``, ``nn.RNN``) unpacked into their weight matrices."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from varprop._util.rounding import FloatFormat, format_of
from varprop._util.validation import fail, fail_type
from varprop.components.schemes import InitScheme
from varprop.errors import InvalidArgumentType

#: The PyTorch modules whose weights check_initializer takes (torch is imported only to test a
#: module that comes from it).
TORCH_MODULES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "RNN")


def _torch_module_weights(obj: Any) -> list[tuple[str, Any]] | None:
    """``[(name, tensor), ...]``: the weight matrices of a PyTorch module, or ``None`` if ``obj``
    is not a ``torch.nn.Module``.

    ``nn.Linear`` and ``nn.Conv1d/2d/3d``: ``[("weight", module.weight)]`` (the bias is not
    checked: PyTorch draws it from another law).  ``nn.RNN``: every ``weight_ih_l{k}`` and
    ``weight_hh_l{k}`` (and ``*_reverse``), in PyTorch's parameter order, each checked with the
    fans of its own shape ``(hidden, input)`` / ``(hidden, hidden)``.  Any other module is refused
    with a message naming its parameters."""
    if not any(c.__module__.startswith("torch.nn") for c in type(obj).__mro__):
        return None
    import torch  # optional dependency: only for an object that comes from it

    nn = torch.nn
    if not isinstance(obj, nn.Module):
        return None
    if isinstance(obj, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return [("weight", obj.weight)]
    if isinstance(obj, nn.RNN):  # (nn.LSTM and nn.GRU are not nn.RNN: their gates differ)
        return [(name, p) for name, p in obj.named_parameters() if name.startswith("weight_")]
    names = [name for name, _ in obj.named_parameters()]
    raise fail_type("weights", obj, f"an array, a callable returning one, or one of the PyTorch "
                    f"modules nn.{', nn.'.join(TORCH_MODULES)} (for this "
                    f"{type(obj).__name__}, pass one of its parameters: {names[:8]})")


def _call(weights: Callable[[], Any]) -> Any:
    try:
        return weights()
    except TypeError as exc:  # e.g. an nn.Module passed instead of its weight
        raise fail_type("weights", weights, "an array, or a callable taking no arguments that "
                        f"returns one (pass layer.weight, not the layer): calling it raised "
                        f"TypeError: {exc}") from exc


#: Largest number of weights checked at once (a float64 copy of 10^8 entries is 800 MB).
MAX_WEIGHT_ENTRIES = 10**8


def _to_numpy(obj: Any, name: str) -> tuple[np.ndarray, FloatFormat | None]:
    """NumPy view of ``obj`` and its storage format (tensors are detached and moved to the CPU by
    duck typing; a bfloat16 tensor, which NumPy cannot hold, is widened with ``.float()``, exactly,
    and remembered as bfloat16)."""
    if isinstance(obj, (str, bytes, numbers.Number)) or obj is None:
        raise fail_type(name, obj,
                        "an array of shape (fan_out, fan_in) or a callable returning one")
    x = obj
    if getattr(x, "is_meta", False) or type(x).__name__ == "UninitializedParameter":
        raise fail(name, f"<{type(x).__name__} on device {getattr(x, 'device', '?')}>",
                   "weights with values (a meta-device or uninitialised lazy parameter has none: "
                   "materialise the module first, e.g. run it once or use to_empty() and an init)")
    numel = getattr(x, "numel", None)
    count = int(numel()) if callable(numel) else int(getattr(x, "size", 0) or 0)
    if count > MAX_WEIGHT_ENTRIES:
        raise fail(name, f"<{count:,} weights>", f"at most {MAX_WEIGHT_ENTRIES:,} entries (they are "
                   "copied to float64 for the tests): pass a slice of the matrix")
    if not isinstance(x, np.ndarray):
        for method in ("detach", "cpu"):  # torch.Tensor / nn.Parameter without importing torch
            f = getattr(x, method, None)
            if callable(f):
                x = f()
    dtype_name = str(getattr(x, "dtype", "")).rsplit(".", 1)[-1]
    fmt = format_of(dtype_name)
    if fmt is None and dtype_name.startswith("float8"):
        # widening with .float() would hide the format, whose rounding the tests must model
        raise InvalidArgumentType(f"{name}: weights of dtype {dtype_name} are not supported: "
                                  "bfloat16, float16, float32 or float64 (the support and shape "
                                  "tests model the rounding of those formats only)")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        to_float = getattr(x, "float", None)  # e.g. bfloat16 tensors
        arr = None
        if callable(to_float):
            try:
                arr = np.asarray(to_float())
            except (TypeError, ValueError, RuntimeError):
                pass
        if arr is None:
            raise fail_type(name, obj, f"an array of real numbers ({exc})") from exc
    if fmt is None:
        fmt = format_of(arr.dtype)  # ml_dtypes' bfloat16 NumPy arrays are found by name too
    if fmt is not None and fmt.name == "bfloat16" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)  # exact
    return arr, fmt


@dataclass(frozen=True)
class _Weights:
    """Validated weights: ``stack`` of shape ``(k, rows, cols)`` in float64, the fans the claim
    is evaluated at, the storage format and a description of the layout that was recognised."""

    stack: np.ndarray
    fan_in: int
    fan_out: int
    fmt: FloatFormat
    layout: str


def _as_matrices(obj: Any, init: InitScheme, n_in: int | None, n_out: int | None, *,
                 name: str) -> _Weights:
    """Validate ``obj``, recognise its layout (matrix, transpose, stack, convolution kernel)."""
    arr, fmt = _to_numpy(obj, name)
    if arr.dtype == object or fmt is None or not np.issubdtype(arr.dtype, np.floating):
        raise InvalidArgumentType(f"{name}: an array of dtype {arr.dtype} (shape {arr.shape}) is "
                                  "not allowed: real floating-point weights "
                                  "(bfloat16/float16/32/64)")
    shape = tuple(int(d) for d in arr.shape)
    if arr.size == 0:
        raise fail(name, f"<empty array of shape {shape}>", "an array with at least one entry")
    if arr.ndim < 2:
        raise fail(name, f"<array of shape {shape}>",
                   "an array of shape (fan_out, fan_in), its transpose, a stack "
                   "(k, fan_out, fan_in) or a convolution kernel (out, in, *kernel)")
    rf = math.prod(shape[2:])
    # PyTorch's convolution fans (torch.nn.init._calculate_fan_in_and_fan_out); orthogonal_
    # makes the flattened (out, in * prod(kernel)) matrix orthogonal, so its fans are those
    conv_fans = ((shape[1] * rf, shape[0]) if not init.is_iid
                 else (shape[1] * rf, shape[0] * rf)) if arr.ndim >= 3 else None
    kernel = "x".join(map(str, shape[2:]))
    if n_in is None and n_out is None:
        if arr.ndim == 2:
            n_out, n_in = shape
            layout = f"matrix of shape {shape} (fan_out, fan_in), fans from the shape"
        else:
            n_in, n_out = conv_fans  # type: ignore[misc]
            layout = _conv_layout(shape, init, kernel, rf, inferred=True)
            arr = arr.reshape(1, shape[0], -1)
    elif n_in is None or n_out is None:
        raise fail("fan_in" if n_in is None else "fan_out", None,
                   "a positive integer when the other fan is given (or omit both to take the "
                   "fans from the weights' shape, as PyTorch does)")
    elif shape[-2:] == (n_out, n_in):
        layout = (f"matrix of shape {shape} (fan_out, fan_in)" if arr.ndim == 2 else
                  f"stack of {math.prod(shape[:-2])} matrices (fan_out, fan_in) = {shape[-2:]}")
    elif shape[-2:] == (n_in, n_out):
        arr = np.swapaxes(arr, -1, -2)
        layout = (f"matrix of shape {shape} (fan_in, fan_out), transposed" if arr.ndim == 2 else
                  f"stack of {math.prod(shape[:-2])} transposed matrices (fan_in, fan_out)")
    elif conv_fans == (n_in, n_out):
        layout = _conv_layout(shape, init, kernel, rf, inferred=False)
        arr = arr.reshape(1, shape[0], -1)
    else:
        conv = (f", or a convolution kernel (out, in, *kernel) with fan_in = in * prod(kernel) "
                f"and fan_out = {'out' if not init.is_iid else 'out * prod(kernel)'}"
                + (f" (this one has fans {conv_fans})" if conv_fans else ""))
        raise fail(name, f"<array of shape {shape}>",
                   f"last two dimensions (fan_out, fan_in) = ({n_out}, {n_in}) (PyTorch's "
                   f"(out_features, in_features)) or the transpose ({n_in}, {n_out}){conv}")
    stack = arr.reshape((-1,) + arr.shape[-2:]).astype(np.float64, copy=False)
    if stack.shape[0] == 0 or stack.size == 0:
        raise fail(name, f"<array of shape {shape}>", "at least one entry (empty array)")
    if not np.all(np.isfinite(stack)):
        bad = int(np.size(stack) - np.count_nonzero(np.isfinite(stack)))
        raise fail(name, f"<array with {bad} NaN/inf entries>", "finite entries only")
    return _Weights(stack, int(n_in), int(n_out), fmt, layout)  # type: ignore[arg-type]


def _conv_layout(shape: tuple[int, ...], init: InitScheme, kernel: str, rf: int, *,
                 inferred: bool) -> str:
    out, inp = shape[0], shape[1]
    fan_out = f"out = {out}" if not init.is_iid else f"out * {rf} = {out * rf}"
    how = ("the flattened (out, in * prod(kernel)) matrix that orthogonal_ makes orthogonal"
           if not init.is_iid else
           "fans from the shape, as PyTorch computes them" if inferred else "PyTorch's fans")
    return (f"convolution kernel of shape {shape} (out, in, {kernel}): fan_in = in * {rf} = "
            f"{inp * rf}, fan_out = {fan_out} ({how})")
