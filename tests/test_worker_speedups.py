"""The documents job's cheap speedups that must not change a result: the derive workers' allocator
setting (:mod:`varprop._util.allocator`), figures saved without matplotlib's layout-only draw,
and log-axis tick labels as Unicode text (:mod:`varprop._util.figures`)."""

from __future__ import annotations

import platform
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

import varprop.documents.parallel as parallel
from varprop._util.allocator import retain_freed_memory
from varprop._util.figures import unicode_tick
from varprop.documents.store import budget


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_retain_freed_memory_accepted_by_glibc():
    # in a child process: the setting is process-wide, the test process keeps its own
    code = "from varprop._util.allocator import retain_freed_memory as r; print(r())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_retain_freed_memory_is_a_no_op_elsewhere(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert retain_freed_memory() is False


def test_derive_workers_get_the_allocator_setting(monkeypatch):
    seen = {}

    class Spy(ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", Spy)
    store = parallel.MonteCarloStore({}, frozen=True)
    tasks = [parallel.Task("page-part", "0/0/2"), parallel.Task("page-part", "0/1/2")]
    parallel.run_tasks(tasks, store, budget("quick"), format="markdown", figures=False,
                       pages=(), workers=2)
    assert seen.get("initializer") is retain_freed_memory


@pytest.mark.parametrize("label, text", [
    (r"$\mathdefault{10^{-3}}$", "10\u207b\u00b3"),
    (r"$\mathdefault{10^{0}}$", "10\u2070"),
    (r"$\mathdefault{10^{12}}$", "10\u00b9\u00b2"),
    (r"$\mathdefault{6\times10^{-1}}$", "6\u00d710\u207b\u00b9"),
    (r"$\mathdefault{-10^{2}}$", "\u221210\u00b2"),
    (r"$\mathdefault{0.5}$", "0.5"),
    ("", ""),
    ("layer $l$", "layer $l$"),                       # not a tick label: unchanged
    (r"$\mathdefault{10^{x}}$", r"$\mathdefault{10^{x}}$"),
])
def test_unicode_tick(label, text):
    assert unicode_tick(label) == text


def _log_figure():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, 3, figsize=(8, 3))
    x = np.arange(1, 21)
    for ax, y in zip(axes, (0.7 ** x, 1e-9 * 3.0 ** x, 0.3 + 0.01 * x)):  # decades; < 1 decade
        ax.plot(x, y)
        ax.set_yscale("log")
        ax.set_title("forward: $E[z_l^2]$")
    return fig, axes


def test_plain_log_ticks_same_ticks_unicode_labels():
    pytest.importorskip("matplotlib")
    from varprop._util.figures import plain_log_ticks
    fig, axes = _log_figure()
    fig.canvas.draw()
    before = [[(t.get_loc(), t.label1.get_text()) for t in ax.yaxis.get_major_ticks()
               + ax.yaxis.get_minor_ticks()] for ax in axes]
    for ax in axes:
        plain_log_ticks(ax)
    fig.canvas.draw()
    after = [[(t.get_loc(), t.label1.get_text()) for t in ax.yaxis.get_major_ticks()
              + ax.yaxis.get_minor_ticks()] for ax in axes]
    assert after == [[(loc, unicode_tick(text)) for loc, text in panel] for panel in before]
    shown = [text for panel in after for _, text in panel if text]
    assert len(shown) > 10 and not any("$" in text for text in shown)
    assert any("\u00d7" in text for text in shown)  # the panel within one decade labels minors


@pytest.mark.parametrize("kind, rc", [
    ("svg", {}), ("pdf", {}), ("svg", {"figure.autolayout": True}),
    ("svg", {"figure.constrained_layout.use": True})])
def test_save_figure_same_file_without_the_layout_draw(kind, rc, monkeypatch):
    pytest.importorskip("matplotlib")
    import io

    import matplotlib

    from varprop._util.figures import save_figure
    maker = f"varprop with matplotlib {matplotlib.__version__}"
    meta = {"Date": None} if kind == "svg" else {"CreationDate": None}
    with matplotlib.rc_context({"svg.hashsalt": "t", **rc}):  # a user's automatic layout too
        fig, _ = _log_figure()
        fig.tight_layout()
        buf = io.StringIO() if kind == "svg" else io.BytesIO()
        fig.savefig(buf, format=kind, metadata={**meta, "Creator": maker})  # the extra draw
        fig2, _ = _log_figure()
        fig2.tight_layout()
        draws = []
        original = type(fig2).draw
        monkeypatch.setattr(type(fig2), "draw", lambda self, r: draws.append(1) or original(self, r))
        assert save_figure(fig2, kind) == buf.getvalue()
        assert len(draws) == 1  # savefig's layout-only draw was skipped


