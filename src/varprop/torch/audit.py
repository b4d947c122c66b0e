r"""Audit a PyTorch model at initialisation: :func:`audit`.

The question: will this model's signals or gradients vanish or explode at initialisation, and
where?  :func:`audit` answers it per *site* (every mapped module's output, every residual sum)
with a prediction and a measurement side by side:

* **Measurement.**  The model is re-initialised ``replicates`` times (``reinit(model)``, by
  default every module's ``reset_parameters()`` in ``model.modules()`` order), replicate
  :math:`r` after ``torch.manual_seed(s_r)`` with :math:`s_r` the :math:`r`-th word of
  ``numpy.random.SeedSequence(seed).generate_state(replicates)`` (halved to 63 bits); each
  replicate runs the forward pass on ``example_input`` and, with ``backward=True``, the backward
  pass from i.i.d. :math:`N(0, 1)` output gradients, recording the mean square over all entries
  of each site's output and of the loss gradient with respect to it
  (:mod:`varprop.torch.measure`).  Torch's global random state is restored afterwards.
* **Prediction.**  :func:`~varprop.torch.trace.trace_model` maps the model *as the replicates
  initialise it* (after the first replicate's re-initialisation, so the recognised weight laws
  are those the measurement draws) to a :class:`~varprop.Network`, and
  :func:`~varprop.torch.trace.predict_sites` gives every site's predicted second moments.  With
  ``unsupported="measure"`` the unsupported modules' output moments and gradient gains are
  measured in the replicates and passed through (their rows say ``measured``).
* **Verdicts.**  The replicate values of a site are i.i.d. per-network statistics: varprop's
  checker (:func:`varprop.checking.replicates.verify_replicates`) judges the claim
  :math:`E x = \theta_0` with the prediction's declared allowance (:mod:`varprop.torch.judge`:
  a broad allowance, one that does not decide the claim, can refute but not confirm),
  at level :math:`\alpha/m` for the :math:`m` verdicts of the report (Bonferroni), so the
  probability that the report refutes any correct prediction is at most ``alpha``.  A
  heavy-tailed row (too few replicates for its skewness by Cochran's rule) is ``inconclusive``,
  never refuted on an untrustworthy interval.

The model is left exactly as it was: parameter and buffer values (BatchNorm running statistics
included) are restored bit for bit, parameters' ``.grad`` and ``requires_grad`` and every
module's training mode are unchanged and every hook is removed, also when an error is raised;
the Parameter and buffer objects, child modules and hooks each module held are put back
(:class:`~varprop.torch.measure.Snapshot`: a ``reinit`` that replaces or adds them is undone;
plain attributes it sets are not).  Memory beyond the model's own passes: one copy of the
parameters and buffers (the snapshot), the batch's per-replicate copy and its gradient; the
parameter-law check (:func:`tensor_law`) streams each tensor in float64 chunks of
:data:`CHUNK` entries instead of copying it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from varprop._util.validation import (
    check_choice,
    check_nonnegative_int,
    check_positive_int,
    check_probability,
    fail,
    fail_type,
)
from varprop.errors import VarpropError, VarpropWarning
from varprop.network.layers.measured import MeasuredMoments
from varprop.torch.judge import build_rows, change_warnings, law_warnings
from varprop.torch.measure import Recorder, Snapshot, reinitialise, replicate_seeds
from varprop.torch.report import AuditReport
from varprop.torch.trace import predict_sites, trace_model

__all__ = ["audit", "MAX_REPLICATES", "MIN_REPLICATES"]

#: Fewest replicates: the verdicts' intervals need a handful of networks.
MIN_REPLICATES = 4
#: Most replicates (each is a forward and backward pass of the model).
MAX_REPLICATES = 100_000


def audit(model: Any, example_input: Any, *, replicates: int = 32, seed: int = 0,
          reinit: Callable[[Any], Any] | None = None, backward: bool = True,
          unsupported: str = "error", rtol: float = 0.1, alpha: float = 0.01) -> AuditReport:
    r"""Predict and measure every site of ``model`` over ``replicates`` re-initialisations.

    Parameters
    ----------
    model : torch.nn.Module
    example_input : torch.Tensor
        One batch as the model takes it (float features, or integer token ids for a model that
        starts with an embedding).
    replicates : int
        Re-initialisations (independent networks), :data:`MIN_REPLICATES` to
        :data:`MAX_REPLICATES`.
    seed : int
        Seeds the re-initialisations, the output gradients and the checker: the same seed gives
        the same report.
    reinit : callable, optional
        ``reinit(model)`` re-initialises the model in place (default: every module's
        ``reset_parameters()``).  For a Hugging Face ``transformers`` model, whose own init
        (``_init_weights``) differs from PyTorch's defaults, pass
        ``reinit=lambda m: m.apply(m._init_weights)``.
    backward : bool
        Also predict and measure the gradients.
    unsupported : {"error", "measure"}
        What to do with modules varprop does not map: raise, or measure their output moments in
        the replicates and pass them through.
    rtol : float
        Confirmation margin on the relative error (TOST).
    alpha : float
        Family-wise error level of the report's refutations.

    Returns
    -------
    AuditReport
    """
    t_start = time.perf_counter()
    if not isinstance(model, torch.nn.Module):
        raise fail_type("model", model, "a torch.nn.Module")
    if not isinstance(example_input, torch.Tensor):
        raise fail_type("example_input", example_input, "a torch.Tensor (one batch)")
    if example_input.is_complex() or example_input.dtype == torch.bool:
        raise fail("example_input", f"<tensor of dtype {example_input.dtype}>",
                   "a real floating-point or integer tensor")
    _check_batch(example_input)
    reps = check_positive_int("replicates", replicates)
    if not MIN_REPLICATES <= reps <= MAX_REPLICATES:
        raise fail("replicates", replicates, f"an integer from {MIN_REPLICATES} to "
                   f"{MAX_REPLICATES:,} (each replicate is one forward and backward pass)")
    seed_i = check_nonnegative_int("seed", seed)
    if reinit is not None and not callable(reinit):
        raise fail_type("reinit", reinit, "None or a callable reinit(model)")
    if not isinstance(backward, bool):
        raise fail_type("backward", backward, "True or False")
    mode = check_choice("unsupported", unsupported, ("error", "measure"))
    rtol_f = check_probability("rtol", rtol)
    alpha_f = check_probability("alpha", alpha)
    how = "reinit(model)" if reinit is not None else "reset_parameters()"
    seeds = replicate_seeds(seed_i, reps)
    snapshot = Snapshot(model)
    recorder: Recorder | None = None
    timings: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        try:
            warn = _static_warnings(model, reinit)
            before = [(n, tensor_law(p)) for n, p in model.named_parameters()]
            reinitialise(model, reinit, seeds[0])
            warn += law_warnings(before, {n: tensor_law(p) for n, p in
                                          model.named_parameters()}, how)
            for text in warn:
                warnings.warn(text, VarpropWarning, stacklevel=3)
            t0 = time.perf_counter()
            pool_seeds = replicate_seeds(seed_i, reps + 32)[reps:]  # recognition's own draws

            failed: list[BaseException] = []

            def draws(k: int) -> None:
                try:
                    reinitialise(model, reinit, pool_seeds[k])
                except Exception as exc:  # reinit's own error, not the model's: re-raised
                    failed.append(exc)
                    raise
            try:
                traced = _guarded(lambda: trace_model(model, example_input, unsupported=mode,
                                                      draws=draws), example_input)
            except VarpropError:
                if failed:
                    raise failed[0] from None
                raise
            timings["trace"] = time.perf_counter() - t0
            sites = list(traced.sites)
            measured_idx = [i for i, s in enumerate(sites) if s.measured]
            recorder = Recorder(model, sites, traced, measured_idx)
            t0 = time.perf_counter()
            for r in range(reps):
                reinitialise(model, reinit, seeds[r])
                _guarded(lambda: recorder.run(example_input, backward), example_input)
            timings["replicates"] = time.perf_counter() - t0
            timings["model"] = recorder.data.model_seconds
            if measured_idx:
                moments = _measured_moments(sites, measured_idx, recorder, backward)
                reinitialise(model, reinit, seeds[0])
                t0 = time.perf_counter()
                traced = _guarded(lambda: trace_model(model, example_input, unsupported=mode,
                                                      measured=moments, draws=draws),
                                  example_input)
                timings["trace"] += time.perf_counter() - t0
                if [s.name for s in traced.sites] != [s.name for s in sites]:
                    raise VarpropError("tracing the model again with the measured moments gave "
                                       "other sites: the model's graph depends on its weights")
                sites = list(traced.sites)
            t0 = time.perf_counter()
            predictions = predict_sites(traced)
            timings["predict"] = time.perf_counter() - t0
        finally:
            if recorder is not None:
                recorder.remove()
            snapshot.restore()
    t0 = time.perf_counter()
    dtype = "float64" if _float_dtype(model, example_input) == torch.float64 else "float32"
    rows, tests = build_rows(sites, predictions, recorder.data, net=traced.network,
                             backward=backward, alpha=alpha_f, rtol=rtol_f, seed=seed_i,
                             dtype=dtype, unmeasured=recorder.unmeasured)
    timings["verdicts"] = time.perf_counter() - t0
    warn += change_warnings(rows)
    timings["total"] = time.perf_counter() - t_start
    return AuditReport(rows, tuple(warn), type(model).__name__, tuple(example_input.shape), reps,
                       seed_i, alpha_f, rtol_f, tests, how, timings)


#: Entries per chunk of the streaming statistics (a float64 chunk is 8 MiB).
CHUNK = 1 << 20


def tensor_law(t: torch.Tensor) -> tuple[int, float, float]:
    r"""``(n, mean, variance)`` of a tensor's entries (population variance), computed streaming
    over chunks of :data:`CHUNK` entries in float64 (Chan et al.'s pairwise update of the mean
    and the sum of squared deviations :math:`M_2`), so that no float64 copy of the whole tensor
    is made: the extra memory is one chunk."""
    flat = t.detach().reshape(-1)
    n, mean, m2 = 0, 0.0, 0.0
    for c in flat.split(CHUNK):
        c64 = c.to(torch.float64)
        k = c64.numel()
        cm = float(c64.mean())
        cm2 = float((c64 - cm).pow_(2).sum())
        delta = cm - mean
        total = n + k
        mean += delta * k / total
        m2 += cm2 + delta * delta * n * k / total
        n = total
    return n, mean, (m2 / n if n else 0.0)


def _check_batch(x: torch.Tensor) -> None:
    """An empty batch, non-finite entries or a second moment beyond the float range are errors
    naming ``example_input`` (the prediction starts from the batch's second moment)."""
    if x.numel() == 0:
        raise fail("example_input", f"<empty tensor of shape {tuple(x.shape)}>",
                   "a non-empty batch (its second moment starts the prediction)")
    if not x.is_floating_point():
        return
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise fail("example_input", f"<tensor with {bad} non-finite (NaN or inf) entries of "
                   f"{x.numel()}>", "finite entries (its second moment starts the prediction)")
    q = sum(float(torch.linalg.vector_norm(c, dtype=torch.float64)) ** 2
            for c in x.detach().reshape(-1).split(CHUNK)) / x.numel()
    if not math.isfinite(q):
        raise fail("example_input", "<tensor whose mean square overflows float64>",
                   "entries with a finite second moment")


def _guarded(call: Callable[[], Any], example_input: torch.Tensor) -> Any:
    """``call()``, with torch's own errors (a wrong input shape, ...) as a
    :class:`~varprop.errors.VarpropError` that names the input."""
    try:
        return call()
    except VarpropError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise VarpropError(f"the model failed on example_input of shape "
                           f"{tuple(example_input.shape)} and dtype {example_input.dtype}: "
                           f"{type(exc).__name__}: {exc}") from exc


def _float_dtype(model: torch.nn.Module, example_input: torch.Tensor) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return example_input.dtype if example_input.is_floating_point() else torch.float32


def _static_warnings(model: torch.nn.Module, reinit: Any) -> list[str]:
    """Modules with parameters of their own but no ``reset_parameters()`` (default reinit):
    those parameters keep their values in every replicate."""
    if reinit is not None:
        return []
    fixed = [name or type(model).__name__ for name, m in model.named_modules()
             if any(True for _ in m.parameters(recurse=False))
             and not callable(getattr(m, "reset_parameters", None))]
    if not fixed:
        return []
    return [f"{len(fixed)} module(s) have parameters but no reset_parameters() (e.g. "
            f"{', '.join(f'`{n}`' for n in fixed[:3])}): their parameters keep their current "
            "values in every replicate; pass reinit=... to redraw them"]


def _measured_moments(sites: list[Any], indices: list[int], recorder: Recorder,
                      backward: bool) -> dict[str, Any]:
    r"""Per measured site, the replicate averages: second moment and mean of its output, and
    the gradient gain :math:`E|\partial L/\partial x|^2 / E|\partial L/\partial y|^2` per entry
    (1 when the input has no gradient, e.g. integer token ids, or ``backward=False``)."""
    data = recorder.data
    out = {}
    for i in indices:
        second = data.column("forward", i)
        mean = data.column("mean", i)
        if second is None or mean is None:
            raise VarpropError(f"the unsupported module {sites[i].name!r} "
                               f"({sites[i].kind}) was not seen in the replicates: its moments "
                               "cannot be measured")
        gain = 1.0
        gx, gy = data.column("input_grad", i), data.column("backward", i)
        if backward and gx is not None and gy is not None and gx.size == gy.size \
                and np.mean(gy) > 0:
            gain = float(np.mean(gx) / np.mean(gy))
        out[sites[i].name] = MeasuredMoments(second=float(np.mean(second)),
                                             mean=float(np.mean(mean)), gradient_gain=gain)
    return out
