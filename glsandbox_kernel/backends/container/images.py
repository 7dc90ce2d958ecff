"""The worker's image: which one, whether its python matches, what to do if not (host side).

The worker's code and its dependencies are bind-mounted from the host, so
the image needs only a ``python3`` of the host's minor version
(``glsandbox-python:X.Y``, built without any registry by
``scripts/build-test-image``). Who calls: the settings builder
(:func:`default_image`), the availability probe and launch errors. Pure:
the probe of an image's python is :func:`.docker_api.image_python`.
"""

from __future__ import annotations

import sys

IMAGE_PYTHON_LABEL = "glsandbox.python"
BUILD_SCRIPT = "scripts/build-test-image"


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
