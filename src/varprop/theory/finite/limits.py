r"""Limits of the finite-width expansion (:mod:`varprop.theory.finite.expansion`): the depth it
walks (one layer at a time, refused up front beyond a documented limit, stating the cost) and the
short form of a widths list for messages.
"""

from __future__ import annotations

from varprop._util.validation import fail
from varprop.components.activations import Activation

__all__ = ["MAX_DEPTH", "MAX_DEPTH_EXACT", "SECONDS_PER_LAYER", "check_finite_width_depth",
           "show_widths"]

#: The deepest network the expansion walks for an activation that is not degree-1 homogeneous
#: (one Gaussian quadrature per layer: :data:`SECONDS_PER_LAYER`).
MAX_DEPTH = 20_000
#: The deepest network for degree-1 homogeneous activations (no quadrature, a Python loop).
MAX_DEPTH_EXACT = 200_000
#: Measured cost of one layer (unloaded machine; a loaded one is several times slower).
SECONDS_PER_LAYER = {"quadrature": 1.3e-4, "exact": 1.6e-5}


def check_finite_width_depth(act: Activation, depth: int) -> None:
    """Refuse, before any work, a depth beyond :data:`MAX_DEPTH` (:data:`MAX_DEPTH_EXACT` for
    degree-1 homogeneous activations): the recursion walks the layers one at a time."""
    exact = act.traits.exact_at_finite_width
    limit = MAX_DEPTH_EXACT if exact else MAX_DEPTH
    if depth > limit:
        rate = SECONDS_PER_LAYER["exact" if exact else "quadrature"]
        shown = f"{depth:,}" if depth < 10**30 else f"about 10^{len(str(depth)) - 1}"
        cost = f"{rate * depth:.2g} s" if depth < 10**30 else "longer than the age of the universe"
        raise fail("depth", shown, f"at most {limit:,} with finite_width=True for {act.name}: "
                   f"the 1/n expansion walks the layers one by one at about {rate * 1e6:.3g} us a "
                   f"layer{'' if exact else ' (a Gaussian quadrature per layer)'}, {cost} for this "
                   "depth" + ("" if exact else " (and at depth comparable to width the "
                              "expansion breaks down anyway)"))


def show_widths(ws: tuple[int, ...]) -> str:
    """``ws`` for a message, short at any depth: ``[16]*11``, ``[8] + [16]*10`` or the list
    itself up to 8 entries, else its first three and last two."""
    if len(set(ws)) == 1:
        return f"[{ws[0]}]*{len(ws)}"
    if len(set(ws[1:])) == 1 and len(ws) > 2:
        return f"[{ws[0]}] + [{ws[1]}]*{len(ws) - 1}"
    if len(ws) <= 8:
        return str(list(ws))
    return f"[{ws[0]}, {ws[1]}, {ws[2]}, ..., {ws[-2]}, {ws[-1]}] ({len(ws)} widths)"
