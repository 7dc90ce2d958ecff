"""``python -m glsandbox_kernel.kernel -f CONNECTION_FILE``: what the kernelspecs run (host side)."""

from __future__ import annotations

import sys


def main() -> None:
    """Launch SandboxKernel through ipykernel's application (``IPKernelApp.launch_instance``).

    The zygote template and the sandbox's host side start first (:mod:`.prestart`), while
    ipykernel is imported.
    """
    from .prestart import prepare

    prepare(sys.argv[1:])
    from .app import SandboxKernelApp
    from .kernel import SandboxKernel

    SandboxKernelApp.launch_instance(kernel_class=SandboxKernel)


if __name__ == "__main__":
    main()
