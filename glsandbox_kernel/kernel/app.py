"""SandboxKernelApp: ipykernel's kernel application, launching SandboxKernel (host side).

The same application as the stock kernel (sockets, heartbeat, IOPub thread,
connection file), with :class:`~glsandbox_kernel.kernel.kernel.SandboxKernel`
as the kernel class and one extra traitlets config file,
``glsandbox_kernel_config.{json,py}``, searched on Jupyter's config path
(``jupyter --paths``), e.g. ``{"SandboxKernel": {"level": "strict"}}``.
Options on the kernelspec's command line take priority over the file (a
warning names both values when they differ); the kernelspecs ``glsandbox
install`` writes carry only the options asked for (the default ``glsandbox``:
none, so the file's level applies).
Who calls: ``python -m glsandbox_kernel.kernel`` (the kernelspecs' argv).
"""

from __future__ import annotations

import logging
from copy import deepcopy
from typing import Any, cast

from ipykernel.iostream import OutStream
from ipykernel.kernelapp import IPKernelApp
from traitlets import Bool, DottedObjectName
from traitlets.config import Config
from traitlets.config.loader import DeferredConfig

from .kernel import SandboxKernel

CONFIG_FILE = "glsandbox_kernel_config"


def _plain(value: Any, trait: Any) -> Any:
    """A config value as the trait takes it (a command-line string parsed), else as it is."""
    try:
        return value.get_value(trait) if isinstance(value, DeferredConfig) else value
    except Exception:  # noqa: BLE001 - a bad value: the kernel reports it when it applies it
        return value


class KernelOutStream(OutStream):
    """The kernel process's own stdout/stderr (its log lines; never a cell's output, which the relay
    publishes): ``flush()`` with nothing written returns at once.

    ipykernel flushes both streams before every execute_reply, each a round trip to the IOPub
    thread and back (two thread wake-ups per stream per cell) for text this process never wrote.
    """

    def flush(self) -> None:
        if self._flush_pending or self._subprocess_flush_pending:
            super().flush()


class SandboxKernelApp(IPKernelApp):
    """IPKernelApp whose kernel is SandboxKernel and which reads ``glsandbox_kernel_config``."""

    description = "A Jupyter kernel that runs every cell in a glsandbox sandbox."
    # IPython's init_path puts "" (the working directory: the notebook's folder, which a LENIENT
    # sandbox writes) on sys.path, so a lazy import in this host process would load a planted module.
    ignore_cwd = Bool(True, help="never put the working directory on the host kernel's sys.path").tag(config=False)

    outstream_class = DottedObjectName(
        "glsandbox_kernel.kernel.app.KernelOutStream", help="the kernel process's own stdout/stderr"
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_class", SandboxKernel)
        super().__init__(**kwargs)

    def _configure_logging(self) -> None:
        """traitlets' logging, with the app's logger at its handlers' lowest level, not DEBUG.

        traitlets sets the logger to DEBUG and filters at the handler (``log_level``), so each of
        ipykernel's debug lines (four per request, one with the whole reply) built a record that
        the handler then dropped, on the shell's thread. ``--debug`` (or a DEBUG handler in
        ``logging_config``) still logs them.
        """
        super()._configure_logging()
        log = self.log
        handlers = getattr(log, "handlers", None)
        if isinstance(log, logging.Logger) and handlers and all(h.level > logging.NOTSET for h in handlers):
            log.setLevel(min(h.level for h in handlers))

    def init_connection_file(self) -> None:
        """The first step of ``IPKernelApp.initialize`` with the configuration final: start the
        kernel's sandbox now (:class:`.prestart.EarlySandbox`), while the app binds its sockets
        and makes the kernel, then ipykernel's connection file."""
        from .prestart import trace

        trace("app: config loaded")
        self.start_sandbox_early()
        super().init_connection_file()

    def start_sandbox_early(self) -> None:
        """The sandbox from the kernel's options as this configuration sets them (a thread)."""
        from .options import config_from_traits, option_values
        from .prestart import EARLY, EarlySandbox
        from .traits import KernelOptions

        kernel_class = self.kernel_class
        if EARLY or not issubclass(kernel_class, KernelOptions):
            return
        try:  # the kernel's own resolution, parent-scoped sections included: the same options
            options = KernelOptions(config=Config({"KernelOptions": self.kernel_section(self.config)}))
        except Exception:  # noqa: BLE001 - e.g. a bad --SandboxKernel.memory: the kernel reports it
            return

        def make() -> Any:
            from ..sandbox import OSSandbox

            return OSSandbox(config_from_traits(options))

        EARLY.append(EarlySandbox(option_values(options), make))

    def kernel_section(self, cfg: Config) -> Config:
        """What of ``cfg`` the kernel (made with ``parent=self``) reads, as traitlets' ``_find_my_config``
        resolves it: its class sections, then the same under this app's sections (these win)."""
        merged, kernel_class = Config(), cast(Any, self.kernel_class)
        for source in (cfg, self._find_my_config(cfg)):
            for name in kernel_class.section_names():
                if source._has_section(name):
                    merged.merge(source[name])
        return merged

    def load_config_file(self, *args: Any, **kwargs: Any) -> None:
        """IPython's config files, then ``glsandbox_kernel_config`` from Jupyter's config path
        (as ``Application.load_config_file``; warns of the file's options the command line overrides)."""
        super().load_config_file(*args, **kwargs)
        from jupyter_core.paths import jupyter_config_path

        from_files = Config()
        for config, fname in self._load_config_files(
            CONFIG_FILE,
            path=jupyter_config_path(),
            log=self.log,
            raise_config_file_errors=self.raise_config_file_errors,
        ):
            from_files.merge(config)
            if fname not in self._loaded_config_files:
                self._loaded_config_files.append(fname)
        new_config = deepcopy(from_files)
        new_config.merge(self.cli_config)  # the command line keeps its priority
        self.update_config(new_config)
        self._warn_overridden(self.kernel_section(from_files), self.kernel_section(self.cli_config))

    def _warn_overridden(self, in_file: Config, on_argv: Config) -> None:
        """Warn of each option the command line and the config file both set, to different values."""
        traits = cast(Any, self.kernel_class).class_traits(config=True)
        final = self.kernel_section(self.config)
        for name in sorted(set(in_file) & set(on_argv) & set(traits)):
            argv, file, used = (_plain(c[name], traits[name]) for c in (on_argv, in_file, final))
            if argv != file:
                self.log.warning(
                    "glsandbox: %s is %r on the kernel's command line (kernelspec argv) and %r in %s.json: %r applies",
                    name,
                    argv,
                    file,
                    CONFIG_FILE,
                    used,
                )
