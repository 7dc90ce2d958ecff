"""SandboxKernelApp: ipykernel's kernel application, launching SandboxKernel (host side).

The same application as the stock kernel (sockets, heartbeat, IOPub thread,
connection file), with :class:`~glsandbox_kernel.kernel.kernel.SandboxKernel`
as the kernel class and one extra traitlets config file,
``glsandbox_kernel_config.{json,py}``, searched on Jupyter's config path
(``jupyter --paths``), e.g. ``{"SandboxKernel": {"level": "strict"}}``.
Options on the kernelspec's command line take priority over the file.
Who calls: ``python -m glsandbox_kernel.kernel`` (the kernelspecs' argv).
"""

from __future__ import annotations

from typing import Any

from ipykernel.kernelapp import IPKernelApp
from traitlets import Bool
from traitlets.config.application import Application

from .kernel import SandboxKernel

CONFIG_FILE = "glsandbox_kernel_config"


class SandboxKernelApp(IPKernelApp):
    """IPKernelApp whose kernel is SandboxKernel and which reads ``glsandbox_kernel_config``."""

    description = "A Jupyter kernel that runs every cell in a glsandbox sandbox."
    # IPython's init_path puts "" (the working directory: the notebook's folder, which a LENIENT
    # sandbox writes) on sys.path, so a lazy import in this host process would load a planted module.
    ignore_cwd = Bool(True, help="never put the working directory on the host kernel's sys.path").tag(config=False)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_class", SandboxKernel)
        super().__init__(**kwargs)

    def init_connection_file(self) -> None:
        """The first step of ``IPKernelApp.initialize`` with the configuration final: start the
        kernel's sandbox now (:class:`.prestart.EarlySandbox`), while the app binds its sockets
        and makes the kernel, then ipykernel's connection file."""
        self.start_sandbox_early()
        super().init_connection_file()

    def start_sandbox_early(self) -> None:
        """The sandbox from the kernel's options as this configuration sets them (a thread)."""
        from traitlets.config import Config

        from .options import config_from_traits, option_values
        from .prestart import EARLY, EarlySandbox
        from .traits import KernelOptions

        kernel_class = self.kernel_class
        if EARLY or not issubclass(kernel_class, KernelOptions):
            return
        merged = Config()
        for name in kernel_class.section_names():  # the kernel's own sections, later ones win
            if name in self.config:
                merged.merge(self.config[name])
        try:
            options = KernelOptions(config=Config({"KernelOptions": merged}))
        except Exception:  # noqa: BLE001 - e.g. a bad --SandboxKernel.memory: the kernel reports it
            return

        def make() -> Any:
            from ..sandbox import OSSandbox

            return OSSandbox(config_from_traits(options))

        EARLY.append(EarlySandbox(option_values(options), make))

    def load_config_file(self, *args: Any, **kwargs: Any) -> None:
        """IPython's config files, then ``glsandbox_kernel_config`` from Jupyter's config path."""
        super().load_config_file(*args, **kwargs)
        from jupyter_core.paths import jupyter_config_path

        Application.load_config_file(self, CONFIG_FILE, path=jupyter_config_path())
