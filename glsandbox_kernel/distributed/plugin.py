"""The Dask worker plugin that keeps glsandbox sessions, and the task that uses them.

Runs in the Dask worker process: the trusted host side of the sandbox
boundary (the sandboxed worker is a separate, confined process each
:class:`~glsandbox_kernel.OSSandbox` starts). The client registers
:class:`SandboxPlugin` (``client.register_plugin``); Dask calls ``setup`` on
every worker, present and future, and ``teardown`` when the worker closes.
:func:`run_call` is the task body ``SandboxedExecutor`` submits.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from distributed import WorkerPlugin, get_worker

from ..audit import canonical_json
from ..config import OSSandboxConfig
from ..exceptions import SandboxCrashedError, SandboxTimeoutError
from ..safe_python import module_argv
from ..sandbox import OSSandbox
from .outcome import CallLines
from .outcome import NotStarted as NotStarted
from .outcome import TaskOutcome as TaskOutcome
from .outcome import _ExceptionBox as _ExceptionBox

PLUGIN_NAME = "glsandbox"


def config_key(config: OSSandboxConfig) -> str:
    """The key sessions are pooled under: SHA-256 of the config's canonical form.

    The executor computes it once per ``map`` (client side) and sends it with
    every task, so a worker does not re-encode the config per call.
    """
    return hashlib.sha256(canonical_json(config.to_dict())).hexdigest()


def session_key(config: OSSandboxConfig, run_id: str) -> str:
    """The pool key of one run's sessions for ``config``: ``<run id>/<config key>``.

    Sessions keep their interpreter between tasks (patched builtins, modules,
    files, threads), so they are shared only by the tasks of one run (one
    :class:`SandboxedExecutor`, one run chain) and closed when that run ends.
    """
    if not run_id or "/" in run_id:
        raise ValueError(f"bad run id {run_id!r}")
    return f"{run_id}/{config_key(config)}"


class CallSpec:
    """What every call of one ``map`` shares: the function and the sandbox config (client to worker).

    Built once per ``map`` on the client (trusted side); Dask pickles it with
    every task as the bytes of one cloudpickle and their digest (the scheduler
    never decodes them). A worker process decodes those bytes on the map's
    first task (:meth:`resolve`) and hands the same objects to every later
    task (so ``OSSandbox`` reuses its pickle of the function and the pool its
    config key): no per-task decoding of function or config.
    """

    __slots__ = ("_decoded", "config_id", "digest", "payload")

    def __init__(self, fn: Callable[..., Any], config: OSSandboxConfig, *, run_id: str) -> None:
        import cloudpickle

        self._decoded: tuple[Callable[..., Any], OSSandboxConfig] | None = (fn, config)
        # Sessions are pooled per run as well as per config: a task of one run never
        # runs in an interpreter another run's task has used (review 14).
        self.config_id = session_key(config, run_id)
        self.payload = cloudpickle.dumps((fn, config))
        self.digest = hashlib.sha256(self.payload).hexdigest()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_cached_spec, (self.digest, self.config_id, self.payload))

    def resolve(self) -> tuple[Callable[..., Any], OSSandboxConfig]:
        """``(fn, config)``, decoded once per worker process (Dask worker, from the trusted client)."""
        decoded = self._decoded
        if decoded is None:
            import cloudpickle

            if hashlib.sha256(self.payload).hexdigest() != self.digest:
                raise ValueError("call spec digest does not match its payload")
            decoded = self._decoded = cloudpickle.loads(self.payload)
        return decoded


_SPECS: OrderedDict[tuple[str, str], CallSpec] = OrderedDict()
_SPECS_LOCK = threading.Lock()


def _cached_spec(digest: str, config_id: str, payload: bytes) -> CallSpec:
    """Unpickle a :class:`CallSpec`: the one this process already has for ``digest`` in this run, else a new one.

    Keyed by the session key too: two runs mapping the same function share its
    decoded form per map only, never each other's sessions.
    """
    with _SPECS_LOCK:
        spec = _SPECS.get((digest, config_id))
        if spec is not None:
            _SPECS.move_to_end((digest, config_id))
            return spec
        spec = CallSpec.__new__(CallSpec)
        spec._decoded, spec.config_id, spec.payload, spec.digest = None, config_id, payload, digest
        _SPECS[(digest, config_id)] = spec
        while len(_SPECS) > 64:
            _SPECS.popitem(last=False)
    return spec


class _Slot:
    """One pooled session and how many of its audit records were already claimed by a task."""

    def __init__(self, box: OSSandbox, key: str) -> None:
        self.box = box
        self.config_key = key
        self.run_id = key.partition("/")[0]  # the run whose chain this session's records join
        self.shipped = 0
        self.calls = 0
        self.last_used = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> CallLines | None:
        """The records this session took since the last call (sealed or still queued), claimed for one task.

        Called at every checkin, so a call's records travel with its own task
        and reach the run chain of the run that made the call (records left
        for a later task would travel with the wrong call's). Only
        the range is claimed here: the records are sealed by the host loop's
        group commit, or at the latest when the task's result is pickled
        (:class:`CallLines`), not on the task's thread.
        """
        log = self.box.audit_log
        if log is None:
            return None
        with self._lock:
            start, end = self.shipped, log.appended
            self.shipped = end
        return CallLines(log, start, end) if end > start else None

    def new_lines(self) -> list[str]:
        """:meth:`take`, sealed now, as lines (sessions being closed, the drain)."""
        taken = self.take()
        return taken.resolve() if taken is not None else []


class SandboxPlugin(WorkerPlugin):
    """Keeps up to ``max_sessions`` idle glsandbox sessions per worker, keyed by config.

    Runs on each Dask worker (host side). A task checks a session out for
    its config (a fresh one when none is idle), runs its call, and checks it
    back in; the least recently used idle sessions beyond ``max_sessions``
    are closed, whichever run they belong to, and their last records are
    kept for their own run (its next task here, or its drain at shutdown),
    never shipped with another run's task. A session whose worker crashed
    or timed out is closed rather than reused. ``teardown`` closes every
    session.
    """

    name = PLUGIN_NAME
    idempotent = True  # registering again (a second executor) keeps the running sessions

    def __init__(self, *, max_sessions: int = 4) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self._reset()

    def __getstate__(self) -> dict[str, Any]:
        """Only the settings travel to the workers (registration pickles the plugin)."""
        return {"max_sessions": self.max_sessions}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_sessions = int(state["max_sessions"])
        self._reset()

    def _reset(self) -> None:
        self._idle: OrderedDict[int, _Slot] = OrderedDict()
        self._busy: dict[int, _Slot] = {}
        self._lock = threading.Lock()
        self._address = ""
        self.sessions_started = 0
        # Lines of sessions closed by another run's checkin, kept for their own run (bounded:
        # the runs that never came back to this worker are forgotten oldest first).
        self._held: OrderedDict[str, list[str]] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()  # runs drained here: late sessions close
        self._cancelled: OrderedDict[str, None] = OrderedDict()  # runs interrupted: their tasks start no more

    # -- Dask hooks -------------------------------------------------------------------
    def setup(self, worker: Any) -> None:
        """Called by Dask on the worker when the plugin is registered (or the worker starts)."""
        self._address = str(getattr(worker, "address", "") or "")

    def teardown(self, worker: Any) -> None:
        """Called by Dask when the worker closes or the plugin is removed: close every session."""
        with self._lock:
            slots = list(self._idle.values()) + list(self._busy.values())
            self._idle.clear()
            self._busy.clear()
        for slot in slots:
            _close_quietly(slot.box)

    # -- sessions -------------------------------------------------------------------------
    def checkout(self, config: OSSandboxConfig, key: str) -> _Slot:
        """An idle session of ``key`` (most recently used first), or a new one for ``config``.

        ``key`` is :func:`session_key` of ``config`` and the caller's run.
        """
        with self._lock:
            for ident in reversed(self._idle):
                slot = self._idle[ident]
                if slot.config_key == key:
                    del self._idle[ident]
                    self._busy[ident] = slot
                    return slot
        slot = _Slot(OSSandbox(config), key)
        with self._lock:
            self._busy[id(slot)] = slot
            self.sessions_started += 1
        return slot

    def checkin(self, slot: _Slot, *, broken: bool = False) -> tuple[CallLines | None, list[str]]:
        """Return ``slot`` to the pool (or close it); the records to ship with this call.

        This call's records (claimed, sealed when the result leaves the
        worker), and the lines of this run's sessions closed since its last
        checkin here (evicted beyond ``max_sessions``, by this checkin or
        another run's; sealed by their close): each record reaches the chain
        of the run whose session made it.
        """
        slot.calls += 1
        slot.last_used = time.monotonic()
        evicted: list[_Slot] = []
        with self._lock:
            ended = slot.run_id in self._ended
        if broken or ended:  # a run that has shut down takes no more calls: nobody would reuse it
            _close_quietly(slot.box)
        taken = slot.take()
        with self._lock:
            self._busy.pop(id(slot), None)
            if not (broken or ended):
                self._idle[id(slot)] = slot
                while len(self._idle) > self.max_sessions:
                    evicted.append(self._idle.popitem(last=False)[1])
        for old in evicted:
            _close_quietly(old.box)
            self._hold(old.run_id, old.new_lines())
        with self._lock:
            lines = self._held.pop(slot.run_id, [])
        return taken, lines

    def _hold(self, run_id: str, lines: list[str]) -> None:
        """Keep a closed session's last ``lines`` for its own run's next checkin or drain."""
        if not lines:
            return
        with self._lock:
            self._held.setdefault(run_id, []).extend(lines)
            self._held.move_to_end(run_id)
            while len(self._held) > 64:
                self._held.popitem(last=False)

    def take_unsent(self, run_id: str) -> list[str]:
        """Close the idle sessions of run ``run_id``; the record lines no task carried back.

        Called by the run's executor at shutdown (``client.run``). Every call
        ships its own records, so this is what was sealed between calls and
        the ``session_end`` of the sessions it closes, with those of its sessions
        another run's checkin closed. Busy sessions ship theirs with their task
        (and close at that checkin); other runs' sessions are not touched.
        """
        prefix = f"{run_id}/"
        with self._lock:
            idents = [i for i, s in self._idle.items() if s.config_key.startswith(prefix)]
            slots = [self._idle.pop(i) for i in idents]
            out = self._held.pop(run_id, [])
            self._ended[run_id] = None
            while len(self._ended) > 256:
                self._ended.popitem(last=False)
        for slot in slots:
            _close_quietly(slot.box)
            out.extend(slot.new_lines())
        return out

    def cancel_run(self, run_id: str) -> None:
        """From now on, run ``run_id``'s tasks that reach this worker return :class:`NotStarted` unrun.

        Called by the run's executor (``client.run``, on the worker's event loop) when the
        run is interrupted; the tasks already running here run on and ship their records.
        """
        with self._lock:
            self._cancelled[run_id] = None
            while len(self._cancelled) > 256:
                self._cancelled.popitem(last=False)

    def cancelled(self, run_id: str) -> bool:
        """Whether run ``run_id`` was interrupted (the task body asks before it starts anything)."""
        return run_id in self._cancelled

    # -- health ----------------------------------------------------------------------------
    def health(self, *, doctor: bool = True) -> dict[str, Any]:
        """This worker's sandbox health: its sessions and, with ``doctor``, ``glsandbox doctor --json``."""
        with self._lock:
            slots = [(s, "idle") for s in self._idle.values()] + [(s, "busy") for s in self._busy.values()]
        report: dict[str, Any] = {
            "worker": self._address,
            "pid": os.getpid(),
            "plugin": True,
            "max_sessions": self.max_sessions,
            "sessions_started": self.sessions_started,
            "sessions": [
                {
                    "session_id": s.box.session_id,
                    "state": state,
                    "isolation_type": s.box.isolation_type,
                    "security_level": s.box.config.security_level.value,
                    "calls": s.calls,
                    "worker_pids": s.box.worker_pids,
                }
                for s, state in slots
            ],
        }
        if doctor:
            report["doctor"] = doctor_json()
        return report


