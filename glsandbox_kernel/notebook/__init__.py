"""Notebooks as audit evidence (host side): per-cell audit outputs, ``glsandbox run``,
``glsandbox audit verify NOTEBOOK``, ``glsandbox report``, ``glsandbox attest``, the
notebook seal and the Jupyter server extension with its pre-save hook.

Layout: :mod:`.evidence` (what a cell record covers; imports no Jupyter package,
the engine uses it on its hot path), :mod:`.seal` (the notebook-wide signed
digest), :mod:`.verify` and :mod:`.checks` (verification), :mod:`.metadata`
(cell and notebook metadata), :mod:`.run`, :mod:`.report`, :mod:`.attest`,
:mod:`.presave`. Submodules import nbformat/nbclient/nbconvert lazily.
"""
