"""The container's entry point: SANDBOX side, run before any untrusted code.

Imported from its directory inside the container, as its pid 2 under
docker-init (or as the sentry's first task under gVisor), so that it loads
from its compiled pyc (:data:`glsandbox_kernel.backends.container.settings.BOOTSTRAP_CODE`)::

    python3 -s -E -c "import sys; sys.path[0] = '/opt/glsandbox/site/glsandbox_kernel/worker'; \\
        import bootstrap; bootstrap.main(sys.argv)" SPEC_JSON

``SPEC_JSON`` comes from the host (:func:`glsandbox_kernel.backends.container.settings.worker_command`):
the Python ``X.Y`` the host needs, the mounted dependency directories, the
site directory holding this package, the transport socket's path, the
seccomp section (a :class:`glsandbox_kernel.confinement.seccomp.SeccompPolicy`)
with that policy's BPF program as the host packed it (the bytes NAMESPACE's
children load for the same policy; loaded here by :mod:`glsandbox_kernel.confinement.seccomp_load`,
never rebuilt: the policy's module would import dataclasses and inspect at every start)
and the network section (:func:`glsandbox_kernel.confinement.network.plan_network`).

In order (first, where the host bound one, the image's module bundle goes
in front of the import system: :class:`_Bundle`):

1. refuse a python of another minor version (exit 86, one line on stderr);
2. put the mounted worker code and its dependencies on ``sys.path``, and
   register the ``glsandbox_kernel`` package without running its
   ``__init__`` (the host-side API; it runs on the first attribute access,
   when user code imports the package);
3. import what the worker needs for its first call (cloudpickle is not
   among it: :mod:`glsandbox_kernel.worker.unpickle_lite`; a pooled worker
   imports it while it waits for its session);
4. when the config allows any network, bind the TCP relay on 127.0.0.1
   and set ``HTTP(S)_PROXY`` (NAMESPACE's ``prepare_relay_child``); enter a Landlock
   domain (:mod:`~glsandbox_kernel.confinement.ptrace_fence`: no reach into docker-init), load the
   project's seccomp filter (the policy NAMESPACE loads) with a listener if asked; then fork the
   relay (``start_relay_child``: confined by the same filter), which copies
   bytes to the host proxy's socket bound at ``/run/glsandbox-net``;
5. where no listener can reach the host (gVisor's sentry has no user
   notifications), install an audit hook that reports exec attempts and
   ctypes lookups of escape-class functions on a second socket (``report_socket``) and
   waits for the host's ack; the host records them as ``trusted: False``
   (what the sandbox says of itself). The kernel's filter still decides;
   the hook only adds a report and refuses escape tools early;
6. connect to the host (exit 88 when its socket is refused or removed: the host
   died), start the watchdog that exits when the host's end closes
   (:func:`_exit_when_host_gone`), and serve; the hello frame carries the listener fd
   (SCM_RIGHTS over the bind-mounted socket, as runc's seccomp agent gets
   it over ``listenerPath``), which is closed here before any request runs;
   the spec's ``file_limit`` (RLIMIT_NOFILE) is set only then (:func:`_raise_file_limit`),
   or, where no fd crosses the hello, before it (:func:`_set_file_limit_now`).

This file imports nothing of the host side; it must keep working as a
top-level module (no relative imports at module level).
"""

import marshal
import os
import sys
import time
from _frozen_importlib import module_from_spec  # importlib.util's, without importlib, contextlib, warnings
from _frozen_importlib_external import ExtensionFileLoader, SourceFileLoader, spec_from_file_location

# Only built-in and frozen modules above (not even __future__, a file read before the bundle
# is: quoted annotations): the heavy ones (json, typing ...) come after the bundle's finder
# is in place (see _Bundle).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSION_MISMATCH_EXIT = 86
SETUP_FAILED_EXIT = 87
#: The host died: its end of the connection closed (:func:`_exit_when_host_gone`), or,
#: before the worker connected, its socket was refused or removed (:func:`_connect`).
HOST_GONE_EXIT = 88


def _check_python(want: str) -> None:
    have = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if have != want:
        sys.stderr.write(f"glsandbox: the image has python {have}, the host needs {want}\n")
        sys.exit(VERSION_MISMATCH_EXIT)


