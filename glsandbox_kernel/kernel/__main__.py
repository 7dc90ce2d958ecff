"""``python -m glsandbox_kernel.kernel -f CONNECTION_FILE``: what the kernelspecs run (host side)."""

from __future__ import annotations


def main() -> None:
    """Launch SandboxKernel through ipykernel's application (``IPKernelApp.launch_instance``)."""
    from .app import SandboxKernelApp
    from .kernel import SandboxKernel

    SandboxKernelApp.launch_instance(kernel_class=SandboxKernel)


if __name__ == "__main__":
    main()
