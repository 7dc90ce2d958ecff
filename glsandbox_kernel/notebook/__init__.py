"""Notebooks as audit evidence (host side): per-cell audit outputs, ``glsandbox run``,
``glsandbox audit verify NOTEBOOK``, ``glsandbox report`` and the Jupyter pre-save hook.

Submodules import nbformat/nbclient/nbconvert lazily; :mod:`.evidence` imports
no Jupyter package at all (the engine uses it to hash a cell's outputs).
"""
