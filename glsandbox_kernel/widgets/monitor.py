"""The live metrics widget and violation banner of one cell (host side, kernel process).

Who calls: the kernel (:class:`glsandbox_kernel.kernel.kernel.SandboxKernel`)
around each ``OSSandbox.run_cell``::

    mon = CellMonitor(send=relay.send, sandbox=sandbox, parent=parent, widgets=frontend_has_widgets)
    mon.start()
    try:
        result = sandbox.run_cell(code, on_output=..., ...)   # mon.on_output(frame) for each frame
    finally:
        mon.finish(result)

Every figure comes from the session's :class:`~glsandbox_kernel.metrics.Monitor`
(cgroups, /proc, the container runtime: measured outside the sandbox) and
every violation from the session's supervisor or network proxy; nothing is
taken from sandboxed code. The widget lives in the kernel process, so it keeps
updating while the worker is busy or hung.

What the user sees:

- cells shorter than :data:`LIVE_AFTER` seconds: nothing here (the cell's
  audit line is its summary);
- longer cells, with a widget frontend: after :data:`LIVE_AFTER` seconds an
  ipywidgets box (a matplotlib sparkline image of CPU % and memory, and HTML
  labels: elapsed, CPU, memory current/peak/limit, pids, limits), labels
  refreshed at every monitor sample (4 Hz), the chart at most every
  ``chart_interval`` seconds; when the cell ends it is replaced in place by a
  static summary (a line as ``text/plain`` and the chart as a PNG inline in
  the ``text/html``; no ``image/png`` part, which console frontends would
  write to temp files) and its comms closed;
- longer cells without a widget frontend (nbclient, nbconvert, a plain
  client): the static summary only, when the cell ends;
- violations, in every frontend: a red banner (display_data, updated in place
  as each violation arrives) listing what was tried, whether the record is
  trusted, and the action; when the cell ends, whether the cell was stopped
  (enforcing) or continued (permissive).

All outputs made here carry ``metadata.glsandbox.role = "monitor"`` (for
display) and are published through ``OSSandbox.mark_output``, so the cell's
audit record lists each of them, content included, as kernel-made
(:mod:`glsandbox_kernel.notebook.evidence`); the kernel calls :meth:`CellMonitor.finish`
before the record is sealed. The text and HTML of what is shown come from
:mod:`.render`; this module decides when and where they appear.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ..notebook.evidence import ROLE_MONITOR, WIDGET_MIME, role_metadata
from .chart import Point
from .render import banner, int_or_none, labels_html, num, summary_html, summary_text
from .render import limits_of as limits_of

log = logging.getLogger("glsandbox.widgets")

#: seconds a cell runs before the live widget appears (shorter cells show only their summary line).
LIVE_AFTER = 0.5

Send = Callable[..., None]
"""``send(msg_type, content, metadata=None, buffers=None)``: publish on IOPub with the cell's parent."""


