"""The monitor chart: CPU % and memory over time as a small PNG (host side).

Who calls: :class:`glsandbox_kernel.widgets.monitor.CellMonitor`, in the
kernel process (never in the sandbox), both for the live widget's image and
for the static chart that replaces it when the cell ends. matplotlib is
imported on first use, with the Agg canvas only (no pyplot, no GUI backend,
safe off the main thread). A :class:`ChartRenderer` keeps its figure between
frames and only replaces the data, so a live frame costs a few tens of ms.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from typing import Any

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Point:
    """One monitor reading as charted: seconds since the cell started, CPU %, bytes."""

    elapsed: float
    cpu_percent: float | None
    memory: int | None
    memory_peak: int | None


def prewarm() -> None:
    """Import matplotlib's Agg canvas now (the kernel calls this in a background thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


class ChartRenderer:
    """Draws :class:`Point` series into one reusable figure: CPU % left, memory right."""

    def __init__(
        self, *, memory_limit: int | None = None, width: float = 6.0, height: float = 1.5, dpi: int = 80
    ) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.memory_limit = memory_limit
        self.dpi = dpi
        self.fig = Figure(figsize=(width, height), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        self.fig.subplots_adjust(left=0.07, right=0.99, bottom=0.17, top=0.84, wspace=0.18)
        self.ax_cpu, self.ax_mem = self.fig.subplots(1, 2)
        (self.cpu_line,) = self.ax_cpu.plot([], [], color="#1f77b4", linewidth=1.4)
        (self.mem_line,) = self.ax_mem.plot([], [], color="#2ca02c", linewidth=1.4)
        self.peak_line = self.ax_mem.axhline(0, color="#ff7f0e", linewidth=0.9, linestyle="--", visible=False)
        self.limit_line = self.ax_mem.axhline(0, color="#d62728", linewidth=1.0, visible=False)
        self._fills: list[Any] = []
        self.ax_cpu.set_title("CPU %", fontsize=8, loc="left")
        title = "memory MiB" + (f" (limit {memory_limit / MiB:.0f})" if memory_limit else "")
        self.ax_mem.set_title(title, fontsize=8, loc="left")
        from matplotlib.ticker import MaxNLocator

        for ax in (self.ax_cpu, self.ax_mem):
            ax.tick_params(labelsize=7, length=2)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(3))
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)

    def render(self, points: Sequence[Point]) -> bytes:
        """PNG bytes of the chart for ``points``."""
        xs = [p.elapsed for p in points]
        cpu = [p.cpu_percent if p.cpu_percent is not None else math.nan for p in points]
        mem = [p.memory / MiB if p.memory is not None else math.nan for p in points]
        peaks = [p.memory_peak for p in points if p.memory_peak is not None]
        peak = max(peaks) / MiB if peaks else None
        xmax = max(xs[-1] if xs else 0.0, 0.5)
        for fill in self._fills:
            fill.remove()
        self.cpu_line.set_data(xs, cpu)
        self.mem_line.set_data(xs, mem)
        self._fills = [
            self.ax_cpu.fill_between(xs, cpu, color="#1f77b4", alpha=0.15),
            self.ax_mem.fill_between(xs, mem, color="#2ca02c", alpha=0.15),
        ]
        self.ax_cpu.set_ylim(0, max([c for c in cpu if not math.isnan(c)] + [100.0]) * 1.1)
        ymax = max([m for m in mem if not math.isnan(m)] + [peak or 0.0, 1.0])
        if peak is not None:
            self.peak_line.set_ydata([peak, peak])
            self.peak_line.set_visible(True)
        if self.memory_limit:
            limit = self.memory_limit / MiB
            if limit <= ymax * 2.5:
                self.limit_line.set_ydata([limit, limit])
                self.limit_line.set_visible(True)
                ymax = max(ymax, limit)
        self.ax_mem.set_ylim(0, ymax * 1.15)
        for ax in (self.ax_cpu, self.ax_mem):
            ax.set_xlim(0, xmax)
        buf = io.BytesIO()
        self.canvas.print_png(buf)
        return buf.getvalue()


def render_chart(points: Sequence[Point], *, memory_limit: int | None = None) -> bytes:
    """One-off PNG of ``points`` (see :class:`ChartRenderer`)."""
    return ChartRenderer(memory_limit=memory_limit).render(points)
