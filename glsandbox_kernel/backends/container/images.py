"""The worker's image: which one, whether its python matches, what to do if not (host side).

The worker's code and its dependencies are bind-mounted from the host, so
the image needs only a ``python3`` of the host's minor version
(``glsandbox-python:X.Y``, built without any registry by
``scripts/build-test-image``). Who calls: the settings builder
(:func:`default_image`), the availability probe and launch errors.
"""

from __future__ import annotations

import sys

IMAGE_PYTHON_LABEL = "glsandbox.python"
BUILD_SCRIPT = "scripts/build-test-image"

_image_python_cache: dict[str, str] = {}


def host_python() -> str:
    """The host interpreter's ``major.minor`` (the container's must match)."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def default_image() -> str:
    """``glsandbox-python:X.Y`` for the host's Python ``X.Y``."""
    return f"glsandbox-python:{host_python()}"


def image_hint(image: str) -> str:
    """What to do about a missing or mismatched image."""
    if image == default_image():
        return (
            f"build it locally without any registry with `{BUILD_SCRIPT}` "
            "(debootstrap + docker import), after scripts/dockerd-up"
        )
    return (
        f"use an image whose python3 is {host_python()}, or unset container_image to use "
        f"{default_image()} (built by `{BUILD_SCRIPT}`)"
    )


def image_python(image: str) -> str | None:
    """The image's python3 ``X.Y`` (label ``glsandbox.python`` or one probe run, cached); None if absent."""
    from .docker_api import docker_client, docker_module, map_docker_errors

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
    version = labels.get(IMAGE_PYTHON_LABEL)
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
