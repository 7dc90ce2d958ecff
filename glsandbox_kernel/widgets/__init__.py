"""Live metrics widget, violation banners and ``usage_request`` of the glsandbox kernel (host side).

Everything here runs in the kernel process (or the IPython kernel that runs
``%%sandbox``), never in the sandbox. ipywidgets and matplotlib are imported
only when a cell runs long enough to show the widget or chart.

- :mod:`.monitor`: :class:`~.monitor.CellMonitor`, the per-cell live widget,
  banner and frozen summary;
- :mod:`.comms`: the kernel process's own comm layer (the widget's comms);
- :mod:`.chart`: the matplotlib sparkline PNG;
- :mod:`.usage`: the ``usage_request`` reply with the sandbox's numbers.
"""