def _add_paths(deps: list[str], site_dir: str) -> None:
    import site

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # not worker/ itself
    for path in deps:
        sys.path.append(path)
        # .pth files, but not the host's editable-install finders (host paths).
        for name in sorted(os.listdir(path)):
            if name.endswith(".pth") and not name.startswith(("__editable__", "distutils-precedence")):
                site.addpackage(path, name, set())
    sys.path.insert(0, site_dir)


def _register_package_lazily(name: str, pkg_dir: str) -> None:
    """Package ``name`` in sys.modules with its ``__init__`` deferred to the first attribute use.

    Its submodules import as usual; only what they need is loaded (the
    top-level ``__init__`` is the host-side API, the confinement package's
    imports every step, about 60 ms the worker does not need).
    """
    spec = spec_from_file_location(name, os.path.join(pkg_dir, "__init__.py"), submodule_search_locations=[pkg_dir])
    assert spec is not None and spec.loader is not None
    pkg = module_from_spec(spec)
    loader = spec.loader

    def load_init(attr: str) -> "Any":
        # `from pkg import sub` asks hasattr(pkg, "sub") before importing it:
        # a submodule's name must import the submodule, not run __init__.
        if os.path.exists(os.path.join(pkg_dir, attr + ".py")) or os.path.isdir(os.path.join(pkg_dir, attr)):
            import importlib

            return importlib.import_module(f"{name}.{attr}")
        del pkg.__getattr__  # type: ignore[attr-defined]
        loader.exec_module(pkg)
        return getattr(pkg, attr)

    pkg.__getattr__ = load_init  # type: ignore[method-assign]
    sys.modules[name] = pkg
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, pkg)


#: Where the host binds the image's module bundle (read-only), when it has built one.
BUNDLE_PATH = "/opt/glsandbox/bundle"
BUNDLE_MAGIC = b"glsandbox-bundle-1\n"
#: What the worker imports before its first result (the bundle builder imports the same).
WORKER_MODULES = (
    "json",
    "resource",
    "glsandbox_kernel.confinement.seccomp_load",
    "glsandbox_kernel.confinement.seccomp_lists",
    "glsandbox_kernel.worker.loop",
    "glsandbox_kernel.worker.unpickle_lite",
)


class _BundledLoader(SourceFileLoader):
    """A module of the bundle: its code from memory; file name, source and resources as on disk."""

    def __init__(self, fullname: str, path: str, code: memoryview) -> None:
        super().__init__(fullname, path)
        self._code: memoryview | None = code

    def get_code(self, fullname: str) -> "Any":
        code, self._code = self._code, None
        if code is None or fullname != self.name:
            return super().get_code(fullname)
        return marshal.loads(code)


