"""The Docker Engine API, as this package uses it (host side).

The ``docker`` SDK is imported on first use, never at import time of the
core. One shared client (from the environment: ``DOCKER_HOST`` ...), cached
daemon facts, and ONE place where the SDK's errors become ours:
:func:`map_docker_errors`, which maps ``docker.errors`` (and the transport's
``requests`` errors) to our most specific exception, ``from exc``, with the
backend's name and a hint the user can act on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import resource
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ... import hosttemp
from ...exceptions import BackendUnavailableError, SandboxCrashedError
from . import images

log = logging.getLogger("glsandbox.container")

#: runtimeArgs the runsc registration must have: the worker reaches its host
#: socket through the gofer (--host-uds); the sentry must enforce our seccomp
#: profile (--oci-seccomp; without it the profile would be ignored); and the
#: sandbox gets gVisor's loopback-only stack (--network=none: our containers
#: never have a network, and runsc 20221219 fails to start Docker's
#: network-none containers without it, leaving the half-made sandbox behind).
RUNSC_REQUIRED_ARGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("--host-uds", ("open", "all")),
    ("--oci-seccomp", ("", "true")),
    ("--network", ("none",)),
)
DAEMON_HINT = "run scripts/dockerd-up"

_client_lock = threading.Lock()
_client: Any = None
_info_cache: tuple[float, dict[str, Any] | None, str] = (0.0, None, "")
#: How long ``docker info`` (and the availability judged on it) is kept. Every
#: session asks, and a refresh is ``docker info`` plus the image's inspection
#: (~45 ms of a cold start at load 3-9); a daemon that goes away or changes
#: sooner is noticed by the next call that fails (:func:`map_docker_errors`
#: drops the cache) and a wrong image by the bootstrap's own check.
_INFO_TTL = 30.0
_engine: str | None = None
_image_python_cache: dict[str, str] = {}


def docker_module() -> ModuleType:
    """The ``docker`` SDK, imported on first use; BackendUnavailableError without it."""
    try:
        return importlib.import_module("docker")
    except ImportError as exc:
        raise BackendUnavailableError(
            "container",
            f"the docker Python SDK is not installed ({exc})",
            "pip install 'glsandbox-kernel[docker]' (or pip install docker)",
        ) from exc


@contextlib.contextmanager
def map_docker_errors(backend: str, doing: str, *, image: str | None = None) -> Iterator[None]:
    """Turn SDK and transport errors raised in the block into ours (``from exc``).

    ``doing`` completes "the Docker daemon could not ...", e.g. "start the
    container". ImageNotFound -> BackendUnavailableError with the image
    hint; NotFound (the container vanished) -> SandboxCrashedError; other
    API errors -> BackendUnavailableError with the daemon's explanation;
    an unreachable daemon -> BackendUnavailableError("not reachable").
    """
    docker = docker_module()
    import requests

    try:
        try:
            yield
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            forget_daemon_facts()  # judged on a daemon that now answers otherwise: ask it again next time
            raise
    except docker.errors.ImageNotFound as exc:
        shown = image or "the image"
        raise BackendUnavailableError(backend, f"image {shown} is not present", images.image_hint(shown)) from exc
    except docker.errors.NotFound as exc:
        raise SandboxCrashedError(f"{doing}: the container is gone ({exc.explanation or exc})") from exc
    except docker.errors.APIError as exc:
        why = str(exc.explanation or exc)
        hint = "see `glsandbox doctor`"
        if "root network namespace" in why:
            hint = "register runsc with --network=none in its runtimeArgs (scripts/dockerd-up does)"
        raise BackendUnavailableError(backend, f"the Docker daemon could not {doing}: {why}", hint) from exc
    except docker.errors.ContainerError as exc:
        raise BackendUnavailableError(backend, f"{doing} failed: {exc}", "see `glsandbox doctor`") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise BackendUnavailableError(backend, f"the Docker daemon is not reachable ({exc})", DAEMON_HINT) from exc


def forget_daemon_facts() -> None:
    """Drop the cached ``docker info`` and availability answers (a daemon call failed)."""
    global _info_cache
    _info_cache = (0.0, None, "")
    _available_cache.clear()


def docker_client() -> Any:
    """One shared ``docker.DockerClient`` (from the environment: DOCKER_HOST ...)."""
    global _client
    with _client_lock:
        if _client is None:
            docker = docker_module()
            with map_docker_errors("container", "be reached"):
                _client = docker.from_env(timeout=60)
            _one_pool(_client.api)
        return _client


def _one_pool(api: Any) -> None:
    """Keep the connections to a Unix-socket daemon in one pool, not one per request URL.

    docker-py's Unix adapter keys its connection pools by the whole URL, so
    every container's ``/start``, ``/json`` and ``DELETE`` opened a new
    connection to the daemon (and kept it idle in a pool of its own, 25
    pools deep); one pool reuses the open ones (``keep-alive``).
    """
    adapter = api.adapters.get("http+docker://")
    pools = getattr(adapter, "pools", None)
    if adapter is None or pools is None or not hasattr(adapter, "socket_path"):
        return  # tcp/ssh: requests' own adapter, pooled by host already
    get_connection = adapter.get_connection
    adapter.get_connection = lambda url, proxies=None: get_connection("http+docker://localhost", proxies)


def api() -> Any:
    """The shared client's low-level ``APIClient``."""
    return docker_client().api


