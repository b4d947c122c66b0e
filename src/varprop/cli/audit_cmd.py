"""``varprop audit``: audit a PyTorch model built by a factory (:func:`varprop.torch.audit`).

Example::

    varprop audit mypackage.models:make_resnet --input-shape 8,3,64,64
    varprop audit mypackage.models:make_bert --input-shape 4,16 --input-kind tokens:1000 \\
        --unsupported measure --json

``FACTORY`` is looked up with :func:`importlib.import_module` and attribute access (never
``eval``), the current directory first on the path; it is called without arguments and must
return a ``torch.nn.Module``.  The example batch is ``torch.randn(shape)`` (seeded by ``--seed``),
or with ``--input-kind tokens:VOCAB`` integer ids uniform on ``0..VOCAB-1``.  Prints the Markdown
table (or the JSON report); exit 1 when any row is refuted, 2 for a usage error (a bad spec, a
module that does not import, a factory that is not callable or does not return a module, a shape
the model does not take, an estimated peak memory of the audit's own copies
(:func:`audit_memory`: parameters and buffers x2, the batch x3 at 8 bytes an entry before it is
built; activations not counted) above :data:`MAX_AUDIT_BYTES` = 4 GiB; a module or factory that raises anything but ``KeyboardInterrupt``,
``SystemExit`` included, is reported as such with exit 2).  torch (the ``interop`` extra) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Any

from varprop.errors import VarpropError

_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_MAX_ENTRIES = 2**28
#: The bound on the audit's own memory (bytes) the command accepts: 4 GiB.
MAX_AUDIT_BYTES = 4 * 2**30


def audit_memory(param_bytes: int, buffer_bytes: int, input_bytes: int) -> int:
    """The estimated peak of the audit's own copies, in bytes: the model's parameters and
    buffers twice (the model and the snapshot that restores it), the batch three times (the
    batch, the copy each replicate runs on, its gradient).  The model's activations during a
    pass are not counted (they are the model's own cost of one forward and backward pass)."""
    return 2 * (param_bytes + buffer_bytes) + 3 * input_bytes


def _check_memory(estimate: int, what: str) -> None:
    if estimate > MAX_AUDIT_BYTES:
        raise VarpropError(f"{what}: the audit's estimated peak memory {estimate:,} bytes "
                           f"({estimate / 2**30:.3g} GiB) "
                           f"(model parameters and buffers x2, batch x3; activations not "
                           f"counted) exceeds the bound of {MAX_AUDIT_BYTES:,} bytes")


def _torch_parts() -> tuple[Any, Any]:
    """``(torch, varprop.torch)``, or a usage error saying how to install them."""
    try:
        return importlib.import_module("torch"), importlib.import_module("varprop.torch")
    except ImportError as exc:
        raise VarpropError(f"varprop audit needs PyTorch ({exc}): pip install "
                           "'varprop[interop]'") from None


def load_factory(spec: str) -> Any:
    """The callable ``PACKAGE.MODULE:FACTORY`` names (attribute path after the colon)."""
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise VarpropError(f"factory {spec!r} is not allowed: PACKAGE.MODULE:FACTORY, e.g. "
                           "mypackage.models:make_resnet (dotted module path, a colon, a dotted "
                           "attribute path)")
    module_name, attr = spec.split(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # any failure (SystemExit too) importing the user's module
        raise VarpropError(f"cannot import module {module_name!r} of factory {spec!r}: "
                           f"{type(exc).__name__}: {exc}") from None
    finally:
        if added and sys.path and sys.path[0] == cwd:
            sys.path.pop(0)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise VarpropError(f"module {module_name!r} has no attribute {attr!r} (factory "
                               f"{spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise VarpropError(f"factory {spec!r} is {type(obj).__name__}, not callable: it must be "
                           "a function (or class) returning a torch.nn.Module")
    return obj


def example_input(torch: Any, shape: list[int], kind: str, seed: int) -> Any:
    """``torch.randn(shape)`` or, for ``tokens:VOCAB``, ids uniform on ``0..VOCAB-1``."""
    total = 1
    for n in shape:
        total *= n
    if total > _MAX_ENTRIES:
        raise VarpropError(f"--input-shape {','.join(map(str, shape))} is not allowed: at most "
                           f"{_MAX_ENTRIES:,} entries (it has {total:,})")
    _check_memory(audit_memory(0, 0, total * 8), f"--input-shape {','.join(map(str, shape))}")
    gen = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(shape, generator=gen)
    match = re.fullmatch(r"tokens:(\d{1,9})", kind)
    if not match or int(match.group(1)) < 1:
        raise VarpropError(f"--input-kind {kind!r} is not allowed: 'normal' or 'tokens:VOCAB' "
                           "with VOCAB a positive integer, e.g. tokens:30522")
    return torch.randint(0, int(match.group(1)), shape, generator=gen)


def run(args: argparse.Namespace) -> int:
    torch, vt = _torch_parts()
    factory = load_factory(args.factory)
    try:
        model = factory()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the user's factory failed (SystemExit too): a usage error
        raise VarpropError(f"factory {args.factory!r} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise VarpropError(f"factory {args.factory!r} returned {type(model).__name__}, not a "
                           "torch.nn.Module")
    _check_memory(audit_memory(sum(p.numel() * p.element_size() for p in model.parameters()),
                               sum(b.numel() * b.element_size() for b in model.buffers()), 0),
                  f"factory {args.factory!r}")
    x = example_input(torch, list(args.input_shape), args.input_kind, args.seed)
    _check_memory(audit_memory(sum(p.numel() * p.element_size() for p in model.parameters()),
                               sum(b.numel() * b.element_size() for b in model.buffers()),
                               x.numel() * x.element_size()), f"factory {args.factory!r} on "
                  f"input shape {tuple(x.shape)}")
    report = vt.audit(model, x, replicates=args.replicates, seed=args.seed,
                      backward=not args.no_backward, unsupported=args.unsupported)
    print(report.to_json() if args.json else report.to_markdown(), end="" if not args.json else "\n")
    return 1 if report.refuted else 0