class CellMonitor:
    """Live monitor, banner and final summary of one cell (see the module docstring).

    ``widgets``: a widget frontend is present (else only static outputs).
    ``monitor``: show metrics at all (``--no-monitor`` / the kernel option);
    violation banners are shown either way. ``limits`` overrides what is shown
    as the limits in force (the kernel passes per-cell overrides).
    """

    def __init__(
        self,
        *,
        send: Send,
        sandbox: Any,
        parent: dict[str, Any] | None = None,
        widgets: bool = False,
        monitor: bool = True,
        limits: Mapping[str, Any] | None = None,
        live_after: float = LIVE_AFTER,
        chart_interval: float = 1.0,
    ) -> None:
        self.send = send
        self.sandbox = sandbox
        self.parent = parent or {}
        self.widgets = widgets
        self.monitor = monitor
        self.live_after = live_after
        self.chart_interval = chart_interval
        self.limits = dict(limits) if limits is not None else limits_of(sandbox)
        self.points: list[Point] = []
        self.violations: list[dict[str, Any]] = []
        self._last_event: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._new_violations = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._started_at = time.monotonic()
        self._display_id = f"glsandbox-monitor-{uuid.uuid4().hex}"
        self._banner_id = f"glsandbox-violations-{uuid.uuid4().hex}"
        self._displayed = False  # the live widget is on screen
        self._banner_shown = False
        self._cleared = False  # a clear_output removed our outputs since they were shown
        self._live: _LiveWidget | None = None
        self._last_chart = 0.0
        self._render_cost = 0.0
        self._renderer: Any = None
        self._lock = threading.Lock()  # publishing of live outputs vs finish()
        self._finished = False

    # -- the kernel's side ------------------------------------------------------------------
    def start(self) -> None:
        """Listen to the session's monitor and supervisor (cheap: no thread until a sample arrives)."""
        session = self.sandbox.session
        self._started_at = time.monotonic()
        session.monitor.listeners.append(self._on_sample)
        listeners = getattr(session, "violation_listeners", None)
        if listeners is not None:
            listeners.append(self._on_violation)

    def on_output(self, frame: Mapping[str, Any]) -> None:
        """The kernel reports each output frame it relays (to notice ``clear_output``)."""
        if frame.get("type") == "clear_output" and (self._displayed or self._banner_shown):
            self._cleared = True

    def finish(self, result: Any = None) -> None:
        """The cell ended: freeze the widget into the summary, finish the banner, close comms.

        ``result`` is the :class:`~glsandbox_kernel.session.CellResult` (None when the
        request itself failed). Runs in the kernel's execute thread; a second call does nothing.
        """
        if self._finished:
            return
        self._finished = True
        session = self.sandbox.session
        _remove(session.monitor.listeners, self._on_sample)
        _remove(getattr(session, "violation_listeners", []), self._on_violation)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._lock:
            try:
                self._finish(result)
            except Exception:
                log.warning("could not show the monitor summary", exc_info=True)
            finally:
                if self._live is not None:
                    self._live.close()
                    self._live = None

    # -- listeners (monitor / supervisor threads) ---------------------------------------------
    def _on_sample(self, event: dict[str, Any]) -> None:
        with self._cond:
            if self._stopping:
                return
            self._events.append(event)
            self._ensure_thread()
            self._cond.notify_all()

    def _on_violation(self, record: dict[str, Any]) -> None:
        with self._cond:
            self.violations.append(dict(record))
            if self._stopping:
                return
            self._new_violations = True
            self._ensure_thread()
            self._cond.notify_all()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="glsandbox-cell-monitor", daemon=True)
            self._thread.start()

    # -- the updater thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._events and not self._new_violations and not self._stopping:
                    self._cond.wait(1.0)
                events, self._events = self._events, []
                new_violations, self._new_violations = self._new_violations, False
                stopping = self._stopping
            if stopping:
                return
            try:
                for event in events:
                    self._add_point(event)
                with self._lock:
                    if new_violations:
                        self._show_banner(final=None)
                    if self.monitor and self.widgets and events:
                        self._update_live()
            except Exception:
                log.warning("monitor widget update failed", exc_info=True)

    def _add_point(self, event: dict[str, Any]) -> None:
        elapsed = num(event.get("elapsed"))
        cpu_time = num(event.get("cpu_time"))
        cpu_percent = None
        last = self._last_event
        if last is not None and elapsed is not None and cpu_time is not None:
            prev_elapsed, prev_cpu = num(last.get("elapsed")), num(last.get("cpu_time"))
            if prev_elapsed is not None and prev_cpu is not None and elapsed > prev_elapsed:
                cpu_percent = max(0.0, (cpu_time - prev_cpu) / (elapsed - prev_elapsed) * 100.0)
        self._last_event = event
        self.points.append(
            Point(
                elapsed=elapsed or 0.0,
                cpu_percent=cpu_percent,
                memory=int_or_none(event.get("memory_current")),
                memory_peak=int_or_none(event.get("memory_peak")),
            )
        )

    def _update_live(self) -> None:
        event = self._last_event or {}
        elapsed = num(event.get("elapsed")) or 0.0
        if not self._displayed:
            if elapsed < self.live_after or self._stopping:
                return
            live = _LiveWidget(self.parent)
            content = live.display_content(self._display_id)
            displayed = self.sandbox.mark_output(
                {"output_type": "display_data", **content}, lambda: self.send("display_data", content)
            )
            if not displayed:  # the cell is over
                live.close()
                return
            self._live = live
            self._displayed = True
        current = self._live
        if current is None:
            return
        current.set_labels(labels_html(self.points, event, self.limits, running=True))
        now = time.monotonic()
        if now - self._last_chart >= max(self.chart_interval, 5 * self._render_cost):
            t0 = time.perf_counter()
            png = self._chart().render(self.points)
            self._render_cost = time.perf_counter() - t0
            self._last_chart = now
            current.set_chart(png)

    # -- banner -----------------------------------------------------------------------------------
    def _show_banner(self, final: Any) -> None:
        """Show or update the banner; ``final`` is the CellResult when the cell ended, else None."""
        violations = list(self.violations)
        if final is not None and getattr(final, "violations", None):
            violations = _merge_violations(violations, final.violations)
        if not violations:
            return
        mode = str(getattr(getattr(self.sandbox.config, "sandbox_mode", None), "value", "enforcing"))
        status = None
        if final is not None:
            # What the session actually did: stopped the code, or killed it when it did not stop.
            status = "continued" if mode == "permissive" else (getattr(final, "enforcement", None) or "stopped")
        text, markup = banner(violations, mode=mode, status=status)
        content = {
            "data": {"text/plain": text, "text/html": markup},
            "metadata": role_metadata(ROLE_MONITOR, part="violations"),
            "transient": {"display_id": self._banner_id},
        }
        if self._banner_shown and not self._cleared:
            self._publish("update_display_data", content)
            return
        if final is None:
            shown = self.sandbox.mark_output(
                {"output_type": "display_data", **content}, lambda: self.send("display_data", content)
            )
            if shown:
                self._banner_shown = True
            return
        self._publish("display_data", content)
        self._banner_shown = True

    # -- the end of the cell ------------------------------------------------------------------------
    def _finish(self, result: Any) -> None:
        if self.violations or (result is not None and getattr(result, "violations", None)):
            self._show_banner(final=result if result is not None else _NoResult())
        metrics = getattr(result, "metrics", None)
        elapsed = num(getattr(metrics, "execution_time", None))
        if elapsed is None:
            elapsed = time.monotonic() - self._started_at
        if not self.monitor or (not self._displayed and elapsed < self.live_after):
            return
        status = getattr(result, "status", None) or "failed"
        text = summary_text(
            metrics, self.limits, status=status, violations=len(self._all_violations(result)), elapsed=elapsed
        )
        png = None
        if self.points:
            points = list(self.points)
            end = _final_point(metrics, elapsed)
            if end is not None and end.elapsed > points[-1].elapsed:
                points.append(end)
            png = self._chart().render(points)
        # No image/png part: a console frontend (jupyter console's PIL handler) would write each chart to a
        # temp file and leave it there. The chart is inside the HTML; frontends without HTML show the line.
        content = {
            "data": {"text/plain": text, "text/html": summary_html(text, png)},
            "metadata": role_metadata(ROLE_MONITOR, part="summary"),
            "transient": {"display_id": self._display_id},
        }
        if self._displayed and not self._cleared:
            self._publish("update_display_data", content)
        else:
            self._publish("display_data", content)

    def _publish(self, msg_type: str, content: dict[str, Any]) -> None:
        """Publish a kernel-made output, recorded in the running cell's outputs when there is one."""
        if not self.sandbox.mark_output({"output_type": msg_type, **content}, lambda: self.send(msg_type, content)):
            self.send(msg_type, content)

    def _chart(self) -> Any:
        if self._renderer is None:
            from .chart import ChartRenderer

            self._renderer = ChartRenderer(memory_limit=self.limits.get("memory"))
        return self._renderer

    def _all_violations(self, result: Any) -> list[dict[str, Any]]:
        final = getattr(result, "violations", None) or []
        return _merge_violations(list(self.violations), final)