class _Bundle:
    """Meta-path finder over the bundle: the worker's start-up modules from one read, in start-up only.

    Under gVisor every file syscall is a trip to the sentry (and the gofer):
    a module costs ~8 of them (stats of each path entry, the source, the
    pyc's open, fstat, read, close), ~110 modules before the first result.
    The bundle (built once per image and worker code by
    :mod:`.bootstrap_bundle`, inside a container of that image: the image's
    own code objects) is read at once; a module it does not hold, or a
    bundle from another python build (``sys.version``), imports as usual.
    An entry is ``(origin, offset, length[, check])``: code at ``offset``, or,
    with offset -1, an extension module loaded from ``origin`` without the
    search of every path entry, with -2 one the start-up tries that is not there; ``check`` (size, mtime_ns), for files of the
    host's dependency folders (which may change), is one stat of ``origin``,
    else the module imports as usual. Each entry serves one import; the
    finder is removed before any request.
    """

    def __init__(self, data: memoryview, modules: "dict[str, tuple[Any, ...]]") -> None:
        self.data = data
        self.modules = modules

    @classmethod
    def load(cls, path: str = BUNDLE_PATH) -> "_Bundle | None":
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            return None
        start = len(BUNDLE_MAGIC) + 8
        if not data.startswith(BUNDLE_MAGIC):
            return None
        size = int.from_bytes(data[len(BUNDLE_MAGIC) : start], "little")
        try:
            index = marshal.loads(data[start : start + size])
        except (EOFError, ValueError, TypeError):
            return None
        if type(index) is not dict or index.get("version") != sys.version or type(index.get("modules")) is not dict:
            return None
        return cls(memoryview(data)[start + size :], index["modules"])

    def find_spec(self, name: str, path: "Any" = None, target: "Any" = None) -> "Any":
        entry = self.modules.pop(name, None)
        if type(entry) is not tuple or len(entry) not in (3, 4):
            return None
        origin, offset, length = entry[:3]
        if len(entry) == 4 and entry[3] is not None:
            try:
                st = os.stat(origin)
            except (OSError, TypeError, ValueError):
                return None
            if (st.st_size, st.st_mtime_ns) != tuple(entry[3]):
                return None  # changed since the build: from the file, as usual
        if offset == -1:
            return spec_from_file_location(name, origin, loader=ExtensionFileLoader(name, origin))
        if offset == -2:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return spec_from_file_location(
            name, origin, loader=_BundledLoader(name, origin, self.data[offset : offset + length])
        )

    def close(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.modules.clear()
        self.data = memoryview(b"")


def _connect(path: str, grace: float = 1.0) -> "Any":
    """The host's socket, connected; exits with :data:`HOST_GONE_EXIT` when the host is gone.

    The host binds and listens before it creates the container, so neither a
    refusal nor a missing socket is a start-up race: a refusal means its
    listener closed (the host died), a missing socket that its folder was
    removed (the host died and a later host's start-up sweep,
    :func:`glsandbox_kernel.hosttemp.sweep`, took its folders). Either is
    retried for ``grace`` seconds only, never for the host's whole connect
    timeout: a container started just before its host died ends within a
    second of reaching this point.
    """
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    start = time.monotonic()
    while True:
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if time.monotonic() - start > grace:
                sys.stderr.write(f"glsandbox: the host is gone ({path}: {exc.strerror})\n")
                sys.exit(HOST_GONE_EXIT)
            time.sleep(0.005)


def _exit_when_host_gone(fd: int) -> None:
    """A daemon thread that ends the worker, and so the container, once the host's end closes.

    The worker loop sees EOF only between requests; a running cell (``while
    True: pass``) never reads the socket, and would run on unwatched after a
    SIGKILL of the host. The thread blocks in poll() on its own dup of the
    socket (nothing is read: a readable socket is only peeked at) and calls
    ``os._exit`` at the hang-up or EOF; docker-init, then the pid namespace,
    go with the worker. It costs one task of the sandbox's process limit;
    where none is left it is not started (the host's watcher,
    :mod:`glsandbox_kernel.backends.container.watcher`, still removes the
    container). A bare ``_thread`` one, as the fd forwarder's, with the
    interrupt signals blocked: ``threading.Thread.start`` waits until the new
    thread runs, 2-14 ms under runsc's ptrace platform against 0.4-0.8 ms for
    the clone alone, and the worker no longer imports threading at all.
    """
    import _signal
    import _thread
    import select
    import socket

    from glsandbox_kernel.worker.common import INTERRUPT_SIGNALS

    mine = socket.socket(fileno=os.dup(fd))
    gone = select.POLLHUP | select.POLLERR | select.POLLNVAL | select.POLLRDHUP

    def watch() -> None:
        _signal.pthread_sigmask(_signal.SIG_BLOCK, INTERRUPT_SIGNALS)  # the main thread's, as the forwarder's
        poller = select.poll()
        poller.register(mine, select.POLLIN | select.POLLRDHUP)
        while True:
            events = 0
            for _fd, ev in poller.poll():
                events |= ev
            if not events & gone:
                # Readable: a request (the loop reads it) or, where the hang-up
                # is not signalled (gVisor's host sockets), EOF. Peek to tell.
                try:
                    if mine.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                        time.sleep(0.2)  # data the loop has yet to read: look again later
                        continue
                except BlockingIOError:
                    time.sleep(0.2)
                    continue
                except OSError:
                    pass
            os._exit(HOST_GONE_EXIT)

    try:
        _thread.start_new_thread(watch, ())
    except (RuntimeError, OSError):
        mine.close()


class _Reporter:
    """Audit hook: reports exec and escape-class ctypes calls to the host (untrusted channel).

    One JSON line per report, then a one-byte ack from the host, so the
    report is recorded before the call can return. Never raises into the
    caller except PermissionError for an exec the policy refuses.
    """

    EVENTS = frozenset({"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "ctypes.dlsym"})

    def __init__(self, sock: "Any", section: "dict[str, Any]") -> None:
        import _thread
        import json

        from glsandbox_kernel.confinement import seccomp_lists
        from glsandbox_kernel.worker.fontprobe import is_font_probe, popen_program

        self.dumps = json.dumps  # bound before any user code runs (it could replace sys.modules["json"])
        self.sock = sock
        self.lock = _thread.allocate_lock()
        self.deny_exec = bool(section.get("deny_exec"))
        self.tools = seccomp_lists.ESCAPE_TOOLS
        self.escape = frozenset(seccomp_lists.ESCAPE)
        self.is_font_probe, self.popen_program = is_font_probe, popen_program

    def send(self, report: "dict[str, Any]") -> None:
        line = (self.dumps(report, separators=(",", ":"))[:2000] + "\n").encode()
        with self.lock:
            try:
                self.sock.sendall(line)
                self.sock.recv(1)
            except OSError:
                pass

    def __call__(self, event: str, args: "tuple[Any, ...]") -> None:
        if event not in self.EVENTS:
            return
        if event == "ctypes.dlsym":
            self._ctypes(args)
            return
        if event == "os.system":
            path = str(args[0]).split()[0] if args and str(args[0]).split() else ""
        elif event == "subprocess.Popen":
            path = self.popen_program(args)
        else:
            path = os.fsdecode(args[1] if event == "os.spawn" else args[0])
        base = os.path.basename(path)
        escape = base in self.tools
        if escape or self.deny_exec:
            if escape or not self.is_font_probe(base):  # matplotlib's fc-list: refused, unreported (fontprobe)
                self.send({"kind": "exec", "syscall": "execve", "path": path, "escape": escape})
            raise PermissionError(1, "Operation not permitted", path)

    def _ctypes(self, args: "tuple[Any, ...]") -> None:
        # Python has no audit event per foreign call; looking up an escape-class
        # libc function by name is the closest (the kernel's filter denies the call).
        name = args[1] if len(args) > 1 else None
        if isinstance(name, str) and name in self.escape:
            self.send({"kind": "syscall", "syscall": name, "escape": True})


def _load_filter(spec: "dict[str, Any]", report: "dict[str, Any]", pass_fds: list[int]) -> None:
    """Load the seccomp program the host packed from its policy; the listener fd (notifications on) to ``pass_fds``.

    The program is the policy's own (:func:`glsandbox_kernel.backends.container.settings.seccomp_section`),
    the section what it is; neither is rebuilt here (see :mod:`glsandbox_kernel.confinement.seccomp_load`).
    """
    from glsandbox_kernel.confinement import ptrace_fence, seccomp_load

    ptrace_fence.fence_child(report)  # first: the worker must never reach docker-init's memory
    section = spec.get("seccomp")
    if not section or not section["enabled"]:
        return
    raw = bytes.fromhex(spec["seccomp_program"])
    notify = section["notify"]
    if type(notify) is not bool or type(section["deny_exec"]) is not bool:
        raise ValueError("malformed seccomp section")
    fd = seccomp_load.load_program(raw, arch=str(section["arch"]), listener=notify)
    n = len(raw) // seccomp_load.INSTRUCTION_SIZE
    report["seccomp"] = seccomp_load.report(n, deny_exec=section["deny_exec"], detection=str(section["detection"]))
    if fd is not None:
        pass_fds.append(fd)


def _fds_cross_hello(spec: "dict[str, Any]") -> bool:
    """Whether the hello may pass fds (the filter's listener) or the network relay needs the deferred limit."""
    section = spec.get("seccomp") or {}
    return bool(spec.get("network") or (section.get("enabled") and section.get("notify")))


def _raise_file_limit(files: int | None) -> tuple[int, int] | None:
    """The (soft, hard) RLIMIT_NOFILE the worker sets after its hello; until then soft = hard.

    The container has no nofile ulimit: the kernel checks the fds in flight of
    this uid (65534: every container, CHROOT and NAMESPACE sandbox of the host)
    against the *sender's* soft limit when the hello passes the listener (see
    :mod:`glsandbox_kernel.confinement.rlimits`).
    """
    if files is None:
        return None
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        files = min(int(files), hard)
    return int(files), int(files)


def _set_file_limit_now(files: int) -> None:
    """RLIMIT_NOFILE to ``files`` (at most the hard limit) before the hello: no fd will cross it.

    Through prlimit64 with ctypes (loaded for the filter already): under gVisor the resource
    extension module alone cost ~4 ms of a fresh sandbox's start. resource where the number
    of RLIMIT_NOFILE differs (alpha, mips, sparc) or libc has no prlimit64 (musl).
    """
    import ctypes

    from glsandbox_kernel.linux import MACHINE, libc

    prlimit = getattr(libc(), "prlimit64", None) if MACHINE in ("x86_64", "aarch64") else None
    if prlimit is None:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        files = files if hard == resource.RLIM_INFINITY else min(files, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
        return
    old, new = (ctypes.c_uint64 * 2)(), (ctypes.c_uint64 * 2)()
    if prlimit(0, 7, None, old) != 0:  # 7: RLIMIT_NOFILE here
        raise OSError(ctypes.get_errno(), "prlimit64(RLIMIT_NOFILE)")
    new[0] = new[1] = min(files, old[1])  # RLIM_INFINITY is the largest value
    if prlimit(0, 7, new, None) != 0:
        raise OSError(ctypes.get_errno(), "prlimit64(RLIMIT_NOFILE)")


def prepare(argv: list[str]) -> "dict[str, Any]":
    """Steps 1-2 (also the bundle builder's): the host's spec, after the python and path checks."""
    import json

    spec = dict(json.loads(argv[1]))
    _check_python(str(spec["python"]))
    _add_paths([str(d) for d in spec["deps"]], str(spec["site"]))
    top = os.path.join(str(spec["site"]), "glsandbox_kernel")
    _register_package_lazily("glsandbox_kernel", top)
    _register_package_lazily("glsandbox_kernel.confinement", os.path.join(top, "confinement"))
    return spec


def main(argv: list[str]) -> None:
    """Steps 1-6 above; never returns (the worker loop exits the process)."""
    bundle = _Bundle.load()
    if bundle is not None:
        sys.meta_path.insert(0, bundle)
    spec = prepare(argv)
    from glsandbox_kernel.confinement import seccomp_load  # noqa: F401 - from the bundle, for _load_filter
    from glsandbox_kernel.worker.loop import serve

    if bundle is not None:
        import glsandbox_kernel.worker.unpickle_lite  # noqa: F401 - the first call's, from the bundle

        if spec.get("file_limit") is not None and _fds_cross_hello(spec):
            import resource  # noqa: F401 - _raise_file_limit's and the worker's, where the bundle says
        if spec.get("report_socket"):
            from glsandbox_kernel.confinement import seccomp_lists  # noqa: F401 - the _Reporter's
        bundle.close()
    report: dict[str, Any] = {}
    pass_fds: list[int] = []
    try:
        file_limit = _raise_file_limit(spec.get("file_limit")) if _fds_cross_hello(spec) else None
        if spec.get("network"):
            from glsandbox_kernel.confinement import network as net_step
            from glsandbox_kernel.confinement._common import ChildState
            from glsandbox_kernel.confinement.sections import from_wire

            # The host's section, rebuilt against its schema (unknown or mistyped fields refused).
            network = from_wire(net_step.NetworkSection, spec["network"], "bootstrap.network")
            state = ChildState(report=report, pass_fds=pass_fds, file_limit=file_limit)
            state.relay = net_step.prepare_relay_child(network, state)  # 127.0.0.1 listener; HTTP(S)_PROXY set
            _load_filter(spec, report, pass_fds)
            net_step.start_relay_child(network, state)  # forked after the filter: confined the same way
        else:
            _load_filter(spec, report, pass_fds)
            if file_limit is None and spec.get("file_limit") is not None:  # no listener: the hello passes no fd
                _set_file_limit_now(int(spec["file_limit"]))
    except Exception as exc:  # noqa: BLE001 - told to the host on stderr; it refuses the container
        sys.stderr.write(f"glsandbox: {exc}\n")
        sys.exit(SETUP_FAILED_EXIT)
    if spec.get("report_socket"):
        sys.addaudithook(_Reporter(_connect(str(spec["report_socket"])), spec.get("seccomp") or {}))
    sock = _connect(str(spec["socket"]))
    _exit_when_host_gone(sock.fileno())
    serve(sock, pass_fds=pass_fds, report=report, file_limit=file_limit)


if __name__ == "__main__":
    main(sys.argv)