def doctor_json(timeout: float = 120.0) -> dict[str, Any]:
    """``glsandbox doctor --json`` run by this worker's interpreter (a separate process)."""
    try:
        proc = subprocess.run(
            [*module_argv(sys.executable, "glsandbox_kernel.cli"), "doctor", "--json"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"glsandbox doctor could not run: {type(exc).__name__}: {exc}"}
    if proc.returncode != 0:
        return {"error": f"glsandbox doctor exited {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        return {"error": "glsandbox doctor printed no JSON"}
    return report


def _close_quietly(box: OSSandbox) -> None:
    try:
        box.close()
    except Exception:  # a session that cannot close must not stop the others
        import logging

        logging.getLogger("glsandbox.distributed").exception("closing session %s failed", box.session_id)


_install_lock = threading.Lock()


def worker_plugin(worker: Any | None = None) -> SandboxPlugin:
    """The worker's :class:`SandboxPlugin`; installs a default one if none was registered."""
    worker = worker if worker is not None else get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if isinstance(plugin, SandboxPlugin):  # every task after the first: no lock
        return plugin
    with _install_lock:
        plugin = worker.plugins.get(PLUGIN_NAME)
        if not isinstance(plugin, SandboxPlugin):
            plugin = SandboxPlugin()
            plugin.setup(worker)
            worker.plugins[PLUGIN_NAME] = plugin  # torn down with the worker like a registered one
    return plugin


# -- tasks (run in the Dask worker process) ------------------------------------------------------


def run_call(packed: tuple[tuple[Any, ...], dict[str, Any]], *, spec: CallSpec, key: str | None = None) -> TaskOutcome:
    """Task body: ``spec.fn(*args, **kwargs)`` in a pooled session; never raises for the call's own errors."""
    args, kwargs = packed
    worker = get_worker()
    plugin = worker_plugin(worker)
    task_key = key if key is not None else str(worker.get_current_task())
    outcome = TaskOutcome(key=task_key, worker=str(worker.address), pid=os.getpid(), session_id=None)
    outcome.started = time.time()
    try:
        fn, config = spec.resolve()
        slot = plugin.checkout(config, spec.config_id)  # BackendUnavailableError etc. travel like call errors
    except Exception as exc:  # noqa: BLE001 - shipped with its type
        outcome.boxed_error = _ExceptionBox(exc)
        outcome.finished = time.time()
        return outcome
    outcome.session_id = slot.box.session_id
    try:
        outcome.value = slot.box.execute(fn, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the call's error is a result, shipped with its type
        outcome.boxed_error = _ExceptionBox(exc)
    broken = isinstance(outcome.error, (SandboxCrashedError, SandboxTimeoutError))
    outcome.pending, outcome.lines = plugin.checkin(slot, broken=broken)
    outcome.finished = time.time()
    return outcome


class _Packed:
    """Opaque (args, kwargs): Dask must not read a tuple argument as a task."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Packed, (self.args, self.kwargs))


class _Chunk:
    """Several calls of one function in one Dask task (``map(chunksize=N)``)."""

    __slots__ = ("calls",)

    def __init__(self, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        self.calls = calls

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Chunk, (self.calls,))


def _not_started(run_id: str | None) -> NotStarted | None:
    """A :class:`NotStarted` when run ``run_id`` was interrupted before this task began (Dask worker)."""
    if not run_id:
        return None
    worker = get_worker()
    if not worker_plugin(worker).cancelled(run_id):
        return None
    return NotStarted(str(worker.get_current_task()), str(worker.address))


def _call_packed(packed: _Packed | _Chunk, *, spec: CallSpec) -> TaskOutcome | list[TaskOutcome] | NotStarted:
    """Task body on the Dask worker: :func:`run_call` for one call, or each call of a chunk in turn."""
    skipped = _not_started(spec.config_id.partition("/")[0])
    if skipped is not None:
        return skipped
    if isinstance(packed, _Chunk):
        return [run_call(call, spec=spec) for call in packed.calls]
    return run_call((packed.args, packed.kwargs), spec=spec)


def _task_packed(
    packed: _Packed, *, task: Callable[..., Any], task_kwargs: dict[str, Any], run_id: str | None = None
) -> TaskOutcome | NotStarted:
    """Task body on the Dask worker for :meth:`SandboxedExecutor.submit_tasks`."""
    skipped = _not_started(run_id)
    if skipped is not None:
        return skipped
    outcome: TaskOutcome = task(*packed.args, **task_kwargs)
    return outcome


def run_on_worker_health(dask_worker: Any, doctor: bool = True) -> dict[str, Any]:
    """``client.run`` callback: the plugin's health report (Dask passes ``dask_worker``)."""
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    if isinstance(plugin, SandboxPlugin):
        return plugin.health(doctor=doctor)
    report: dict[str, Any] = {"worker": str(dask_worker.address), "pid": os.getpid(), "plugin": False}
    if doctor:
        report["doctor"] = doctor_json()
    return report


def run_on_worker_cancel(dask_worker: Any, run_id: str) -> bool:
    """``client.run`` callback: run ``run_id``'s tasks start no more on this worker (:meth:`SandboxPlugin.cancel_run`)."""
    worker_plugin(dask_worker).cancel_run(run_id)
    return True


def run_on_worker_drain(dask_worker: Any, run_id: str) -> list[str]:
    """``client.run`` callback: close run ``run_id``'s idle sessions; the records no task carried back."""
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, SandboxPlugin):
        return []
    return plugin.take_unsent(run_id)