class _NoResult:
    violations: list[dict[str, Any]] = []


class _LiveWidget:
    """The ipywidgets box of the live monitor (kernel process; created in the updater thread)."""

    def __init__(self, parent: dict[str, Any]) -> None:
        import ipywidgets as w

        from .comms import parent_context

        with parent_context(parent):
            self.image = w.Image(value=b"", format="png", layout=w.Layout(width="480px", height="120px"))
            self.labels = w.HTML(value="<i>glsandbox: starting the monitor…</i>")
            self.box = w.HBox([self.image, self.labels], layout=w.Layout(align_items="center"))
        self._closed = False

    def display_content(self, display_id: str) -> dict[str, Any]:
        return {
            "data": {
                WIDGET_MIME: {"model_id": self.box.model_id, "version_major": 2, "version_minor": 0},
                "text/plain": "glsandbox live monitor (needs a widget frontend)",
            },
            "metadata": role_metadata(ROLE_MONITOR, part="live"),
            "transient": {"display_id": display_id},
        }

    def set_labels(self, markup: str) -> None:
        if not self._closed:
            self.labels.value = markup

    def set_chart(self, png: bytes) -> None:
        if not self._closed:
            self.image.value = png

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for widget in (self.box, self.image, self.labels):
            for part in (getattr(widget, "layout", None), getattr(widget, "style", None), widget):
                try:
                    if part is not None and hasattr(part, "close"):
                        part.close()
                except Exception:
                    log.debug("could not close a monitor widget", exc_info=True)


# -- helpers ---------------------------------------------------------------------------------------


def _merge_violations(live: list[dict[str, Any]], final: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The session's final list, plus any live one it does not hold (same kind/detail/time)."""
    if not final:
        return live
    seen = {(v.get("kind"), v.get("detail"), v.get("time")) for v in final}
    return [*final, *(v for v in live if (v.get("kind"), v.get("detail"), v.get("time")) not in seen)]


def _final_point(metrics: Any, elapsed: float) -> Point | None:
    mem = int_or_none(getattr(metrics, "memory_current_bytes", None))
    if mem is None:
        return None
    return Point(
        elapsed=elapsed,
        cpu_percent=None,
        memory=mem,
        memory_peak=int_or_none(getattr(metrics, "memory_peak_bytes", None)),
    )


def _remove(items: list[Any], item: Any) -> None:
    try:
        items.remove(item)
    except ValueError:
        pass