def test_plain_log_ticks_keeps_mathtext_for_fonts_without_superscripts():
    pytest.importorskip("matplotlib")
    import matplotlib
    from matplotlib.ticker import LogFormatterSciNotation

    from varprop._util.figures import plain_log_ticks
    with matplotlib.rc_context({"font.family": "STIXGeneral"}):  # no superscript 4-9 glyphs
        fig, axes = _log_figure()
        plain_log_ticks(axes[0])
        assert type(axes[0].yaxis.get_major_formatter()) is LogFormatterSciNotation
    with matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        plain_log_ticks(axes[1])  # its tick labels were made in STIX: still mathtext
        assert type(axes[1].yaxis.get_major_formatter()) is LogFormatterSciNotation
        fig, axes = _log_figure()
        plain_log_ticks(axes[1])
        assert type(axes[1].yaxis.get_major_formatter()) is not LogFormatterSciNotation


@pytest.mark.parametrize("scale", ["symlog", "linear", "logit"])
def test_plain_log_ticks_leaves_other_formatters_alone(scale):
    pytest.importorskip("matplotlib")
    from varprop._util.figures import plain_log_ticks
    fig, axes = _log_figure()
    axes[0].set_yscale(scale)
    minor = axes[0].yaxis.get_minor_formatter()
    plain_log_ticks(axes[0])
    assert axes[0].yaxis.get_minor_formatter() is minor
    fig.canvas.draw()


def test_plain_log_ticks_respects_axis_font_usetex_and_user_formatters():
    pytest.importorskip("matplotlib")
    import matplotlib
    from matplotlib.ticker import LogFormatterExponent, LogFormatterSciNotation

    from varprop._util.figures import plain_log_ticks
    fig, axes = _log_figure()
    axes[0].tick_params(axis="y", labelfontfamily="cmr10")  # this axis' font has no superscripts
    plain_log_ticks(axes[0])
    assert type(axes[0].yaxis.get_major_formatter()) is LogFormatterSciNotation
    user = LogFormatterExponent()
    axes[1].yaxis.set_major_formatter(user)
    plain_log_ticks(axes[1])
    assert axes[1].yaxis.get_major_formatter() is user  # the user's choice stays
    assert type(axes[1].yaxis.get_minor_formatter()) is not LogFormatterSciNotation
    with matplotlib.rc_context({"text.usetex": True}):
        plain_log_ticks(axes[2])
    assert type(axes[2].yaxis.get_major_formatter()) is LogFormatterSciNotation


@pytest.mark.parametrize("rc", [{"pdf.use14corefonts": True}, {"ps.useafm": True}])
def test_plain_log_ticks_keeps_mathtext_for_core_fonts(rc):
    pytest.importorskip("matplotlib")
    import matplotlib
    from matplotlib.ticker import LogFormatterSciNotation

    from varprop._util.figures import plain_log_ticks
    with matplotlib.rc_context(rc):  # the backends' core fonts have no superscripts
        fig, axes = _log_figure()
        plain_log_ticks(axes[0])
    assert type(axes[0].yaxis.get_major_formatter()) is LogFormatterSciNotation


@pytest.mark.parametrize("which, side", [("minor", "left"), ("major", "right")])
def test_plain_log_ticks_checks_every_tick_label_font(which, side):
    pytest.importorskip("matplotlib")
    from matplotlib.ticker import LogFormatterSciNotation

    from varprop._util.figures import plain_log_ticks
    fig, axes = _log_figure()
    ax = axes[2]  # within one decade: the minor ticks are labelled
    if side == "right":
        ax.yaxis.tick_right()
    ax.tick_params(axis="y", which=which, labelfontfamily="cmr10")
    plain_log_ticks(ax)
    assert type(ax.yaxis.get_minor_formatter()) is LogFormatterSciNotation
