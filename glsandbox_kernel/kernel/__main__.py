"""``python -m glsandbox_kernel.kernel -f CONNECTION_FILE``: what the kernelspecs run (host side)."""

from __future__ import annotations

import sys


def main() -> None:
    """Launch SandboxKernel through ipykernel's application (``IPKernelApp.launch_instance``).

    The zygote template starts first (:mod:`.prestart`), while ipykernel is imported; the
    sandbox's host side starts once ipykernel's set-up is done.
    """
    from .prestart import prepare, trace

    trace("main")
    prepare(sys.argv[1:])
    trace("prepared")
    from .app import SandboxKernelApp
    from .kernel import SandboxKernel

    trace("imported")

    SandboxKernelApp.launch_instance(kernel_class=SandboxKernel)


if __name__ == "__main__":
    main()