def forget_client() -> None:
    """In a forked child: the parent's client (its connection pool) must not be shared."""
    global _client, _engine
    _client = None
    _engine = None
    _available_cache.clear()


def remove_now(container_id: str, *, attempts: int = 6) -> None:
    """Remove a container by force, synchronously; quiet when it is already gone.

    Podman answers 500 "could not be stopped ... container state improper"
    and Docker 500 "Could not kill running container ... is not running"
    when the force-kill meets a container that is exiting at that moment
    (Docker then leaves it "Removal In Progress", answering 409 to others):
    asked again a moment later, either removes it.
    """
    for attempt in range(attempts):
        try:
            api().remove_container(container_id, force=True, v=True)
            return
        except Exception as exc:  # noqa: BLE001 - already gone, or the daemon is down
            status = getattr(getattr(exc, "response", None), "status_code", None)
            text = str(exc)
            if status == 404:
                return
            racing = (status == 500 and ("state improper" in text or "is not running" in text)) or (
                status == 409 and "in progress" in text
            )
            if racing and attempt + 1 < attempts:
                time.sleep(0.1 * (attempt + 1))
                continue
            if status == 409:
                return
            log.warning("removing container %s failed: %s", container_id[:12], exc)
            return


def engine() -> str:
    """``"podman"`` when the API is Podman's Docker-compatible service, else ``"docker"`` (cached)."""
    global _engine
    if _engine is None:
        with map_docker_errors("container", "answer `version`"):
            components = docker_client().version().get("Components") or []
        names = " ".join(str(c.get("Name", "")) for c in components if isinstance(c, dict))
        _engine = "podman" if "Podman" in names else "docker"
    return _engine


