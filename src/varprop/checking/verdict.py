r"""The outcome of a check: :class:`Verdict` (immutable; ``str()`` for people, ``to_dict`` for JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from varprop._util.jsonio import jsonable

__all__ = ["Verdict", "STATUSES", "Status"]

Status = Literal["confirmed", "refuted", "inconclusive"]
STATUSES: tuple[str, ...] = ("confirmed", "refuted", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    r"""The outcome of :func:`verify` (immutable; ``str()`` for people, :meth:`to_dict` for JSON).

    Attributes
    ----------
    status : {"confirmed", "refuted", "inconclusive"}
    reason : str
        Why, from the verdict's own numbers (e.g. ``"r = +1.2% [-2.1%, +4.4%] lies inside +-5%
        (TOST)"``, ``"off by ..., within the allowance of ..."``, ``"heavy-tailed: ..."``).
    predicted : float
        :math:`\theta_0`.
    estimate : float or None
        :math:`\hat\theta` (unbiased); ``None`` when nothing could be estimated (e.g. the values
        left the float range): then ``interval`` is ``None`` too (``null`` in JSON).
    interval : (float, float) or None
        Simultaneous :math:`1-\alpha` interval for :math:`\theta` (absolute units).
    relative_interval : (float, float) or None
        The same for :math:`r = \theta/\theta_0 - 1` (None when :math:`\theta_0 = 0`: then the
        margins are absolute, see ``atol``).
    relative_error : float or None
        :math:`\hat\theta/\theta_0 - 1`.
    p_refute : float
        p-value of "the prediction holds within ``tol``" (refuted iff ``p_refute <= alpha``).
    p_tost_lower, p_tost_upper : float
        p-values of :math:`r \le -` ``rtol`` and :math:`r \ge` ``rtol`` (confirmed iff both
        ``<= alpha``).  All three are two-sided-equivalent and Bonferroni-adjusted over the looks,
        so they compare with ``alpha`` directly.
    replicates, looks : int
        Replicates used and interim analyses made.
    target : str
        ``"ensemble"`` or ``"unit_spread"`` (or ``"one_step"`` for :func:`verify_step`).
    statistic : str
        Name of the estimand, e.g. ``"E[z_L^2]"``.
    description : str
        What the estimand is, in words.
    assumptions : str
        The prediction's assumptions (and whether it claims exactness here).
    exact : bool
        Whether the prediction claims to be exact for this configuration.
    tol, rtol, atol, alpha : float
    seed : int
    quantity : str
    layer : int
    config : dict
        The configuration (activation, init, widths, variances, method, dtype).
    skewness : float
        Skewness used by the heavy-tail guard.
    bootstrap_interval : (float, float) or None
        Bootstrap-t cross-check interval of the last look (absolute), when computed.
    elapsed : float
        Seconds spent.
    within_allowance : bool
        ``status == "confirmed"`` for an approximate claim through its declared allowance: the
        interval for :math:`r` lies inside :math:`\pm` ``tol`` (``tol > rtol``), so the claim
        "within ``tol``" is confirmed although :math:`\pm` ``rtol`` is not (the deviation may be
        measurably non-zero; ``reason`` gives it with its interval).
    p_tost_allowance : float
        TOST p-value of :math:`|r| \ge` ``tol`` (adjusted over looks): ``<= alpha`` for a
        confirmation within the allowance.
    """

    status: Status
    reason: str
    predicted: float
    estimate: float | None
    interval: tuple[float, float] | None
    relative_interval: tuple[float, float] | None
    relative_error: float | None
    p_refute: float
    p_tost_lower: float
    p_tost_upper: float
    replicates: int
    looks: int
    target: str
    statistic: str
    description: str
    assumptions: str
    exact: bool
    tol: float
    rtol: float
    atol: float | None
    alpha: float
    seed: int
    quantity: str
    layer: int
    config: Mapping[str, Any] = field(default_factory=dict)
    skewness: float = 0.0
    bootstrap_interval: tuple[float, float] | None = None
    heavy_tailed: bool = False
    elapsed: float = 0.0
    within_allowance: bool = False
    p_tost_allowance: float = 1.0

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    @property
    def refuted(self) -> bool:
        return self.status == "refuted"

    @property
    def inconclusive(self) -> bool:
        return self.status == "inconclusive"

    @property
    def p_equivalence(self) -> float:
        """``max(p_tost_lower, p_tost_upper)``: confirmed iff ``<= alpha``."""
        return max(self.p_tost_lower, self.p_tost_upper)

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (tuples become lists; no NaN; an infinite value, e.g. the
        skewness of a statistic whose log-scale variance overflows, becomes ``"inf"``/``"-inf"``)."""
        out = asdict(self)
        out["config"] = dict(self.config)
        return {k: jsonable(v) for k, v in out.items()}

    def __str__(self) -> str:
        cfg = self.config
        status = self.status.upper() + (" (within the allowance)" if self.within_allowance else "")
        if "network" in cfg:
            head = f"{status}: {self.statistic} for {cfg['network']}, layer position {self.layer}"
        else:
            head = (f"{status}: {self.statistic} for {cfg.get('activation')} / "
                    f"{cfg.get('init')}, widths {_short_widths(cfg.get('widths'))}, layer {self.layer}")
        level = f"{100 * (1 - self.alpha):g}%"
        if self.estimate is None or self.interval is None:
            estimate, rel = "no estimate", "no interval"
        elif self.relative_interval is not None and self.relative_error is not None:
            estimate = f"estimate {self.estimate:.6g}"
            rel = (f"relative error {self.relative_error:+.4g}, {level} interval "
                   f"[{self.relative_interval[0]:+.4g}, {self.relative_interval[1]:+.4g}]")
        else:
            estimate = f"estimate {self.estimate:.6g}"
            rel = (f"absolute {level} interval [{self.interval[0]:.6g}, {self.interval[1]:.6g}]"
                   + (" (zero prediction)" if self.predicted == 0 else ""))
        if self.predicted == 0 and self.atol is not None:
            margins = f"absolute tol {self.tol:.3g}, atol {self.atol:.3g}"
        else:
            margins = f"tol {self.tol:.3g}, rtol {self.rtol:.3g}"
        return (f"{head}\n"
                f"  predicted {self.predicted:.6g}, {estimate}; {rel}\n"
                f"  {margins}; p_refute {self.p_refute:.3g}, TOST p {self.p_equivalence:.3g}; "
                f"{self.replicates} replicates in {self.looks} look(s), seed {self.seed}\n"
                f"  reason: {self.reason}\n"
                f"  target: {self.target}: {self.description}\n"
                f"  assumptions: {self.assumptions}")


def _short_widths(ws: object) -> str:
    if not isinstance(ws, (list, tuple)) or not ws:
        return str(ws)
    if len(set(ws[1:])) == 1:
        return f"{ws[0]}->{ws[1]} x {len(ws) - 1}"
    return "[" + ",".join(map(str, ws)) + "]"

