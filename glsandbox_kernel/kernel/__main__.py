"""``python -m glsandbox_kernel.kernel -f CONNECTION_FILE``: what the kernelspecs run (host side)."""

from __future__ import annotations


def main() -> None:
    """Launch :class:`SandboxKernel` through ipykernel's application (sockets, heartbeat, IOPub)."""
    from ipykernel.kernelapp import IPKernelApp

    from .kernel import SandboxKernel

    IPKernelApp.launch_instance(kernel_class=SandboxKernel)


if __name__ == "__main__":
    main()