def for_engine(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as this engine takes them (host side, at create time).

    Podman's compat API reads ``seccomp=`` as a file path, not the profile
    itself (Docker's CLI inlines the file): the profile goes to a file
    named by its digest in a directory the service can read. Its tmpfs
    options know no ``uid=``/``gid=``: ``U`` gives the mount to the
    container's user instead.
    """
    if engine() != "podman":
        return settings
    opts = []
    for opt in settings.get("security_opt", []):
        if opt.startswith("seccomp=") and opt[len("seccomp=") :].lstrip().startswith("{"):
            profile = opt[len("seccomp=") :].encode()
            opt = f"seccomp={_profile_file(profile)}"
        opts.append(opt)
    # Podman's tmpfs options have no uid=/gid=; "U" chowns the tmpfs to the container's user.
    tmpfs = {}
    for target, options in (settings.get("tmpfs") or {}).items():
        parts = [o for o in str(options).split(",") if not o.startswith(("uid=", "gid="))]
        if len(parts) != len(str(options).split(",")):
            parts.append("U")
        tmpfs[target] = ",".join(parts)
    # Podman asks for default RLIMIT_NOFILE/NPROC above its own, which runc cannot
    # set once the capabilities are dropped ("error setting rlimit type 6/7"): name
    # both, at this process's soft limits, capped (the pids cgroup is the process limit).
    ulimits = list(settings.get("ulimits") or [])
    for name, which, cap in (("nofile", resource.RLIMIT_NOFILE, 65536), ("nproc", resource.RLIMIT_NPROC, 8192)):
        if not any(u.get("name") == name for u in ulimits):
            soft = resource.getrlimit(which)[0]
            value = cap if soft == resource.RLIM_INFINITY else min(soft, cap)
            ulimits.append({"name": name, "soft": value, "hard": value})
    return dict(settings, security_opt=opts, tmpfs=tmpfs, ulimits=ulimits)


def _profile_file(profile: bytes) -> str:
    """HOST side: a file holding ``profile`` for Podman to read, in a folder only this uid can write.

    The shared temporary folder is everyone's: a folder or file planted
    there under the expected name (the profile is public, so is its digest)
    would hand the container a profile of the planter's choosing. The
    per-uid folder is used only when it is a real directory of this uid
    that nobody else can write, and an existing file only when its content
    is the profile; otherwise this process writes its own private copy.
    """
    name = hashlib.sha256(profile).hexdigest()[:32] + ".json"
    folder = os.path.join(tempfile.gettempdir(), f"glsandbox-seccomp-{os.geteuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        folder = _private_profile_dir()
    path = os.path.join(folder, name)
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        if fh.read(len(profile) + 1) == profile:
            return path
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(profile)
    os.replace(tmp, path)
    return path


_private_profiles: str | None = None


def _private_profile_dir() -> str:
    """HOST side: this process's own 0700 folder for profiles (swept after it is gone)."""
    global _private_profiles
    if _private_profiles is None:
        _private_profiles = hosttemp.private_dir("ctr", "seccomp-")
    return _private_profiles


def daemon_info() -> tuple[dict[str, Any] | None, str]:
    """``docker info`` (cached for a few seconds) or (None, why not)."""
    global _info_cache
    stamp, info, why = _info_cache
    if time.monotonic() - stamp < _INFO_TTL:
        return info, why
    try:
        with map_docker_errors("container", "answer `docker info`"):
            info, why = docker_client().info(), ""
    except BackendUnavailableError as exc:
        info, why = None, exc.reason
    _info_cache = (time.monotonic(), info, why)
    return info, why


def rootless_on_cgroup_v1(info: dict[str, Any]) -> bool:
    """Whether ``docker info`` describes a rootless engine on a cgroup v1 host (refused: no limits).

    Docker says rootless in ``SecurityOptions`` (``name=rootless``); Podman's
    compatible ``/info`` says ``"Rootless": true`` and lists no such option.
    """
    security = " ".join(str(o) for o in info.get("SecurityOptions") or [])
    rootless = "name=rootless" in security or info.get("Rootless") is True
    return rootless and str(info.get("CgroupVersion", "")) == "1"


ROOTLESS_V1_HINT = (
    "run the engine as root (as root, scripts/podman-up starts Podman's rootful service; "
    "point DOCKER_HOST at it), or use a cgroup v2 host that delegates memory, pids and cpu to your user"
)


def runtime_args(entry: Any) -> list[str]:
    """``runtimeArgs`` of one ``docker info`` Runtimes entry."""
    args = entry.get("runtimeArgs") if isinstance(entry, dict) else None
    return [str(a) for a in args or []]


def missing_runtime_args(runtime: str, entry: Any) -> list[str]:
    """The runtime arguments we need that a registration lacks (runsc only)."""
    if runtime != "runsc":
        return []
    given: dict[str, str] = {}
    for arg in runtime_args(entry):
        name, eq, value = arg.partition("=")
        given["--" + name.lstrip("-")] = value if eq else ""  # Go flags: -x and --x alike
    missing = []
    for name, allowed in RUNSC_REQUIRED_ARGS:
        if name not in given or given[name] not in allowed:
            missing.append(f"{name}={allowed[0]}" if allowed[0] else name)
    return missing


def image_python(image: str) -> str | None:
    """The image's python3 ``X.Y`` (label ``glsandbox.python`` or one probe run, cached); None if absent."""
    docker = docker_module()
    client = docker_client()
    with map_docker_errors("container", f"inspecting image {image}"):
        try:
            attrs = client.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            return None
    image_id = attrs["Id"]
    if image_id in _image_python_cache:
        return _image_python_cache[image_id]
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    version = labels.get(images.IMAGE_PYTHON_LABEL)
    if not version:
        with map_docker_errors("container", f"probing the python of image {image}"):
            out = client.containers.run(
                image,
                ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                network_mode="none",
                network_disabled=True,
                remove=True,
                user="65534:65534",
            )
        version = out.decode().strip()
    _image_python_cache[image_id] = version
    return str(version)


_available_cache: dict[tuple[str, str | None, str | None], tuple[Any, tuple[bool, str]]] = {}


def check_available(*, backend: str, runtime: str | None = None, image: str | None = None) -> tuple[bool, str]:
    """SDK importable, daemon answering, runtime registered, image present and matching.

    A positive answer is kept as long as the cached ``docker info`` it was
    judged on (:data:`_INFO_TTL` seconds): every sandbox's session asks, and
    the image inspection is a daemon round trip; a launch that then fails
    says why on its own.
    """
    key = (backend, runtime, image)
    seen, answer = _available_cache.get(key, (None, (False, "")))
    info = daemon_info()[0]
    if answer[0] and info is not None and seen is info:
        return answer
    answer = _check_available(backend=backend, runtime=runtime, image=image)
    _available_cache[key] = (daemon_info()[0] if answer[0] else None, answer)
    return answer


def _check_available(*, backend: str, runtime: str | None, image: str | None) -> tuple[bool, str]:
    try:
        docker_module()
    except BackendUnavailableError as exc:
        return False, exc.reason
    info, why = daemon_info()
    if info is None:
        return False, why
    if runtime:
        registered = info.get("Runtimes") or {}
        if runtime not in registered:
            return False, (
                f"the {runtime!r} runtime is not registered with the Docker daemon "
                f"(registered: {', '.join(sorted(registered)) or 'none'})"
            )
        missing = missing_runtime_args(runtime, registered[runtime])
        if missing:
            return False, (
                f"the {runtime!r} runtime is registered without {' '.join(missing)} "
                f"(runtimeArgs: {' '.join(runtime_args(registered[runtime])) or 'none'})"
            )
    if rootless_on_cgroup_v1(info):
        return False, (
            "the container engine runs rootless on cgroup v1, where it cannot enforce memory, pids or cpu "
            "limits (rootless needs cgroup v2 with delegation; or run the engine as root)"
        )
    image = image or images.default_image()
    try:
        version = image_python(image)
    except BackendUnavailableError as exc:
        return False, f"cannot inspect image {image}: {exc.reason}"
    if version is None:
        return False, f"image {image} is not present"
    if version != images.host_python():
        return False, f"image {image} has python {version}, the host runs {images.host_python()}"
    used = ""
    if runtime:
        args = runtime_args((info.get("Runtimes") or {}).get(runtime))
        used = f", runtime {runtime}" + (f" ({' '.join(args)})" if args else "")
    name = "Podman" if engine() == "podman" else "Docker"
    return True, f"{name} {info.get('ServerVersion', '?')}, image {image} (python {version}){used}"
